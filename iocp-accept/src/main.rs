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
//! ```text
//! cargo run -p iocp-accept                                     # terminal 1
//! cargo run -p shared --bin client -- --addr 127.0.0.1:9090    # terminal 2
//! ```

use std::process::ExitCode;

use clap::Parser;
use shared::EchoArgs;

#[cfg(windows)]
mod iocp;
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
}

fn main() -> ExitCode {
    shared::cli::init_logging();
    let args: Args = shared::cli::parse_args(&[("addr", "127.0.0.1:9090")]);
    shared::cli::exit_with(run(args))
}

#[cfg(windows)]
fn run(args: Args) -> anyhow::Result<()> {
    iocp::run(args)
}

#[cfg(target_os = "linux")]
fn run(args: Args) -> anyhow::Result<()> {
    uring::run(args)
}

#[cfg(not(any(windows, target_os = "linux")))]
fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("iocp-accept needs IOCP (Windows) or io_uring (Linux 5.6 or later)")
}
