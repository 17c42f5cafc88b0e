//! `--mode fork`: a process per connection, the multiprocess server article
//! 004 recalls (and inetd's, and Apache prefork's).
//!
//! The parent accepts and forks; the child serves its one client with the
//! same blocking `handle` the threads use, then exits; the parent closes
//! its copy of the socket and goes back to accepting. Each client costs a
//! process: its own address space (copy-on-write pages of the parent's),
//! descriptor table and scheduler entry. 004 says it has the threads'
//! problems plus more memory and costlier switches; bench-models measures
//! both beside each other.
//!
//! **Why `fork` is sound here.** Forking a multi-threaded process leaves the
//! child with only the forking thread, and with any lock another thread
//! held locked forever, so the child may then call only async-signal-safe
//! functions. This parent never starts a thread (env_logger does not
//! either): it is single-threaded when it forks, so the child is a complete
//! copy and may allocate, log and use std freely. Before serving, the child
//! puts the parent's signal handlers back to the default (the signals stay
//! blocked across the fork until it has), and closes its
//! copies of the listener and of the parent's wake-up socket: a child must
//! not keep the port open after the parent is gone, nor wake the parent.
//! It ends with `_exit`, so nothing of the parent's (its `atexit` handlers,
//! its buffered output) runs twice.
//!
//! **Reaping.** A child that exits stays a zombie until the parent waits for
//! it. Waiting only after the next `accept` would leave zombies as long as
//! no new client comes. So the parent reaps when SIGCHLD arrives, with the
//! self-pipe trick: the handler writes one byte into a socket pair, and the
//! parent waits in `poll` on both the listener and the other end. (A handler
//! that only set a flag would race a blocking `accept`: a signal between
//! the check and the call would sleep until the next client. Linux's
//! `signalfd` would do the same as the pair, but this mode runs on every
//! Unix.) The handler does nothing else; the reaping, `waitpid(-1, WNOHANG)`
//! until none is left, happens in the loop.
//!
//! **Stopping.** SIGTERM and SIGINT wake the parent through the same pair,
//! and the handler records which came in an atomic, since a pair filled by
//! SIGCHLDs drops bytes; the parent passes SIGTERM on to every live child,
//! reaps them, and then dies by
//! the signal it got, as every other server does, so stopping the server
//! stops its children. (SIGKILL cannot be caught; a
//! child whose parent was killed still ends when its client leaves.)
//!
//! **Limits.** `--max-conns` caps the live children: one more client is
//! told `ERR server full`. So is a client whose fork fails (EAGAIN, at the
//! process limit); the parent neither dies nor retries in a loop, and serves
//! again once children exit. A child that is killed takes nothing from the
//! parent: it is reaped like any other.

use std::collections::HashSet;
use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use log::{debug, info, warn};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, kill, sigaction};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};
use shared::net::{ACCEPT_BACKOFF, AcceptError, ShortageLog, classify_accept_error};

/// The write end of the wake-up pair, for the signal handler; -1 before set-up.
static WAKE: AtomicI32 = AtomicI32::new(-1);

/// The signals the parent handles, each carried through the pair as a byte.
const HANDLED: [Signal; 3] = [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT];

/// SIGTERM or SIGINT, once one has come (0 before): the stop is recorded
/// here, not only in the pair, whose byte can be lost.
static STOP: AtomicI32 = AtomicI32::new(0);

/// Runs on SIGCHLD, SIGTERM and SIGINT: records a stop, and writes one byte
/// into the wake-up pair; no other work (only async-signal-safe calls here).
extern "C" fn on_signal(signal: libc::c_int) {
    let saved = Errno::last_raw();
    if signal != libc::SIGCHLD {
        // A lock-free atomic store is async-signal-safe.
        STOP.store(signal, Ordering::Relaxed);
    }
    let byte = signal as u8;
    // SAFETY: write(2) is async-signal-safe; the descriptor is the pair's
    // non-blocking write end, open for as long as the handler is installed,
    // and the buffer is a local byte. A full pair drops the byte (children
    // exiting fast during a long accept burst can fill it): harmless, since
    // a byte already waiting wakes the loop just the same, and the loop
    // reads the stop from `STOP`, not from the bytes.
    unsafe {
        libc::write(WAKE.load(Ordering::Relaxed), (&raw const byte).cast(), 1);
    }
    // The interrupted code may be about to read errno.
    Errno::set_raw(saved);
}

