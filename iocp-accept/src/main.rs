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
//! 1. `uring.rs`: IOCP's shape on Linux (`--single-shot`), one operation,
//!    one completion, the article's four steps and nothing more;
//! 2. `multishot.rs`, the default: what a production loop adds on top of it
//!    (operations armed once that complete many times, receive buffers
//!    that belong to the loop: `bufring.rs`), as liburing pairs a minimal
//!    echo example with a full one;
//! 3. `iocp.rs`: the article's own platform, Windows.
//!
//! `ring.rs` sets the ring up for both Linux loops, and `submissions.rs`
//! queues their entries.
//!
//! ```text
//! cargo run -p iocp-accept                                     # terminal 1
//! cargo run -p shared --bin client -- --addr 127.0.0.1:9090    # terminal 2
//! ```

use std::process::ExitCode;

use clap::Parser;
use shared::EchoArgs;

#[cfg(target_os = "linux")]
mod bufring;
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

#[derive(Parser, Debug)]
#[command(
    about = "Echo server on completion-based I/O: IOCP on Windows, io_uring on Linux \
                   (article 004)"
)]
struct Args {
    #[command(flatten)]
    echo: EchoArgs,

    /// Linux only: one operation per completion, a buffer per pending
    /// receive (IOCP's shape), instead of multishot accept and receive from
    /// a ring of provided buffers; the default on kernels before 6.0
    #[arg(long)]
    single_shot: bool,

    /// Linux only, multishot: provided receive buffers of 4 KiB in the ring,
    /// a power of two up to 32768 (default: one for every eight connections
    /// --max-conns allows, from 256 to 4096); all are allocated and touched
    /// at start
    #[arg(long, value_parser = buffers, conflicts_with = "single_shot")]
    buffers: Option<u16>,

    /// Linux only: submission queue entries, a power of two up to 4096
    /// (default: --max-conns rounded up to one, from 16 to 1024). A batch
    /// that needs more is submitted in parts. The completion queue holds
    /// one completion per connection, at least twice this and at most 32768
    #[arg(long, value_parser = ring_entries)]
    ring_entries: Option<u32>,
}

/// `--ring-entries`: the kernel wants a power of two.
fn ring_entries(s: &str) -> Result<u32, String> {
    power_of_two(s, 4096)
}

/// `--buffers`: the kernel wants a power of two, at most 32768.
fn buffers(s: &str) -> Result<u16, String> {
    power_of_two(s, 32768).map(|n| n as u16)
}

/// A power of two from 1 to `max`, worded as every numeric flag is.
fn power_of_two(s: &str, max: u32) -> Result<u32, String> {
    shared::cli::in_range(1u32, max)(s)
        .ok()
        .filter(|n| n.is_power_of_two())
        .ok_or_else(|| format!("must be a whole number, a power of two from 1 to {max}"))
}

/// Refuses the Linux-only flags where the loop is IOCP's.
fn check(_args: &Args, given: &shared::cli::Given) -> Result<(), String> {
    for flag in ["single_shot", "buffers", "ring_entries"] {
        if cfg!(not(target_os = "linux")) && given.has(flag) {
            let name = flag.replace('_', "-");
            return Err(format!("--{name} applies only on Linux (io_uring)"));
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    shared::cli::init_logging();
    let args: Args =
        shared::cli::parse_args_with(&[("addr", "127.0.0.1:9090")], |command| command, check);
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
