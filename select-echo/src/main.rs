//! I/O multiplexing with `select(2)`: the echo server of article 000 and
//! article 001 §4, one thread serving many connections.
//!
//! The process now blocks in one place only, `select`, which waits for *any*
//! of the sockets in `rlist` to have data (or a client to accept) and for any
//! in `wlist` to have room for output. Waiting for data is the kernel's job
//! again, for all sockets at once; copying it (the second phase) still
//! happens in `read`, which no longer waits because `select` said it would
//! not have to.
//!
//! The names follow the article: `rlist` (listener and connections to read),
//! `wlist` (connections owed output), `wdata` (what each is owed), and a
//! 0.5 s timeout. `select` overwrites the sets it is given with the ready
//! ones, so each turn hands it copies of the kept ("master") sets, the C
//! idiom, rather than rebuilding them by walking every connection.
//!
//! `select` has a hard wall: an `fd_set` is a bitmap of FD_SETSIZE (1024 on
//! Linux) bits, and a descriptor at or above that cannot be put in one
//! without writing past its end. Python raises `ValueError` there; C corrupts
//! memory. This server never tries: a connection whose descriptor would not
//! fit is told `ERR server full` and closed, and everyone else is served.
//!
//! ```text
//! cargo run -p select-echo                                     # terminal 1
//! cargo run -p shared --bin client -- --addr 127.0.0.1:8093    # terminal 2
//! ```

use std::process::ExitCode;

use clap::Parser;
use shared::EchoArgs;

#[derive(Parser, Debug)]
#[command(about = "Echo server multiplexing its sockets with select(2) (article 001 §4)")]
struct Args {
    #[command(flatten)]
    echo: EchoArgs,

    /// Log, each turn, how many sockets were in rlist/wlist and how many
    /// came back ready (the article prints `rl` and `wl`)
    #[arg(long)]
    trace_sets: bool,
}

/// The default `--max-conns` stays below FD_SETSIZE, leaving room for
/// stdin/stdout/stderr, the listener and a few spare descriptors.
#[cfg(unix)]
const DEFAULT_MAX_CONNS: &str = "1000";

#[cfg(not(unix))]
fn main() -> ExitCode {
    eprintln!("error: select-echo needs select(2) with POSIX fd_sets (Linux, macOS, the BSDs)");
    ExitCode::FAILURE
}

#[cfg(unix)]
fn main() -> ExitCode {
    shared::cli::init_logging();
    let args: Args =
        shared::cli::parse_args(&[("addr", "127.0.0.1:8093"), ("max_conns", DEFAULT_MAX_CONNS)]);
    shared::cli::exit_with(server::run(args))
}

#[cfg(unix)]
mod server {
    use std::io::{self, ErrorKind};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::os::fd::{AsRawFd, RawFd};
    use std::time::{Duration, Instant};

    use anyhow::Context;
    use log::{debug, info};
    use shared::net::{ACCEPT_BACKOFF, AcceptError, ShortageLog, classify_accept_error};
    use shared::{LineBuffer, Outbox, answer_lines, answer_rest};

    use super::Args;
    use fd_set::{FD_SETSIZE, FdSet};

    /// The article's `select.select(rlist, wlist, [], 0.5)` timeout.
    const TIMEOUT: Duration = Duration::from_millis(500);

    /// One client.
    struct Conn {
        stream: TcpStream,
        peer: SocketAddr,
        input: LineBuffer,
        /// The article's `wdata[sock]`: replies owed. Unlike the article's
        /// one `send(wdata[sock])`, what the kernel does not take stays here.
        wdata: Outbox,
        /// End of input or an over-long line: write what is owed, then close.
        closing: bool,
    }

    struct Server {
        listener: TcpListener,
        /// Every socket `select` should watch for reading: the listener and
        /// each connection still being read.
        rlist: FdSet,
        /// Connections with replies owed.
        wlist: FdSet,
        /// Connections by descriptor. A descriptor is below FD_SETSIZE, so
        /// this table is small, and its length is `select`'s `nfds`.
        conns: Vec<Option<Conn>>,
        /// Sockets in `rlist` and `wlist`, for `--trace-sets`.
        r_count: usize,
        w_count: usize,
        live: usize,
        max_conns: usize,
        max_line: usize,
        /// While out of descriptors, the listener is left out of `select`
        /// until then: it stays readable, and watching it would spin.
        accept_paused_until: Option<Instant>,
        shortage: ShortageLog,
    }

