//! Blocking I/O: the echo server of article 001 §2, in four shapes.
//!
//! Every call blocks until it is done: `accept` until a client connects,
//! `read` through both phases of input (waiting for data to arrive, then
//! copying it from the kernel), `write` until the kernel has taken every byte.
//! The thread that makes the call can do nothing else meanwhile, so:
//!
//! - `--mode serial` is the article's `loop_forever`: accept, serve that one
//!   client until it leaves, accept the next. A second client waits.
//! - `--mode thread` gives each connection its own thread, the article's
//!   first fix. Simple and fast for a few clients; each costs a thread, so
//!   `--max-conns` caps them.
//! - `--mode pool` is its "improved" fix: `--workers` threads fed by a queue
//!   of `--queue` accepted connections. When every worker is busy and the
//!   queue is full, a new client is told `ERR server full` and closed. It
//!   lives in `pool.rs`.
//! - `--mode fork` (Unix) gives each connection its own process, the
//!   multiprocess server article 004 recalls; it lives in `fork.rs`, with
//!   why forking is sound here and how children are reaped.
//!
//! The article answers one `recv(1024)` with `Server:Good Bye.` and hangs
//! up. This port speaks the workspace's echo protocol instead: a reply per
//! line, framed by `\n`, until the client leaves.
//!
//! ```text
//! cargo run -p blocking-echo -- --mode thread                # terminal 1
//! cargo run -p shared --bin client -- --addr 127.0.0.1:5464  # terminal 2
//! ```

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;

use log::{debug, info, warn};
use shared::echo::ERR_LINE_TOO_LONG;
use shared::limits::Room;
use shared::net::{ACCEPT_BACKOFF, AcceptError, ShortageLog, classify_accept_error};
use shared::{LineBuffer, answer_lines, answer_rest};

mod ceiling;
mod cli;
#[cfg(unix)]
mod fork;
mod pool;

use cli::{Args, Mode};

fn main() -> ExitCode {
    shared::cli::init_logging();
    let args: Args =
        shared::cli::parse_args_with(&[("addr", "127.0.0.1:5464")], |command| command, cli::check);
    shared::cli::exit_with(run(args))
}

fn run(args: Args) -> anyhow::Result<()> {
    #[cfg(not(unix))]
    if matches!(args.mode, Mode::Fork) {
        anyhow::bail!("--mode fork needs fork(2) (Linux, macOS, the BSDs)");
    }
    let listener = shared::net::listen(&args.echo.server)?;
    let max_line = args.echo.max_line;
    info!("serving in {} mode", args.mode);
    let max_conns = args.echo.server.max_conns;
    match args.mode {
        Mode::Serial => {
            shared::limits::descriptor_room(1, "serial mode");
            loop_forever(listener, max_line)
        }
        Mode::Thread => {
            let room = shared::limits::descriptor_room(max_conns, "--max-conns");
            thread_per_connection(listener, max_line, room)
        }
        Mode::Pool => {
            // Held at once: one client per worker, and the queue's; fewer
            // if the descriptor limit allows fewer.
            let workers = usize::from(args.workers);
            let room =
                shared::limits::descriptor_room(workers + args.queue, "--workers plus --queue");
            pool::run(listener, max_line, workers, args.queue, room)
        }
        #[cfg(unix)]
        Mode::Fork => fork::run(listener, max_line, args.echo.server.max_conns),
        #[cfg(not(unix))]
        Mode::Fork => unreachable!("refused above"),
    }
}

/// The article's `loop_forever`: while one client is served, nobody else is.
fn loop_forever(listener: TcpListener, max_line: usize) -> anyhow::Result<()> {
    shared::net::announce(&listener)?;
    let mut shortage = ShortageLog::default();
    loop {
        if let Some((stream, peer)) = accept(&listener, &mut shortage)? {
            admitted(peer, &mut shortage);
            handle(stream, peer, max_line);
        }
    }
}

/// Stack reserved for each connection thread. The handler's buffers are on
/// the heap, so a few pages would do; std's default is 2 MiB of address
/// space a thread, which a limit on address space (`ulimit -v`) feels.
const THREAD_STACK: usize = 256 * 1024;

