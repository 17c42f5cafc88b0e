//! Listening sockets, the ready line, and what an `accept` error means.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};

use crate::cli::{ServerAddr, ServerArgs};

/// Binds a TCP listener with `SO_REUSEADDR` (a restarted server can bind while
/// old connections sit in TIME_WAIT) and the given backlog.
///
/// `TCP_NODELAY` is set on the listener, and every accepted connection
/// inherits it (Linux, the BSDs, macOS; Windows once an `AcceptEx` socket
/// takes the listener's context). With Nagle's algorithm on, a small reply
/// written while an earlier one is unacknowledged waits for that ACK, and a
/// client delays its ACK to send it with its next request: a client that
/// sends on a schedule then gets one reply in ten or more a whole interval
/// late. A request-and-reply server writes each batch of replies whole, so
/// there is nothing for Nagle to gather. (The articles' Python servers leave
/// it on too; their clients wait for each reply, so it never shows.)
///
/// `nonblocking` makes `accept` return `WouldBlock` instead of waiting, as
/// Python's `server.setblocking(False)` does.
pub fn bind(addr: SocketAddr, backlog: i32, nonblocking: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    socket.set_nonblocking(nonblocking)?;
    Ok(socket.into())
}

/// Prints the one line scripts and tests wait for, `listening on <ip>:<port>`,
/// with the port the kernel really bound, and flushes it.
///
/// Call it last, once all set-up is done (the poller, ring or completion
/// port created, the listener registered, threads started): whoever reads
/// the line may measure the server at once, and a descriptor opened after
/// the line would look like a leak.
pub fn announce(listener: &TcpListener) -> anyhow::Result<()> {
    let addr = listener.local_addr().context("local_addr")?;
    let mut out = io::stdout().lock();
    writeln!(out, "listening on {addr}")
        .and_then(|()| out.flush())
        .context("cannot write the ready line")
}

/// A blocking listener, [`bind`] from the common arguments: `accept` waits
/// for the next client. A failure reads
/// `cannot listen on 127.0.0.1:8093: Address already in use`. The server
/// [`announce`]s it once the rest of its set-up is done.
pub fn listen(args: &ServerArgs) -> anyhow::Result<TcpListener> {
    bind(args.addr, args.backlog, false).with_context(|| format!("cannot listen on {}", args.addr))
}

/// A non-blocking listener, Python's `server.setblocking(False)`: `accept`
/// returns `WouldBlock` when nobody is waiting, instead of waiting. Otherwise
/// as [`listen`].
pub fn listen_nonblocking(args: &ServerArgs) -> anyhow::Result<TcpListener> {
    bind(args.addr, args.backlog, true).with_context(|| format!("cannot listen on {}", args.addr))
}

/// A client's connect: tries each address `addr` resolved to, in order, as
/// nc and curl do, and returns the first connection made.
///
/// When nothing listens, the error says where it tried and what to do,
/// since a port that does not match the server's is the commonest slip:
/// `cannot connect to 127.0.0.1:8093: Connection refused; no server is
/// listening on port 8093 …`, followed by `hint`, the client's word on its
/// default port.
pub fn connect(addr: &ServerAddr, hint: &str) -> anyhow::Result<std::net::TcpStream> {
    let mut last = None;
    for &a in &addr.addrs {
        match std::net::TcpStream::connect(a) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some((a, e)),
        }
    }
    let (a, e) = last.expect("a resolved address has at least one");
    if e.kind() == io::ErrorKind::ConnectionRefused {
        anyhow::bail!(
            "cannot connect to {a}: {e}; no server is listening on port {port}. Start one, \
             or pass --addr with the address its `listening on` line shows ({hint})",
            port = a.port()
        );
    }
    Err(anyhow::Error::new(e).context(format!("cannot connect to {a}")))
}

/// What a failed `accept` means for the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptError {
    /// Nothing to accept now (non-blocking socket): go back to waiting.
    WouldBlock,
    /// That one connection failed (it was reset before we took it, a firewall
    /// refused it, a signal interrupted the call): skip it, accept the next.
    Skip,
    /// The process or system is out of descriptors or memory (EMFILE, ENFILE,
    /// ENOBUFS, ENOMEM). The pending connection stays queued, so a listener
    /// polled for readiness stays ready: stop accepting for
    /// [`ACCEPT_BACKOFF`] instead of spinning.
    OutOfResources,
    /// A bug or a broken listener (EBADF, EINVAL, …): give up. No client
    /// will come through that listener again, so a pause would only hide
    /// the fault: the server ends with `error: accept failed: …`, exit 1.
    Fatal,
}