    pub fn run(args: Args) -> anyhow::Result<()> {
        let listener = shared::net::listen(&args.echo.server, true)?;
        let mut server = Server {
            rlist: FdSet::new(),
            wlist: FdSet::new(),
            conns: Vec::new(),
            r_count: 0,
            w_count: 0,
            live: 0,
            max_conns: args.echo.server.max_conns,
            max_line: args.echo.max_line,
            accept_paused_until: None,
            shortage: ShortageLog::default(),
            listener,
        };
        let listener_fd = server.listener.as_raw_fd();
        server.rlist.insert(listener_fd);
        server.r_count = 1;
        server.conns.resize_with(listener_fd as usize + 1, || None);
        shared::net::announce(&server.listener)?;

        loop {
            // `select` overwrites its arguments with the ready sockets, so
            // it gets copies of the kept sets, 128 bytes each.
            let mut rl = server.rlist;
            let mut wl = server.wlist;
            let mut timeout = TIMEOUT;
            if let Some(until) = server.accept_paused_until {
                rl.remove(listener_fd);
                timeout = timeout.min(until.saturating_duration_since(Instant::now()));
            }
            let nfds = server.conns.len();
            let ready = match fd_set::select(nfds, &mut rl, &mut wl, timeout) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("select failed"),
            };
            if args.trace_sets {
                info!(
                    "rlist {} wlist {} -> {ready} ready",
                    server.r_count, server.w_count
                );
            }
            if server
                .accept_paused_until
                .is_some_and(|t| Instant::now() >= t)
            {
                server.accept_paused_until = None;
            }

            // The article's `for sock in rl` and `for sock in wl`, in one
            // walk over the descriptors, stopping once all `ready` are seen.
            let mut seen = 0;
            for fd in 0..nfds as RawFd {
                if seen == ready {
                    break;
                }
                let (readable, writable) = (rl.contains(fd), wl.contains(fd));
                seen += usize::from(readable) + usize::from(writable);
                if fd == listener_fd {
                    if readable {
                        server.accept_all();
                    }
                } else if readable || writable {
                    server.serve(fd);
                }
            }
        }
    }

    impl Server {
        /// The article's `conn, addr = sock.accept(); rlist.append(conn)`,
        /// repeated until nobody is waiting.
        fn accept_all(&mut self) {
            loop {
                let (stream, peer) = match self.listener.accept() {
                    Ok(pair) => pair,
                    Err(e) => match classify_accept_error(&e) {
                        AcceptError::WouldBlock => return,
                        AcceptError::Skip => {
                            debug!("accept: {e}");
                            continue;
                        }
                        // EMFILE and the like: the client stays queued and
                        // the listener readable. Stop watching it a while.
                        AcceptError::OutOfResources | AcceptError::Fatal => {
                            self.shortage
                                .hit(&format_args!("accept failed: {e}; pausing accepts"));
                            self.accept_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                            return;
                        }
                    },
                };
                let fd = stream.as_raw_fd();
                // The FD_SETSIZE wall: this descriptor cannot go in an fd_set.
                if fd as usize >= FD_SETSIZE {
                    self.shortage.hit(&format_args!(
                        "descriptor {fd} is past select's FD_SETSIZE ({FD_SETSIZE}); \
                         refusing new clients"
                    ));
                    shared::net::refuse(&stream);
                    continue;
                }
                if self.live >= self.max_conns {
                    self.shortage.hit(&format_args!(
                        "{} connections (--max-conns); refusing new clients",
                        self.max_conns
                    ));
                    shared::net::refuse(&stream);
                    continue;
                }
                if let Err(e) = stream.set_nonblocking(true) {
                    debug!("{peer}: {e}");
                    continue;
                }
                self.shortage.clear();
                info!("{peer} connected");
                let slot = fd as usize;
                if self.conns.len() <= slot {
                    self.conns.resize_with(slot + 1, || None);
                }
                self.conns[slot] = Some(Conn {
                    stream,
                    peer,
                    input: LineBuffer::new(self.max_line),
                    wdata: Outbox::new(),
                    closing: false,
                });
                self.live += 1;
                self.watch(fd, true, false);
            }
        }

        /// A connection `select` reported: read if it is readable, write what
        /// is owed, then put it in the sets that match what it waits for.
        fn serve(&mut self, fd: RawFd) {
            let Some(conn) = self.conns[fd as usize].as_mut() else {
                return;
            };
            match exchange(conn) {
                Ok(true) => {
                    let want_read = !conn.closing && !conn.wdata.is_full();
                    let want_write = !conn.wdata.is_empty();
                    self.watch(fd, want_read, want_write);
                }
                Ok(false) => {
                    shared::net::close_gracefully(&conn.stream);
                    info!("{} closed", conn.peer);
                    self.forget(fd);
                }
                Err(e) => {
                    debug!("{} dropped: {e}", conn.peer);
                    self.forget(fd);
                }
            }
        }

        /// Puts `fd` in, or takes it out of, the kept `rlist` and `wlist`.
        fn watch(&mut self, fd: RawFd, read: bool, write: bool) {
            if read != self.rlist.contains(fd) {
                if read {
                    self.rlist.insert(fd);
                    self.r_count += 1;
                } else {
                    self.rlist.remove(fd);
                    self.r_count -= 1;
                }
            }
            if write != self.wlist.contains(fd) {
                if write {
                    self.wlist.insert(fd);
                    self.w_count += 1;
                } else {
                    self.wlist.remove(fd);
                    self.w_count -= 1;
                }
            }
        }

        /// Drops a connection (closing its socket) and every trace of it.
        fn forget(&mut self, fd: RawFd) {
            self.watch(fd, false, false);
            self.conns[fd as usize] = None;
            self.live -= 1;
            // Keep `nfds` (the table's length) at the highest descriptor + 1.
            while self.conns.last().is_some_and(Option::is_none)
                && self.conns.len() > self.listener.as_raw_fd() as usize + 1
            {
                self.conns.pop();
            }
        }
    }

    /// Reads what has arrived, answers every complete line, and writes the
    /// replies at once. Returns whether the connection stays open.
    ///
    /// The article's loop stores `data.upper()` for `recv(1024)` and sends it
    /// on the next turn, when `select` says the socket is writable: one
    /// `recv` taken for one message, and an extra `select` per reply. Here
    /// lines are framed across reads, and replies are written straight away:
    /// a socket is nearly always writable, so `wlist` is only for what the
    /// kernel would not take yet.
    fn exchange(conn: &mut Conn) -> io::Result<bool> {
        if !conn.closing && !conn.wdata.is_full() {
            match conn.input.read_from(&mut conn.stream) {
                Ok(0) => {
                    let _ = answer_rest(&mut conn.input, b"", conn.wdata.buf_mut());
                    conn.closing = true;
                }
                Ok(_) => {
                    if answer_lines(&mut conn.input, b"", conn.wdata.buf_mut()).is_err() {
                        conn.closing = true;
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(e) => return Err(e),
            }
        }
        conn.wdata.write_to(&mut conn.stream)?;
        Ok(!(conn.closing && conn.wdata.is_empty()))
    }

    /// A safe face on `fd_set` and `select(2)`. nix wraps them too, but its
    /// `FdSet` borrows every descriptor it holds, which rules out the kept
    /// sets above.
    mod fd_set {
        use std::io;
        use std::os::fd::RawFd;
        use std::ptr;
        use std::time::Duration;

        /// Bits in an `fd_set`: descriptors from 0 to FD_SETSIZE - 1 fit.
        // The constant's type differs between platforms.
        #[allow(clippy::unnecessary_cast)]
        pub const FD_SETSIZE: usize = libc::FD_SETSIZE as usize;

        #[derive(Clone, Copy)]
        pub struct FdSet(libc::fd_set);

        impl FdSet {
            pub fn new() -> FdSet {
                let mut set = std::mem::MaybeUninit::<libc::fd_set>::uninit();
                // SAFETY: FD_ZERO initialises the whole set it is pointed at.
                unsafe {
                    libc::FD_ZERO(set.as_mut_ptr());
                    FdSet(set.assume_init())
                }
            }

            pub fn insert(&mut self, fd: RawFd) {
                assert!(
                    (0..FD_SETSIZE as RawFd).contains(&fd),
                    "fd {fd} outside fd_set"
                );
                // SAFETY: fd is within the set, checked above.
                unsafe { libc::FD_SET(fd, &mut self.0) }
            }

            pub fn remove(&mut self, fd: RawFd) {
                assert!(
                    (0..FD_SETSIZE as RawFd).contains(&fd),
                    "fd {fd} outside fd_set"
                );
                // SAFETY: fd is within the set, checked above.
                unsafe { libc::FD_CLR(fd, &mut self.0) }
            }

            pub fn contains(&self, fd: RawFd) -> bool {
                assert!(
                    (0..FD_SETSIZE as RawFd).contains(&fd),
                    "fd {fd} outside fd_set"
                );
                // SAFETY: fd is within the set, checked above.
                unsafe { libc::FD_ISSET(fd, &self.0) }
            }
        }

        /// `select(nfds, read, write, NULL, timeout)`: waits until a socket
        /// in `read` or `write` is ready or `timeout` passes, leaves only the
        /// ready ones in the sets, and returns how many bits remain.
        pub fn select(
            nfds: usize,
            read: &mut FdSet,
            write: &mut FdSet,
            timeout: Duration,
        ) -> io::Result<usize> {
            assert!(nfds <= FD_SETSIZE, "nfds {nfds} past FD_SETSIZE");
            let mut tv = libc::timeval {
                tv_sec: timeout.as_secs() as libc::time_t,
                tv_usec: timeout.subsec_micros() as libc::suseconds_t,
            };
            // SAFETY: both sets are valid fd_sets we own exclusively, nfds is
            // within them (asserted), and tv is a valid timeval; select only
            // writes into these.
            let n = unsafe {
                libc::select(
                    nfds as libc::c_int,
                    &mut read.0,
                    &mut write.0,
                    ptr::null_mut(),
                    &mut tv,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(n as usize)
        }
    }
}
