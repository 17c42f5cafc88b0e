//! Signal-driven I/O, Stevens' fourth model (UNP §6.2), which articles 001
//! and 002 list and set aside as rarely used: the kernel *tells* the
//! process that a socket is ready, by sending it a signal.
//!
//! Each socket gets `O_ASYNC` (send a signal on readiness), `F_SETOWN`
//! (send it to this process) and `F_SETSIG(SIGRTMIN)` (send a real-time
//! signal, not plain SIGIO). Real-time signals queue, one per event, and
//! each carries the descriptor (`si_fd`) and what happened (`si_band`):
//! that is the readiness notification. The wait for data is the kernel's,
//! as with select; the copy (`read`) happens when the signal is taken, and
//! never waits.
//!
//! **Taking the signals.** They are blocked and read synchronously from a
//! `signalfd`, in batches of up to 64 per `read`, in the main loop: no work
//! in an asynchronous handler, where almost nothing is safe to call, and one
//! system call for a whole batch of events where `sigwaitinfo` would take
//! one per event.
//!
//! **Edges, not levels.** A signal is sent when data *arrives*, not while it
//! is there, so each one is answered by reading until `WouldBlock`; what was
//! left would otherwise wait for a signal that never comes. A socket that
//! could not take all its output raises a signal once it has room again.
//!
//! **The classic flaw.** The real-time signal queue is bounded
//! (`RLIMIT_SIGPENDING`). When it is full, the kernel drops the event and
//! sends plain SIGIO instead, which carries no descriptor and does not
//! queue: the process knows only that *something* happened. The server then
//! checks everything it has (accepts until `WouldBlock`, serves every
//! connection until `WouldBlock`), and logs the overflows once per burst.
//!
//! Readiness for thousands of sockets through one signal queue, a signal per
//! event, and a full scan whenever the queue overflows: that is why epoll
//! replaced this model. Linux only (`F_SETSIG`).
//!
//! ```text
//! cargo run -p sigio-echo                                      # terminal 1
//! cargo run -p shared --bin client -- --addr 127.0.0.1:8095    # terminal 2
//! ```

use std::process::ExitCode;

use clap::Parser;
use shared::EchoArgs;

#[derive(Parser, Debug)]
#[command(
    about = "Echo server on signal-driven I/O: readiness as queued real-time signals (Stevens' fourth model)"
)]
struct Args {
    #[command(flatten)]
    echo: EchoArgs,
}

#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    eprintln!("error: sigio-echo needs Linux (F_SETSIG and signalfd)");
    ExitCode::FAILURE
}

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    shared::cli::init_logging();
    let args: Args = shared::cli::parse_args(&[("addr", "127.0.0.1:8095")]);
    shared::cli::exit_with(server::run(&args))
}