/// How long a server stops accepting after [`AcceptError::OutOfResources`].
/// Long enough not to burn a core retrying, short enough that a freed
/// descriptor is used promptly.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Sorts an error from `accept` into what the server should do about it.
pub fn classify_accept_error(e: &io::Error) -> AcceptError {
    match e.kind() {
        io::ErrorKind::WouldBlock => return AcceptError::WouldBlock,
        // A connection that was reset or aborted before we took it. Windows
        // says WSAECONNRESET; Wine 8 says WSAENOTCONN (NotConnected) for the
        // same thing. Either way that one client is gone, not the listener.
        io::ErrorKind::Interrupted
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::NotConnected
        | io::ErrorKind::PermissionDenied => return AcceptError::Skip,
        io::ErrorKind::OutOfMemory => return AcceptError::OutOfResources,
        _ => {}
    }
    classify_os_error(e.raw_os_error())
}

#[cfg(unix)]
fn classify_os_error(code: Option<i32>) -> AcceptError {
    let Some(code) = code else {
        return AcceptError::Fatal;
    };
    match code {
        libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => AcceptError::OutOfResources,
        // accept(2) on Linux: errors of the new connection's network are
        // passed on by accept and should be treated like EAGAIN. The BSDs
        // and macOS report fewer of them; ENONET is Linux's alone.
        libc::EPROTO
        | libc::ENOPROTOOPT
        | libc::EHOSTDOWN
        | libc::EHOSTUNREACH
        | libc::EOPNOTSUPP
        | libc::ENETUNREACH
        | libc::ENETDOWN
        | libc::ETIMEDOUT => AcceptError::Skip,
        #[cfg(any(target_os = "linux", target_os = "android"))]
        libc::ENONET => AcceptError::Skip,
        _ => AcceptError::Fatal,
    }
}

#[cfg(windows)]
fn classify_os_error(code: Option<i32>) -> AcceptError {
    const WSAEMFILE: i32 = 10024;
    const WSAENOBUFS: i32 = 10055;
    const WSAENETDOWN: i32 = 10050;
    match code {
        Some(WSAEMFILE | WSAENOBUFS) => AcceptError::OutOfResources,
        Some(WSAENETDOWN) => AcceptError::Skip,
        _ => AcceptError::Fatal,
    }
}

#[cfg(not(any(unix, windows)))]
fn classify_os_error(_code: Option<i32>) -> AcceptError {
    AcceptError::Fatal
}

/// Logs a ceiling once per burst rather than once per client: a server that
/// keeps refusing or failing to accept would otherwise flood its log. Every
/// server says the same two things, so that one `grep` finds them in any
/// model's log: `…; refusing new clients` and `…; pausing accepts`.
#[derive(Debug, Default)]
pub struct ShortageLog {
    in_shortage: bool,
    refused: u64,
}

impl ShortageLog {
    /// A client was told `ERR server full` (or 503) because the server is at
    /// `limit`, which names the ceiling: `10000 connections (--max-conns)`.
    pub fn refusing(&mut self, limit: &dyn std::fmt::Display) {
        self.hit(format_args!("{limit}; refusing new clients"));
    }

    /// `accept` failed for lack of resources (EMFILE and the like): the
    /// clients wait in the listen queue while accepts pause.
    pub fn pausing(&mut self, error: &dyn std::fmt::Display) {
        self.hit(format_args!("accept failed: {error}; pausing accepts"));
    }

    fn hit(&mut self, what: std::fmt::Arguments) {
        self.refused += 1;
        if !self.in_shortage {
            self.in_shortage = true;
            log::warn!("{what} (said once until it clears)");
        }
    }

    /// Call when a connection was accepted and served normally again.
    pub fn clear(&mut self) {
        if self.in_shortage {
            log::info!(
                "serving new clients again after {} refused or failed",
                self.refused
            );
            self.in_shortage = false;
            self.refused = 0;
        }
    }
}

/// Most bytes [`close_gracefully`] reads and throws away.
const DRAIN_LIMIT: usize = 256 * 1024;

/// Ends a connection so that what was just written reaches the client.
///
/// Closing a socket whose receive queue still holds data makes the kernel
/// send a reset, and a reset can destroy the last reply (`ERR line too long`,
/// say) before the client reads it. So: send FIN after the data
/// (`shutdown(Write)`), discard whatever input has already arrived, without
/// waiting for more, then let the caller drop the socket.
pub fn close_gracefully(stream: &std::net::TcpStream) {
    use std::io::Read;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let mut scratch = [0u8; 16 * 1024];
    let mut drained = 0;
    let mut reader = stream;
    while drained < DRAIN_LIMIT {
        match reader.read(&mut scratch) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// Tells a client of an echo server there is no room (`ERR server full`)
/// and closes.
///
/// The socket is new, so its send buffer is empty and the short reply fits
/// in one write whether the socket blocks or not; a client that has already
/// gone is simply dropped.
#[cfg(feature = "echo")]
pub fn refuse(stream: &std::net::TcpStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let mut writer = stream;
    let _ = writer.write_all(crate::echo::ERR_SERVER_FULL);
    close_gracefully(stream);
}
