//! The idle crowd: connections opened in bulk, each making one round trip,
//! then held silent while the active connections are measured; and the
//! burst, in which every one of them sends a line at the same instant.
//!
//! At tens of thousands of connections two limits of the client side
//! matter besides the server's:
//!
//! - **Ephemeral ports.** A connection is a (source address, source port,
//!   destination) tuple, and with one source address there are only as many
//!   as the local port range holds (about 28 000 by default) to one server.
//!   `--sources K` spreads the connections over 127.0.0.1 to 127.0.0.K (all
//!   of 127/8 is loopback on Linux), and `IP_BIND_ADDRESS_NO_PORT` lets the
//!   kernel pick the port at `connect`, per destination, instead of at
//!   `bind`, where each port would be taken for every destination at once.
//! - **Connect latency.** One blocking connect after another takes a round
//!   trip through the server's accept each; here [`IN_FLIGHT`] connects and
//!   round trips are under way at once, on one `mio` loop.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};

/// Connects (and first round trips) under way at once: enough to keep a
/// server's accept queue busy, well under its default backlog (1024).
const IN_FLIGHT: usize = 256;

/// Opening stops with an error if no connection finishes for this long.
const STALL: Duration = Duration::from_secs(10);

/// What opening the idle crowd came to.
pub struct Crowd {
    /// The connections held, each having made its one round trip.
    pub held: Vec<TcpStream>,
    /// From the first connect to the last reply.
    pub secs: f64,
    /// Why fewer than asked are held, if so: the server refused, a limit
    /// on this side, a server that stopped answering.
    pub stopped: Option<String>,
}

/// The local addresses to connect from: 127.0.0.1 to 127.0.0.`count` for a
/// loopback server, none (the kernel's choice) for `count` 1 or any other.
pub fn sources(server: SocketAddr, count: u8) -> Vec<IpAddr> {
    if count <= 1 || !server.ip().is_loopback() || !server.is_ipv4() {
        return Vec::new();
    }
    (1..=count)
        .map(|k| IpAddr::V4(Ipv4Addr::new(127, 0, 0, k)))
        .collect()
}

/// Opens `n` connections to `server`, [`IN_FLIGHT`] at a time, spreading
/// them over `sources`; on each, sends `request` and waits until
/// `reply_len` finds a whole reply that `check` accepts. At the first
/// connection that fails or is refused it starts no more, lets those under
/// way finish, and keeps what it holds.
pub fn open(
    server: SocketAddr,
    sources: &[IpAddr],
    n: usize,
    request: &[u8],
    reply_len: &dyn Fn(&[u8]) -> Option<usize>,
    check: &dyn Fn(&[u8]) -> bool,
) -> io::Result<Crowd> {
    struct Opening {
        /// 1 for the first connection started.
        number: usize,
        stream: TcpStream,
        written: usize,
        got: Vec<u8>,
    }
    let started = Instant::now();
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut pending: Vec<Option<Opening>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut in_flight = 0;
    let mut held = Vec::with_capacity(n);
    let mut started_count = 0;
    let mut stopped = None;
    let mut last_progress = Instant::now();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while stopped.is_none() && in_flight < IN_FLIGHT && started_count < n {
            let source = (!sources.is_empty()).then(|| sources[started_count % sources.len()]);
            let mut stream = match connect_from(server, source) {
                Ok(s) => s,
                Err(e) => {
                    stopped = Some(format!(
                        "connection {} could not be opened: {e}",
                        started_count + 1
                    ));
                    break;
                }
            };
            let slot = free.pop().unwrap_or_else(|| {
                pending.push(None);
                pending.len() - 1
            });
            poll.registry().register(
                &mut stream,
                Token(slot),
                Interest::WRITABLE | Interest::READABLE,
            )?;
            pending[slot] = Some(Opening {
                number: started_count + 1,
                stream,
                written: 0,
                got: Vec::new(),
            });
            in_flight += 1;
            started_count += 1;
        }
        if in_flight == 0 {
            break;
        }
        match poll.poll(&mut events, Some(Duration::from_millis(200))) {
            // A stop and continue (SIGSTOP, SIGCONT) ends the wait.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => other?,
        }
        if events.is_empty() && last_progress.elapsed() > STALL {
            stopped = Some(format!(
                "no connection finished in {} s ({in_flight} connects or first replies \
                 outstanding; {} held)",
                STALL.as_secs(),
                held.len()
            ));
            break;
        }
        for event in events.iter() {
            let slot = event.token().0;
            let Some(o) = pending[slot].as_mut() else {
                continue;
            };
            // A refused or failed connect shows as an error on the socket.
            let outcome = (|| -> Result<bool, String> {
                if let Some(e) = o.stream.take_error().map_err(|e| e.to_string())? {
                    return Err(format!("connect failed: {e}"));
                }
                if o.written < request.len() && event.is_writable() {
                    match o.stream.write(&request[o.written..]) {
                        Ok(k) => o.written += k,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                        Err(e) => return Err(format!("write: {e}")),
                    }
                }
                loop {
                    match o.stream.read(&mut buf) {
                        Ok(0) => {
                            return Err(format!(
                                "the server closed it after {:?}",
                                String::from_utf8_lossy(&o.got)
                            ));
                        }
                        Ok(k) => o.got.extend_from_slice(&buf[..k]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(format!("read: {e}")),
                    }
                }
                match reply_len(&o.got) {
                    Some(len) if len == o.got.len() && check(&o.got) => Ok(true),
                    Some(_) => Err(format!(
                        "answered {:?}",
                        String::from_utf8_lossy(&o.got[..o.got.len().min(80)])
                    )),
                    None => Ok(false),
                }
            })();
            if outcome == Ok(false) {
                continue;
            }
            let mut o = pending[slot].take().expect("checked above");
            poll.registry().deregister(&mut o.stream)?;
            free.push(slot);
            in_flight -= 1;
            last_progress = Instant::now();
            match outcome {
                Ok(_) => held.push(o.stream),
                // The first failure is the one to report; those after it
                // are most often the same refusal.
                Err(why) => {
                    stopped.get_or_insert(format!("connection {}: {why}", o.number));
                }
            }
        }
    }
    Ok(Crowd {
        held,
        secs: started.elapsed().as_secs_f64(),
        stopped,
    })
}