/// A thread per connection; the accepting thread only accepts.
///
/// Threads run out long before descriptors do (about 16 000 on a default
/// Linux, at `vm.max_map_count`: see `ceiling.rs`), so the cap is the lower
/// of `--max-conns` and that ceiling, and a client past it is refused like
/// one past `--max-conns`. So is one whose thread cannot be started after
/// all (another process took the last task): the server answers it and
/// goes on, where an unchecked `spawn` would close it unanswered, or worse.
fn thread_per_connection(listener: TcpListener, max_line: usize, room: Room) -> anyhow::Result<()> {
    let arenas = ceiling::bound_malloc_arenas();
    let ceiling = ceiling::thread_ceiling(THREAD_STACK, max_line, arenas);
    let space = ceiling::AddressSpace::limited(THREAD_STACK, max_line);
    let (cap, limit) = match &ceiling {
        Some(c) if c.threads < room.conns => {
            warn!(
                "{} is past the thread ceiling: at most {c}; raise that limit to serve more",
                room.limit
            );
            (c.threads, format!("{c}, the thread ceiling"))
        }
        _ => (room.conns, room.limit),
    };
    if let Some(c) = &ceiling {
        info!("thread ceiling: {c}");
    }
    let live = Arc::new(AtomicUsize::new(0));
    shared::net::announce(&listener)?;
    let mut shortage = ShortageLog::default();
    loop {
        let Some((stream, peer)) = accept(&listener, &mut shortage)? else {
            continue;
        };
        // Only this thread increments, so the check cannot race past the cap.
        if live.load(Ordering::Acquire) >= cap {
            shortage.refusing(&limit);
            shared::net::refuse(&stream);
            continue;
        }
        if let Some(Err(left)) = space.map(|s| s.room_for_one()) {
            shortage.refusing(&left);
            shared::net::refuse(&stream);
            continue;
        }
        // The thread first, then the socket, handed over once the thread
        // exists: if it cannot be started, the socket is still here to be
        // answered.
        let slot = LiveSlot::take(&live);
        let (hand_over, taken) = mpsc::sync_channel::<TcpStream>(1);
        let spawned = thread::Builder::new()
            .name(format!("conn {peer}"))
            .stack_size(THREAD_STACK)
            .spawn(move || {
                let _slot = slot;
                if let Ok(stream) = taken.recv() {
                    handle(stream, peer, max_line);
                }
            });
        match spawned {
            Ok(_) => {
                admitted(peer, &mut shortage);
                let _ = hand_over.send(stream);
            }
            Err(e) => {
                shortage.refusing(&format_args!("cannot start a thread ({e})"));
                shared::net::refuse(&stream);
            }
        }
    }
}

/// Counts a live connection until dropped.
struct LiveSlot(Arc<AtomicUsize>);

impl LiveSlot {
    pub(crate) fn take(live: &Arc<AtomicUsize>) -> LiveSlot {
        live.fetch_add(1, Ordering::AcqRel);
        LiveSlot(Arc::clone(live))
    }
}

impl Drop for LiveSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Accepts one connection. Per-connection failures return `None`; running
/// out of descriptors sleeps [`ACCEPT_BACKOFF`] first, so a server at its
/// limit waits for a descriptor to free instead of spinning.
fn accept(
    listener: &TcpListener,
    shortage: &mut ShortageLog,
) -> anyhow::Result<Option<(TcpStream, SocketAddr)>> {
    match listener.accept() {
        Ok((stream, peer)) => Ok(Some((stream, peer))),
        Err(e) => match classify_accept_error(&e) {
            AcceptError::WouldBlock | AcceptError::Skip => {
                debug!("accept: {e}");
                Ok(None)
            }
            AcceptError::OutOfResources => {
                shortage.pausing(&e);
                thread::sleep(ACCEPT_BACKOFF);
                Ok(None)
            }
            AcceptError::Fatal => Err(anyhow::Error::new(e).context("accept failed")),
        },
    }
}

/// Logs a client taken in to be served (a refused one is not: it would
/// never be logged as closed), and ends a run of refusals.
fn admitted(peer: SocketAddr, shortage: &mut ShortageLog) {
    shortage.clear();
    info!("{peer} connected");
}