#[cfg(target_os = "linux")]
mod server {
    use std::io::{self, ErrorKind, Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::time::Duration;

    use anyhow::Context;
    use log::{debug, info};
    use shared::Outbox;
    use shared::limits::Room;
    use shared::net::{ACCEPT_BACKOFF, AcceptError, ShortageLog, classify_accept_error};
    use shared::{answer_partial_at_end, answer_read};

    use super::Args;

    /// `fcntl(F_SETSIG)`: Linux's value on every architecture
    /// (asm-generic/fcntl.h); the libc crate does not export it for glibc.
    const F_SETSIG: libc::c_int = 10;
    /// Signals taken from the signalfd per `read`.
    const BATCH: usize = 64;
    /// What one read takes at most.
    const READ_SIZE: usize = 64 * 1024;
    /// Reads one connection gets per signal (up to 1 MiB of lines), before
    /// the loop takes the other signals and comes back to it.
    const READS_PER_TURN: usize = 16;

    pub fn run(args: &Args) -> anyhow::Result<()> {
        let rt = libc::SIGRTMIN();
        // The signals this server takes, blocked so that none runs a
        // handler: readiness (SIGRTMIN), queue overflow (SIGIO), and the end
        // of an accept pause (SIGALRM). The process is single-threaded, so
        // blocking them here blocks them everywhere.
        let mask = sigset(&[rt, libc::SIGIO, libc::SIGALRM]);
        // SAFETY: mask is a valid, initialised sigset_t.
        if unsafe { libc::sigprocmask(libc::SIG_BLOCK, &mask, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error()).context("sigprocmask");
        }
        // SAFETY: as above; -1 asks for a new signalfd.
        let sfd = unsafe { libc::signalfd(-1, &mask, libc::SFD_CLOEXEC) };
        if sfd < 0 {
            return Err(io::Error::last_os_error()).context("signalfd");
        }
        // SAFETY: signalfd returned a new descriptor that nothing else owns.
        let sfd = unsafe { OwnedFd::from_raw_fd(sfd) };

        let listener = shared::net::listen_nonblocking(&args.echo.server)?;
        signal_driven(listener.as_raw_fd(), rt).context("O_ASYNC on the listener")?;
        let mut server = Server {
            listener,
            conns: Vec::new(),
            live: 0,
            room: shared::limits::descriptor_room(args.echo.server.max_conns, "--max-conns"),
            max_line: args.echo.max_line,
            accept_paused: false,
            shortage: ShortageLog::default(),
            input: vec![0; READ_SIZE].into_boxed_slice(),
            output: Vec::new(),
            overflows: 0,
            later: Later::default(),
        };
        shared::net::announce(&server.listener)?;
        // A client that connected before O_ASYNC was set raised no signal.
        server.accept_all(rt)?;

        // SAFETY: signalfd_siginfo is plain data; all zeroes is a value.
        let mut infos: [libc::signalfd_siginfo; BATCH] = unsafe { std::mem::zeroed() };
        let listener_fd = server.listener.as_raw_fd();
        loop {
            // Connections cut short come back after each batch (below), and
            // here when no signal is waiting, since the wait would not end
            // for data they already have.
            if !server.later.fds.is_empty() && !signals_waiting(&sfd) {
                server.resume_unfinished();
                continue;
            }
            // The only wait: for the next batch of signals.
            let taken = match read_batch(&sfd, &mut infos) {
                Ok(taken) => taken,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("reading the signalfd"),
            };
            // One pass over the batch. A plain SIGIO in it means the queue
            // overflowed: the events it lost are found by the scan below.
            let mut overflowed = false;
            for info in &infos[..taken] {
                let signo = info.ssi_signo as libc::c_int;
                if signo == rt {
                    // The event: which descriptor, and what happened to it.
                    let (fd, band) = (info.ssi_fd, info.ssi_band);
                    debug!("SIGRTMIN fd {fd} band {band:#x}");
                    if fd == listener_fd {
                        server.accept_all(rt)?;
                    } else {
                        server.serve(fd);
                    }
                } else if signo == libc::SIGIO {
                    overflowed = true;
                } else if signo == libc::SIGALRM {
                    server.accept_paused = false;
                    server.accept_all(rt)?;
                }
            }
            if overflowed {
                server.recover_from_overflow(&sfd, &mut infos, rt)?;
            } else {
                server.end_of_overflows();
            }
            // And after every batch, so that a steady stream of other
            // clients' signals cannot keep a connection cut short waiting.
            server.resume_unfinished();
        }
    }

    struct Server {
        listener: TcpListener,
        /// Connections by descriptor: `si_fd` finds them.
        conns: Vec<Option<Conn>>,
        live: usize,
        /// `--max-conns`, or less if the descriptor limit allows less.
        room: Room,
        max_line: usize,
        /// Out of descriptors: accepting waits for SIGALRM.
        accept_paused: bool,
        shortage: ShortageLog,
        /// Where every read lands and every reply batch is built.
        input: Box<[u8]>,
        output: Vec<u8>,
        /// Overflows (plain SIGIO) in the burst going on, for the log.
        overflows: u64,
        /// Connections cut short, for the loop to come back to.
        later: Later,
    }

    /// Connections that used their reads for the turn before reading until
    /// `WouldBlock`. Their data raises no new signal, so the loop comes
    /// back to them itself.
    #[derive(Default)]
    struct Later {
        fds: Vec<RawFd>,
        /// Times a connection was cut short, for the log.
        cut_short: u64,
    }

    /// One client.
    struct Conn {
        stream: TcpStream,
        peer: SocketAddr,
        /// The unfinished line: all the input kept between reads.
        partial: Vec<u8>,
        /// Replies the socket has not taken; empty (and unallocated) most
        /// of the time.
        owed: Outbox,
        /// End of input or an over-long line: write what is owed, then close.
        closing: bool,
        /// Read its share this turn with more to come: in
        /// `Server::later` (or about to be), served again after the next
        /// signals.
        unfinished: bool,
    }

    /// Reads up to [`BATCH`] queued signals into `infos` (waiting for one if
    /// none is queued) and returns how many came.
    fn read_batch(sfd: &OwnedFd, infos: &mut [libc::signalfd_siginfo; BATCH]) -> io::Result<usize> {
        // SAFETY: read needs `count` writable bytes at the pointer: `infos`
        // is exactly that size, borrowed mutably, and any bytes are a valid
        // signalfd_siginfo.
        let n = unsafe {
            libc::read(
                sfd.as_raw_fd(),
                infos.as_mut_ptr().cast(),
                size_of_val(infos),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize / size_of::<libc::signalfd_siginfo>())
    }

    /// Reads and discards every signal queued for the signalfd, without
    /// waiting: after an overflow, the full scan that follows covers them.
    /// Returns how many were flushed, and whether a SIGALRM (the end of an
    /// accept pause, which no scan covers) was among them.
    fn flush(sfd: &OwnedFd, infos: &mut [libc::signalfd_siginfo; BATCH]) -> (usize, bool) {
        let (mut flushed, mut alarm) = (0, false);
        while signals_waiting(sfd) {
            let Ok(taken) = read_batch(sfd, infos) else {
                break;
            };
            flushed += taken;
            alarm |= infos[..taken]
                .iter()
                .any(|info| info.ssi_signo as libc::c_int == libc::SIGALRM);
        }
        (flushed, alarm)
    }

    impl Server {
        /// Accepts until nobody is waiting; every new socket is made
        /// signal-driven and served once (its data may have come before).
        /// `Err` only for a broken listener, which ends the server.
        fn accept_all(&mut self, rt: libc::c_int) -> anyhow::Result<()> {
            while !self.accept_paused {
                let (stream, peer) = match self.listener.accept() {
                    Ok(pair) => pair,
                    Err(e) => match classify_accept_error(&e) {
                        AcceptError::WouldBlock => return Ok(()),
                        AcceptError::Skip => {
                            debug!("accept: {e}");
                            continue;
                        }
                        // Out of descriptors: the client stays queued and
                        // raises no new signal, so a timer (SIGALRM, taken
                        // with the others) brings the server back to it.
                        AcceptError::OutOfResources => {
                            self.shortage.pausing(&e);
                            self.accept_paused = true;
                            alarm_after(ACCEPT_BACKOFF);
                            return Ok(());
                        }
                        // A broken listener (EBADF, EINVAL): no client will
                        // come through it again, so a timer would only
                        // retry it for ever.
                        AcceptError::Fatal => return Err(e).context("accept failed"),
                    },
                };
                if self.live >= self.room.conns {
                    self.shortage.refusing(&self.room.limit);
                    shared::net::refuse(&stream);
                    continue;
                }
                let fd = stream.as_raw_fd();
                if let Err(e) = stream
                    .set_nonblocking(true)
                    .and_then(|()| signal_driven(fd, rt))
                {
                    debug!("{peer}: {e}");
                    continue;
                }
                self.shortage.clear();
                info!("{peer} connected");
                let at = fd as usize;
                if self.conns.len() <= at {
                    self.conns.resize_with(at + 1, || None);
                }
                self.conns[at] = Some(Conn {
                    stream,
                    peer,
                    partial: Vec::new(),
                    owed: Outbox::spill(),
                    closing: false,
                    unfinished: false,
                });
                self.live += 1;
                self.serve(fd);
            }
            Ok(())
        }

        /// After an overflow: every connection, until `WouldBlock`.
        fn serve_all(&mut self) {
            for fd in 0..self.conns.len() {
                if self.conns[fd].is_some() {
                    self.serve(fd as RawFd);
                }
            }
        }

        /// A signal named `fd` (or an overflow named nobody): write what is
        /// owed, read and answer until `WouldBlock`, close when done. A
        /// signal for a descriptor already closed, or reused, finds nothing
        /// to do: reads would block.
        fn serve(&mut self, fd: RawFd) {
            let Some(Some(conn)) = self.conns.get_mut(fd as usize) else {
                return;
            };
            if conn.unfinished {
                // Its turn comes after the signals waiting now: served on
                // each of its own signals, a client that floods would
                // still hold the loop, one share at a time.
                return;
            }
            let later = &mut self.later;
            match read_until_blocked(
                conn,
                fd,
                &mut self.input,
                &mut self.output,
                self.max_line,
                later,
            ) {
                Ok(true) => {}
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

        /// The signal queue overflowed (a plain SIGIO came): events were
        /// lost, and nothing says which, so every connection is checked,
        /// once. The real-time signals still queued were all raised before
        /// that check, which covers them, so they are thrown away first:
        /// served one by one, each batch of them that held another plain
        /// SIGIO would bring another full scan, and one overflow would cost
        /// many. `Err` only for a listener the check finds broken.
        fn recover_from_overflow(
            &mut self,
            sfd: &OwnedFd,
            infos: &mut [libc::signalfd_siginfo; BATCH],
            rt: libc::c_int,
        ) -> anyhow::Result<()> {
            let (flushed, alarm) = flush(sfd, infos);
            if alarm {
                self.accept_paused = false;
            }
            if self.overflows == 0 {
                info!(
                    "real-time signal queue full: plain SIGIO, no descriptor; \
                     checking all {} connections (said once per burst)",
                    self.live
                );
            }
            debug!("overflow: {flushed} queued signals flushed before the scan");
            self.overflows += 1;
            self.accept_all(rt)?;
            self.serve_all();
            Ok(())
        }

        /// A batch without an overflow ends a burst of them: said once,
        /// with how many there were.
        fn end_of_overflows(&mut self) {
            if self.overflows > 0 {
                info!(
                    "signal queue overflowed {} times in this burst; every connection was \
                     checked once each time",
                    self.overflows
                );
                self.overflows = 0;
            }
        }

        /// Another share of reads for each connection cut short, in the
        /// order they were. The flag says a connection is still owed one; a
        /// descriptor closed and reused meanwhile is not.
        fn resume_unfinished(&mut self) {
            for fd in std::mem::take(&mut self.later.fds) {
                if let Some(Some(conn)) = self.conns.get_mut(fd as usize)
                    && conn.unfinished
                {
                    conn.unfinished = false;
                    self.serve(fd);
                }
            }
        }

        fn forget(&mut self, fd: RawFd) {
            self.conns[fd as usize] = None;
            self.live -= 1;
        }
    }

    /// Reads and answers until the socket would block, or for
    /// [`READS_PER_TURN`] reads (a client sending faster than it is served:
    /// then `conn.unfinished` is set, and the loop must come back to it,
    /// since no signal will), writing the replies at once. Returns whether
    /// the connection stays open.
    ///
    /// A level-triggered loop (select-echo's, selectors-echo's) reads once
    /// per event and hears again about a socket with data left; a signal is
    /// an edge, raised once per arrival, so this one must read until
    /// `WouldBlock`.
    fn read_until_blocked(
        conn: &mut Conn,
        fd: RawFd,
        input: &mut [u8],
        output: &mut Vec<u8>,
        max_line: usize,
        later: &mut Later,
    ) -> io::Result<bool> {
        // A client that pipelines without pause would otherwise hold the
        // loop, and every other signal behind it: at most this many reads.
        for _ in 0..READS_PER_TURN {
            // Nothing owed, the common case, costs one test.
            if !conn.owed.is_empty() {
                let sent = send(&mut conn.stream, conn.owed.pending())?;
                conn.owed.consume(sent);
                if conn.owed.is_full() {
                    // A client that does not read: stop reading it until
                    // the signal that says its socket has room again.
                    return Ok(true);
                }
            }
            if conn.closing {
                return Ok(!conn.owed.is_empty());
            }
            let n = match conn.stream.read(input) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            output.clear();
            if n == 0 {
                answer_partial_at_end(&mut conn.partial, b"", output);
                conn.closing = true;
            } else if answer_read(&mut conn.partial, &input[..n], max_line, b"", output).is_err() {
                conn.closing = true;
            }
            // Written from the loop's buffer; only the rest is copied.
            // While replies are owed already, these wait behind them, so
            // the order stays.
            let mut sent = 0;
            if conn.owed.is_empty() {
                sent = send(&mut conn.stream, output)?;
            }
            if sent < output.len() {
                conn.owed.buf_mut().extend_from_slice(&output[sent..]);
            }
        }
        Ok(cut_short(conn, fd, later))
    }

    /// Writes as much of `bytes` as the kernel takes now, without waiting,
    /// and returns how much. The caller keeps the rest in `Conn::owed`.
    fn send(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<usize> {
        let mut sent = 0;
        while sent < bytes.len() {
            match stream.write(&bytes[sent..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => sent += n,
                // The send buffer is full: the rest is owed, and the signal
                // the socket raises once it has room brings the server back.
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(sent)
    }

    /// A connection read [`READS_PER_TURN`] times in one turn without
    /// running dry: the loop comes back to it, once, after the others,
    /// unless it is closing (then what it owes goes as for any other).
    /// (No inlining hints: with `#[cold]` and `#[inline(never)]` a request
    /// took 390 instructions at depth 1, without them 392.)
    fn cut_short(conn: &mut Conn, fd: RawFd, later: &mut Later) -> bool {
        if conn.closing {
            return !conn.owed.is_empty();
        }
        if !conn.unfinished {
            conn.unfinished = true;
            later.fds.push(fd);
            later.cut_short += 1;
            debug!(
                "{} read {READS_PER_TURN} times this turn; the rest after the others \
                 ({} cut short so far)",
                conn.peer, later.cut_short
            );
        }
        true
    }

    /// Whether signals are queued for the signalfd, without waiting.
    fn signals_waiting(sfd: &OwnedFd) -> bool {
        let mut pfd = libc::pollfd {
            fd: sfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll needs `nfds` (1) valid, writable pollfd entries: one
        // live local.
        unsafe { libc::poll(&mut pfd, 1, 0) > 0 }
    }

    /// Makes `fd` signal-driven: readiness raises `signal` (a real-time
    /// signal, so that it queues and carries `fd`) for this process.
    fn signal_driven(fd: RawFd, signal: libc::c_int) -> io::Result<()> {
        // SAFETY: these fcntl commands take integers, no pointers; the
        // caller's part is the descriptor, an open socket this server owns.
        // (The owner and the signal are set before O_ASYNC turns signals on.)
        unsafe {
            if libc::fcntl(fd, F_SETSIG, signal) < 0
                || libc::fcntl(fd, libc::F_SETOWN, libc::getpid()) < 0
            {
                return Err(io::Error::last_os_error());
            }
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags < 0
                || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_ASYNC | libc::O_NONBLOCK) < 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// A one-shot SIGALRM after `after`.
    fn alarm_after(after: Duration) {
        let timer = libc::itimerval {
            it_interval: libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
            it_value: libc::timeval {
                tv_sec: after.as_secs() as libc::time_t,
                tv_usec: after.subsec_micros() as libc::suseconds_t,
            },
        };
        // SAFETY: setitimer needs a valid itimerval pointer and a null or
        // writable old one: a live local, and null.
        unsafe {
            libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut());
        }
    }

    fn sigset(signals: &[libc::c_int]) -> libc::sigset_t {
        let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset needs a writable sigset_t, and initialises
        // it; sigaddset then needs an initialised one: both get `set`, a
        // live local, in that order.
        unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            for &s in signals {
                libc::sigaddset(set.as_mut_ptr(), s);
            }
            set.assume_init()
        }
    }
}