pub fn run(listener: TcpListener, max_line: usize, max_conns: usize) -> anyhow::Result<()> {
    // Non-blocking, so that a readiness `poll` reported falsely (another
    // client's reset) cannot block the parent in `accept`.
    listener.set_nonblocking(true)?;
    // Raised like every server's, though here it is no ceiling: each child
    // holds its own client, and the parent none.
    if let Some(limit) = shared::limits::raise_descriptor_limit() {
        log::info!("{limit}: each child holds one client, the parent none");
    }
    let (wake_rx, wake_tx) = UnixStream::pair().context("socketpair")?;
    wake_rx.set_nonblocking(true)?;
    wake_tx.set_nonblocking(true)?;
    WAKE.store(wake_tx.as_raw_fd(), Ordering::Relaxed);
    let handler = SigAction::new(
        SigHandler::Handler(on_signal),
        // SA_RESTART: calls the signal interrupts resume where they can;
        // SA_NOCLDSTOP: a stopped child is not an exited one.
        SaFlags::SA_RESTART | SaFlags::SA_NOCLDSTOP,
        SigSet::empty(),
    );
    for signal in HANDLED {
        // SAFETY: sigaction's caller guarantees the handler may run at any
        // point of the program: it calls only write(2), async-signal-safe.
        unsafe { sigaction(signal, &handler) }.with_context(|| format!("sigaction {signal}"))?;
    }
    shared::net::announce(&listener)?;

    let mut signals = SigSet::empty();
    for signal in HANDLED {
        signals.add(signal);
    }
    let mut children: HashSet<Pid> = HashSet::new();
    let mut shortage = ShortageLog::default();
    let mut accept_paused_until: Option<Instant> = None;
    loop {
        // Wait for a client or a signal; while out of descriptors, for a
        // signal or the end of the pause only.
        let paused = accept_paused_until.is_some_and(|t| Instant::now() < t);
        wait(&listener, &wake_rx, paused)?;

        // Signals first: reap, and stop if asked to.
        drain(&wake_rx);
        reap(&mut children);
        if let Ok(signal) = Signal::try_from(STOP.load(Ordering::Relaxed)) {
            stop_children(children);
            die_by(signal);
        }
        if paused {
            continue;
        }
        accept_paused_until = None;

        // Accept every waiting client, a child each.
        while let Some((stream, peer)) =
            accept_next(&listener, &mut shortage, &mut accept_paused_until)?
        {
            if children.len() >= max_conns {
                shortage.refusing(&format_args!("{max_conns} children (--max-conns)"));
                shared::net::refuse(&stream);
                continue;
            }
            match fork_with_signals_blocked(&signals) {
                Ok(ForkResult::Child) => serve_in_child(
                    stream, peer, max_line, &listener, &wake_rx, &wake_tx, &signals,
                ),
                Ok(ForkResult::Parent { child }) => {
                    shortage.clear();
                    info!("{peer} connected, served by process {child}");
                    children.insert(child);
                    // The parent's copy of the socket closes here.
                    drop(stream);
                }
                Err(e) => {
                    shortage.refusing(&format_args!("fork failed: {e}"));
                    shared::net::refuse(&stream);
                }
            }
        }
    }
}

/// Waits in `poll` for a client on the listener (unless accepts are
/// `paused`: then only until the pause ends) or a byte on the wake-up pair.
fn wait(listener: &TcpListener, wake_rx: &UnixStream, paused: bool) -> anyhow::Result<()> {
    let (listen_for, timeout) = if paused {
        let pause = PollTimeout::try_from(ACCEPT_BACKOFF).unwrap_or(PollTimeout::NONE);
        (PollFlags::empty(), pause)
    } else {
        (PollFlags::POLLIN, PollTimeout::NONE)
    };
    let mut fds = [
        PollFd::new(listener.as_fd(), listen_for),
        PollFd::new(wake_rx.as_fd(), PollFlags::POLLIN),
    ];
    match poll(&mut fds, timeout) {
        Ok(_) | Err(Errno::EINTR) => Ok(()),
        Err(e) => Err(e).context("poll"),
    }
}

/// The next waiting client, or `None` when nobody is left to take. Out of
/// descriptors, accepts pause for [`ACCEPT_BACKOFF`] (`paused_until`):
/// the client stays queued, and the listener readable.
fn accept_next(
    listener: &TcpListener,
    shortage: &mut ShortageLog,
    paused_until: &mut Option<Instant>,
) -> anyhow::Result<Option<(TcpStream, SocketAddr)>> {
    loop {
        match listener.accept() {
            Ok(pair) => return Ok(Some(pair)),
            Err(e) => match classify_accept_error(&e) {
                AcceptError::WouldBlock => return Ok(None),
                AcceptError::Skip => debug!("accept: {e}"),
                AcceptError::OutOfResources => {
                    shortage.pausing(&e);
                    *paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                    return Ok(None);
                }
                AcceptError::Fatal => return Err(e).context("accept failed"),
            },
        }
    }
}

