//! Completion-based I/O, the Proactor: the IOCP example of article 004 on
//! Windows, and its idea carried to Linux with io_uring.
//!
//! The readiness servers (select, selectors, epoll) wait until a socket *can*
//! be read, then read it themselves. Here the program hands the whole
//! operation to the kernel ("accept a client", "receive into this buffer",
//! "send these bytes") and waits until it is *done*: neither phase of input
//! blocks the program. Waiting for data and copying it both happen in the
//! kernel, and the completion says how many bytes landed in the buffer.
//!
//! The article breaks that into four steps, and both platforms follow them
//! with the same names:
//!
//! 1. make a key and map it to a callback: each pending operation is stored
//!    in `callback_map`, and its key goes with the request;
//! 2. make the call: `post_accept`, `post_recv`, `post_send` (AcceptEx,
//!    WSARecv, WSASend on Windows; accept, recv, send entries on io_uring);
//! 3. poll for completions: `GetQueuedCompletionStatus` (1 s timeout) or
//!    `io_uring_enter`, which hand back the key of each finished operation;
//! 4. look the key up and call back: `on_accepted`, `on_received`,
//!    `on_sent`.
//!
//! The program, not the kernel, keeps each connection's progress, in
//! `callback_map` and the connection table: one thread, many flows.
//!
//! Read in this order:
//!
//! 0. `bin/iocp-article.rs` (Windows) or `bin/uring-article.rs` (Linux):
//!    the article's program in one file, the four steps and an echo, with
//!    no limits;
//! 1. `uring.rs`: IOCP's shape on Linux (`--single-shot`), one operation,
//!    one completion, the article's four steps and what a server needs
//!    around them (bounded memory, descriptor shortages, a full queue);
//! 2. `multishot.rs`, the default: what a production loop adds on top of it
//!    (operations armed once that complete many times, receive buffers
//!    that belong to the loop: `bufring.rs`), as liburing pairs a minimal
//!    echo example with a full one;
//! 3. `iocp.rs`: the article's own platform, Windows.
//!
//! `ring.rs` sets the ring up for both Linux loops, and `submissions.rs`
//! queues their entries; the command line is in `cli.rs`.
//!
//! ```text
//! cargo run -p iocp-accept                                     # terminal 1
//! cargo run -p shared --bin client -- --addr 127.0.0.1:9090    # terminal 2
//! ```

use std::process::ExitCode;

#[cfg(target_os = "linux")]
mod bufring;
mod cli;
#[cfg(windows)]
mod iocp;
#[cfg(target_os = "linux")]
mod multishot;
#[cfg(target_os = "linux")]
mod ring;
#[cfg(target_os = "linux")]
mod submissions;
#[cfg(target_os = "linux")]
mod uring;

use cli::Args;

fn main() -> ExitCode {
    shared::cli::init_logging();
    let args: Args =
        shared::cli::parse_args_with(&[("addr", "127.0.0.1:9090")], |command| command, cli::check);
    shared::cli::exit_with(run(args))
}

#[cfg(windows)]
fn run(args: Args) -> anyhow::Result<()> {
    iocp::run(args)
}

#[cfg(target_os = "linux")]
fn run(args: Args) -> anyhow::Result<()> {
    // The port first: a server that cannot listen says so in one line,
    // before anything about its ring.
    let listener = shared::net::listen(&args.echo.server)?;
    // The queues are sized from the connections the server will really
    // hold, which the descriptor limit may make fewer than --max-conns.
    let room = shared::limits::descriptor_room(args.echo.server.max_conns, "--max-conns");
    let entries = args
        .ring_entries
        .unwrap_or_else(|| ring::ring_entries(room.conns));
    let ring = ring::new_ring(entries, ring::completion_entries(room.conns, entries))?;
    if args.single_shot {
        return uring::run(&args, listener, ring, room);
    }
    if !ring::multishot_recv_works() {
        log::info!("this kernel has no multishot receive (Linux 6.0): single-shot operations");
        return uring::run(&args, listener, ring, room);
    }
    multishot::run(&args, listener, ring, room)
}

#[cfg(not(any(windows, target_os = "linux")))]
fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("iocp-accept needs IOCP (Windows) or io_uring (Linux 5.6 or later)")
}