/// The article's `handle(conn)`: serve one client until it leaves.
fn handle(mut stream: TcpStream, peer: SocketAddr, max_line: usize) {
    match echo(&mut stream, max_line) {
        Ok(()) => info!("{peer} closed"),
        // Resets and broken pipes are the client's business: note and move on.
        Err(e) => debug!("{peer} dropped: {e}"),
    }
}

/// Reads lines and writes their replies until end of stream or an
/// over-long line. Each reply batch is one blocking `write_all`: if the
/// client stops reading, this thread waits there and reads nothing more, so
/// a client that never reads costs a blocked thread, not memory.
fn echo(stream: &mut TcpStream, max_line: usize) -> io::Result<()> {
    let mut input = LineBuffer::new(max_line);
    let mut replies = Vec::new();
    loop {
        // The article's `conn.recv(1024)`: the thread sleeps here until
        // data arrives (the first phase), then the kernel copies it into
        // the buffer (the second).
        let n = match stream.read(input.spare()) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        input.filled(n);
        let at_end = n == 0;
        room_for_replies(&mut replies, &input);
        let verdict = if at_end {
            answer_rest(&mut input, b"", &mut replies)
        } else {
            answer_lines(&mut input, b"", &mut replies)
        };
        stream.write_all(&replies)?;
        replies.clear();
        if at_end || verdict.is_err() {
            shared::net::close_gracefully(stream);
            return Ok(());
        }
    }
}

/// Makes `replies`, empty between passes, big enough for all this pass can
/// owe: a reply as long as every byte buffered, and an `ERR` line. It doubles as a
/// `Vec` does, but never past the input's storage and that line, and lets
/// go of the old block before it takes the new one. So a connection's heap
/// has the worst case the thread ceiling budgets
/// (`ceiling::connection_heap`), where a `Vec` left to grow itself could
/// double past the longest line's reply.
#[inline]
fn room_for_replies(replies: &mut Vec<u8>, input: &LineBuffer) {
    let owed_at_most = input.buffered() + ERR_LINE_TOO_LONG.len();
    if replies.capacity() < owed_at_most {
        let most = input.capacity() + ERR_LINE_TOO_LONG.len();
        let grown = (2 * replies.capacity()).max(owed_at_most).min(most);
        *replies = Vec::new();
        replies.reserve_exact(grown);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever the lines, the reply buffer is grown only by
    /// `room_for_replies`, never by the answering that follows it, and
    /// never past the input's largest storage and an `ERR` line: the
    /// bound `ceiling::connection_heap` budgets.
    #[test]
    fn replies_stay_within_the_input_storage_and_an_err_line() {
        let max_line = 64 * 1024;
        let most = LineBuffer::most_storage(max_line) + ERR_LINE_TOO_LONG.len();
        let line = |n: usize, end: &[u8]| [vec![b'q'; n], end.to_vec()].concat();
        // Short lines, a longest partial line, two long lines in one read,
        // a partial line grown again, and one too long.
        let reads = [
            line(10, b"\n"),
            line(65_000, b""),
            [line(500, b"\n"), line(65_000, b"\n")].concat(),
            line(max_line, b""),
            line(0, b"\n"),
            line(max_line + 1, b""),
        ];
        let mut input = LineBuffer::new(max_line);
        let mut replies = Vec::new();
        let mut largest = 0;
        for (at, read) in reads.iter().enumerate() {
            let mut read = &read[..];
            while !read.is_empty() {
                let spare = input.spare();
                let n = spare.len().min(read.len());
                spare[..n].copy_from_slice(&read[..n]);
                input.filled(n);
                read = &read[n..];
                room_for_replies(&mut replies, &input);
                let room = replies.capacity();
                let verdict = answer_lines(&mut input, b"", &mut replies);
                assert_eq!(replies.capacity(), room, "read {at}: grown while answering");
                assert!(room <= most, "read {at}: {room} bytes");
                largest = largest.max(room);
                if verdict.is_err() {
                    assert_eq!(at, reads.len() - 1);
                    assert!(replies.ends_with(ERR_LINE_TOO_LONG));
                    // Room was made for the two long lines together.
                    assert!(largest >= 65_000 + 500 + 2, "{largest}");
                    return;
                }
                replies.clear();
            }
        }
        panic!("the line too long was not refused");
    }
}
