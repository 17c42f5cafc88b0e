//! Coroutines, gevent's model: the echo server written like blocking-echo's
//! thread per connection (read, answer, write, in a plain loop), but each
//! connection is a task, and every task runs on one thread.
//!
//! Article 002 opens with gevent: one thread, many tasks, and a switch
//! whenever a task would block on I/O. `monkey.patch_all()` swaps the socket
//! module for one whose `recv` does not block the thread: when no data is
//! there, it tells the hub (gevent's event loop) what it waits for and
//! switches to another greenlet; the hub switches back once the socket is
//! ready. Here the same three parts are explicit:
//!
//! - the patched `recv` is `read_with`: try the read; if it would block,
//!   register interest with the reactor and yield (`.await`);
//! - the greenlet switch is the executor (`LocalExecutor`) running another
//!   task;
//! - the hub is the reactor's wait: `async-io` over the `polling` crate,
//!   epoll here, the same loop selectors-echo writes out by hand.
//!
//! So the process still blocks in one place only, the reactor's wait for
//! readiness, exactly as selectors-echo does; what changed is how the code
//! reads. Waiting for data is the reactor's job; copying it (the read) never
//! waits, because a task is resumed only once its socket is ready.
//!
//! An idle task holds no read buffer: it awaits readiness, then reads into
//! the thread's scratch buffer without holding it across an `.await`, and
//! keeps only an unfinished line, if any. Replies are built in the scratch
//! buffer too and written at once; only what the socket does not take is
//! copied into the task, which awaits writability until it is gone.
//!
//! ```text
//! cargo run -p coroutine-echo                                  # terminal 1
//! cargo run -p shared --bin client -- --addr 127.0.0.1:8096    # terminal 2
//! ```

use std::cell::{Cell, RefCell};
use std::io::ErrorKind::{Interrupted, WouldBlock};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::rc::Rc;

use anyhow::Context;
use async_executor::LocalExecutor;
use async_io::{Async, Timer};
use clap::Parser;
use log::{debug, info};
use shared::echo::SCRATCH_READ;
use shared::limits::Room;
use shared::net::{ACCEPT_BACKOFF, AcceptError, ShortageLog, classify_accept_error};
use shared::{EchoArgs, Outbox, Scratch, answer_received};

#[derive(Parser, Debug)]
#[command(
    about = "Echo server on coroutines: a task per connection, one thread (article 002, gevent)"
)]
struct Args {
    #[command(flatten)]
    echo: EchoArgs,
}

fn main() -> ExitCode {
    shared::cli::init_logging();
    let args: Args = shared::cli::parse_args(&[("addr", "127.0.0.1:8096")]);
    shared::cli::exit_with(run(&args))
}

fn run(args: &Args) -> anyhow::Result<()> {
    // `Async::new` registers the listener with the reactor, which it
    // creates on first use (the poller, and async-io's helper thread).
    let listener = Async::new(shared::net::listen_nonblocking(&args.echo.server)?)
        .context("cannot register the listener with the reactor")?;
    // gevent's tasks all run on one thread: a local executor, driven by
    // `block_on` on this thread, which also waits in the reactor whenever
    // no task can run. The accept task holds it too, to spawn a task per
    // client: hence the `Rc`.
    let ex = Rc::new(LocalExecutor::new());
    let room = shared::limits::descriptor_room(args.echo.server.max_conns, "--max-conns");
    shared::net::announce(listener.get_ref())?;
    // The accept loop is a task like any connection's, not `run`'s own
    // future: `run` polls its own future only when no task is ready or
    // after 200 task runs, so two clients that never pause would keep a
    // newcomer waiting for seconds. As a task, the listener's wake-up
    // joins the executor's queue (first in, first out) beside the
    // connections', and is served in the same round as every other socket
    // the reactor found ready. `run` ends when this task does, with its
    // error: the server's only way out.
    let server = ex.spawn(accept_loop(
        Rc::clone(&ex),
        listener,
        room,
        args.echo.max_line,
    ));
    async_io::block_on(ex.run(server))
}

/// The accepting task: a task per client, as gevent's `StreamServer`
/// spawns a greenlet per connection.
async fn accept_loop(
    ex: Rc<LocalExecutor<'static>>,
    listener: Async<TcpListener>,
    room: Room,
    max_line: usize,
) -> anyhow::Result<()> {
    let live = Rc::new(Cell::new(0usize));
    let mut shortage = ShortageLog::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => match classify_accept_error(&e) {
                AcceptError::WouldBlock => continue,
                AcceptError::Skip => {
                    debug!("accept: {e}");
                    continue;
                }
                // Out of descriptors: the client stays queued and the
                // listener ready, so trying again at once would spin.
                // Sleeping is awaiting a timer: the other tasks go on.
                AcceptError::OutOfResources => {
                    shortage.pausing(&e);
                    Timer::after(ACCEPT_BACKOFF).await;
                    continue;
                }
                AcceptError::Fatal => return Err(e).context("accept failed"),
            },
        };
        if live.get() >= room.conns {
            shortage.refusing(&room.limit);
            shared::net::refuse(stream.get_ref());
            continue;
        }
        shortage.clear();
        info!("{peer} connected");
        let slot = LiveSlot::take(&live);
        ex.spawn(async move {
            let _slot = slot;
            match handle(stream, peer, max_line).await {
                Ok(()) => info!("{peer} closed"),
                // Resets and broken pipes are the client's business.
                Err(e) => debug!("{peer} dropped: {e}"),
            }
        })
        .detach();
    }
}