/// A non-blocking connect, from `source` if given (its port chosen at
/// `connect`, per destination). Returns at once; the connection completes
/// (or fails) in the background.
fn connect_from(server: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(server),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    if let Some(ip) = source {
        bind_address_no_port(&socket)?;
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    match socket.connect(&server.into()) {
        Ok(()) => {}
        Err(e) if in_progress(&e) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// A non-blocking connect under way: EINPROGRESS on Unix, WSAEWOULDBLOCK
/// (`WouldBlock`) on Windows.
fn in_progress(e: &io::Error) -> bool {
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::EINPROGRESS) {
        return true;
    }
    e.kind() == io::ErrorKind::WouldBlock
}

/// `IP_BIND_ADDRESS_NO_PORT` (Linux 4.2): a `bind` to an address with port
/// 0 takes no port until `connect` knows the destination.
#[cfg(target_os = "linux")]
fn bind_address_no_port(socket: &Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    crate::switch_on(
        socket.as_raw_fd(),
        libc::IPPROTO_IP,
        libc::IP_BIND_ADDRESS_NO_PORT,
    )
}

/// Elsewhere the port is taken at `bind`: each source still has its own
/// ports, but each port serves one destination.
#[cfg(not(target_os = "linux"))]
fn bind_address_no_port(_socket: &Socket) -> io::Result<()> {
    Ok(())
}

/// What a burst came to: every held connection sent one line at once.
pub struct Burst {
    pub replies: usize,
    pub wrong: usize,
    pub secs: f64,
    pub stopped: Option<String>,
}

/// Every connection in `held` writes `request` at once; then every reply is
/// read and checked. Stops if no reply comes for [`STALL`].
pub fn burst(
    held: &mut [TcpStream],
    request: &[u8],
    reply_len: &dyn Fn(&[u8]) -> Option<usize>,
    check: &dyn Fn(&[u8]) -> bool,
) -> io::Result<Burst> {
    let started = Instant::now();
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    // A request this small fits an empty send buffer in one write.
    for (i, s) in held.iter_mut().enumerate() {
        s.write_all(request)?;
        poll.registry().register(s, Token(i), Interest::READABLE)?;
    }
    let mut got: Vec<Vec<u8>> = vec![Vec::new(); held.len()];
    let mut done = vec![false; held.len()];
    let (mut replies, mut wrong) = (0, 0);
    let mut stopped = None;
    let mut buf = vec![0u8; 16 * 1024];
    let mut last_progress = Instant::now();
    while replies + wrong < held.len() {
        match poll.poll(&mut events, Some(Duration::from_millis(200))) {
            // A stop and continue (SIGSTOP, SIGCONT) ends the wait.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => other?,
        }
        if events.is_empty() && last_progress.elapsed() > STALL {
            stopped = Some(format!(
                "{} of {} replies missing after {} s without one",
                held.len() - replies - wrong,
                held.len(),
                STALL.as_secs()
            ));
            break;
        }
        for event in events.iter() {
            let i = event.token().0;
            if done[i] {
                continue;
            }
            loop {
                match held[i].read(&mut buf) {
                    Ok(0) => {
                        done[i] = true;
                        wrong += 1;
                        break;
                    }
                    Ok(k) => got[i].extend_from_slice(&buf[..k]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        done[i] = true;
                        wrong += 1;
                        break;
                    }
                }
            }
            if !done[i] && reply_len(&got[i]).is_some() {
                done[i] = true;
                if check(&got[i]) {
                    replies += 1;
                } else {
                    wrong += 1;
                }
                last_progress = Instant::now();
            }
        }
    }
    for s in held.iter_mut() {
        let _ = poll.registry().deregister(s);
    }
    Ok(Burst {
        replies,
        wrong,
        secs: started.elapsed().as_secs_f64(),
        stopped,
    })
}