/// `fork`, with the handled signals blocked across it until the child has
/// put their default handling back: a SIGTERM meant for the new child must
/// not run the parent's handler in it, which would write to the parent's
/// wake-up pair. The parent unblocks them at once; the child, in
/// [`serve_in_child`].
fn fork_with_signals_blocked(signals: &SigSet) -> nix::Result<ForkResult> {
    let _ = signals.thread_block();
    // SAFETY: this process is single-threaded (see the module comment), so
    // the child may do anything the parent could.
    let forked = unsafe { fork() };
    if !matches!(forked, Ok(ForkResult::Child)) {
        let _ = signals.thread_unblock();
    }
    forked
}

/// Empties the wake-up pair: its bytes only woke the loop; what they were
/// for (children to reap, a stop) the loop finds out for itself.
fn drain(wake_rx: &UnixStream) {
    let mut bytes = [0u8; 64];
    loop {
        match (&*wake_rx).read(&mut bytes) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return, // WouldBlock: all read
        }
    }
}

/// The child: back to default signal handling, the parent's descriptors
/// closed, the client served with the blocking handler, then `_exit`.
fn serve_in_child(
    stream: TcpStream,
    peer: SocketAddr,
    max_line: usize,
    listener: &TcpListener,
    wake_rx: &UnixStream,
    wake_tx: &UnixStream,
    signals: &SigSet,
) -> ! {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for signal in HANDLED {
        // SAFETY: sigaction's caller guarantees any handler it installs may
        // run at any point: SIG_DFL installs none.
        let _ = unsafe { sigaction(signal, &default) };
    }
    // Blocked by the parent across the fork; the defaults are back now.
    let _ = signals.thread_unblock();
    for fd in [
        listener.as_raw_fd(),
        wake_rx.as_raw_fd(),
        wake_tx.as_raw_fd(),
    ] {
        close(fd);
    }
    // On the BSDs and macOS an accepted socket inherits the listener's
    // O_NONBLOCK; the handler blocks.
    if stream.set_nonblocking(false).is_ok() {
        crate::handle(stream, peer, max_line);
    }
    // SAFETY: _exit has no preconditions. Ending without unwinding or exit
    // handlers is the point: nothing of the parent's runs a second time.
    unsafe { libc::_exit(0) }
}

/// Closes a descriptor this child inherited and will never use. The
/// parent's objects that own them are never dropped here (`_exit` ends the
/// child), so nothing closes them twice.
fn close(fd: RawFd) {
    // SAFETY: `fd` is open (inherited from the parent) and nothing in this
    // process uses it again.
    unsafe {
        libc::close(fd);
    }
}

/// Waits for every child that has exited, without blocking.
fn reap(children: &mut HashSet<Pid>) {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(status) => {
                if let Some(pid) = status.pid() {
                    children.remove(&pid);
                    match status {
                        WaitStatus::Exited(_, 0) => debug!("process {pid} exited"),
                        other => warn!("process {pid} ended: {other:?}"),
                    }
                }
            }
            Err(Errno::EINTR) => {}
            Err(e) => {
                warn!("waitpid: {e}");
                return;
            }
        }
    }
}

/// SIGTERM or SIGINT: pass SIGTERM on to every child and wait for them
/// (at most a few seconds).
fn stop_children(mut children: HashSet<Pid>) {
    info!("stopping: ending {} children", children.len());
    for &pid in &children {
        let _ = kill(pid, Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !children.is_empty() && Instant::now() < deadline {
        reap(&mut children);
        std::thread::sleep(Duration::from_millis(10));
    }
    if !children.is_empty() {
        warn!("{} children did not end", children.len());
    }
}

/// Ends the parent by `signal` itself, as every other server ends: the
/// signal's default action, so that whoever started the server (a shell,
/// a service manager) sees "killed by SIGTERM" from every model alike
/// (docs/protocol.md). The handler is taken down first, then the signal
/// raised again.
fn die_by(signal: Signal) -> ! {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: sigaction's caller guarantees any handler it installs may
    // run at any point: SIG_DFL installs none.
    let _ = unsafe { sigaction(signal, &default) };
    let _ = nix::sys::signal::raise(signal);
    // Not reached: the default action of SIGTERM and SIGINT ends the process.
    std::process::exit(128 + signal as i32)
}