/// One client, the article's handler, written as blocking-echo's `handle`
/// is: read, answer, write, until the client leaves or sends an over-long
/// line. Each `.await` is where gevent would switch greenlets.
async fn handle(stream: Async<TcpStream>, peer: SocketAddr, max_line: usize) -> io::Result<()> {
    // All the task keeps between reads: the unfinished line, and what the
    // socket did not take (given back once written).
    let mut partial = Vec::new();
    let mut owed = Outbox::spill();
    let mut turn = Turn::new(peer);
    loop {
        // gevent's patched `recv`: the closure tries the read; if it fails
        // with WouldBlock, `read_with` awaits the reactor's word that the
        // socket is readable (the task yields here) and calls it again.
        let end = stream
            .read_with(|socket| {
                turn.yield_if_spent()?;
                // The thread's buffers, borrowed only until the closure
                // returns, never across an `.await`.
                SCRATCH.with_borrow_mut(|scratch| {
                    let n = match (&*socket).read(&mut scratch.input) {
                        Ok(n) => n,
                        // No data yet: WouldBlock makes `read_with` yield
                        // until the socket is readable. A signal that cut
                        // the call short is treated the same.
                        Err(e) if matches!(e.kind(), WouldBlock | Interrupted) => {
                            return Err(WouldBlock.into());
                        }
                        Err(e) => return Err(e),
                    };
                    turn.took(n);
                    // Replies built in the thread's buffer and written at
                    // once; only what the socket does not take is copied
                    // into the task.
                    scratch.output.clear();
                    let read = &scratch.input[..n];
                    let end =
                        answer_received(&mut partial, read, max_line, b"", &mut scratch.output);
                    let sent = send(socket, &scratch.output)?;
                    if sent < scratch.output.len() {
                        owed.buf_mut().extend_from_slice(&scratch.output[sent..]);
                    }
                    Ok(end)
                })
            })
            .await?;
        // What the socket did not take at once: the task awaits room for
        // it (it yields here), as a blocking `sendall` would wait, so a
        // client that does not read holds up only its own task (and no
        // more than one read's replies).
        while !owed.is_empty() {
            stream.writable().await?;
            let sent = send(stream.get_ref(), owed.pending())?;
            owed.consume(sent);
        }
        if end {
            debug!("{peer}: end of input");
            shared::net::close_gracefully(stream.get_ref());
            return Ok(());
        }
    }
}

/// gevent's patched `send` without the wait: writes as much of `bytes` as
/// the kernel takes now and returns how much; the caller keeps the rest,
/// and awaits writability for it.
fn send(mut socket: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < bytes.len() {
        match socket.write(&bytes[sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            // The send buffer is full: `handle` awaits writability for
            // the rest.
            Err(e) if e.kind() == WouldBlock => break,
            Err(e) if e.kind() == Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

/// Bytes a task reads (16 full reads) before it lets the others go first,
/// however often it waited meanwhile. Counting only reads that found data
/// at once would be closer to "a client that never pauses", but under plain
/// load a client answers before its task reads again, so that count would
/// cost a reactor turn every few requests; one per MiB costs nothing.
const BYTES_PER_TURN: usize = 16 * SCRATCH_READ;

/// A task's fair share of the thread. A task switches only where it would
/// block, and one whose client pipelines without pause never would: it
/// would hold the thread, and every other client (the accept too) would
/// wait. gevent has the same flaw. So after [`BYTES_PER_TURN`] of input
/// the read says it would block, and the task waits for the reactor to say
/// once more that its socket is readable; the reactor says so for every
/// other ready socket in the same turn, and their tasks run in that turn
/// too (in no set order).
struct Turn {
    peer: SocketAddr,
    /// Bytes read since this task last let the others go first.
    taken: usize,
}

impl Turn {
    fn new(peer: SocketAddr) -> Turn {
        Turn { peer, taken: 0 }
    }

    /// `Err(WouldBlock)`, once, when the share is spent: `read_with` then
    /// yields as if no data had come.
    fn yield_if_spent(&mut self) -> io::Result<()> {
        if self.taken < BYTES_PER_TURN {
            return Ok(());
        }
        self.taken = 0;
        let n = CUT_SHORT.get() + 1;
        CUT_SHORT.set(n);
        debug!(
            "{} read {} KiB this turn; the rest after the others ({n} cut short so far)",
            self.peer,
            BYTES_PER_TURN >> 10
        );
        Err(WouldBlock.into())
    }

    fn took(&mut self, n: usize) {
        self.taken += n;
    }
}

thread_local! {
    /// Times a task was cut short by [`BYTES_PER_TURN`], for the log.
    static CUT_SHORT: Cell<u64> = const { Cell::new(0) };
}

thread_local! {
    /// The thread's buffers, shared by every task on it: a task borrows
    /// them only between two `.await`s, never across one.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::new());
}

/// Counts a live connection until dropped.
struct LiveSlot(Rc<Cell<usize>>);

impl LiveSlot {
    fn take(live: &Rc<Cell<usize>>) -> LiveSlot {
        live.set(live.get() + 1);
        LiveSlot(Rc::clone(live))
    }
}

impl Drop for LiveSlot {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}
