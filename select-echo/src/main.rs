//! I/O multiplexing with `select(2)`, and with `poll(2)`: the echo server of
//! article 000 and article 001 §4, one thread serving many connections.
//!
//! The process now blocks in one place only, `select` (or `poll`), which
//! waits for *any* of its sockets to have data (or a client to accept) or
//! room for output. Waiting for data is the kernel's job again, for all
//! sockets at once; copying it (the second phase) still happens in `read`,
//! which no longer waits because `select` said it would not have to.
//!
//! Two loops, one per call, each in its own file so that each reads alone:
//!
//! - `select.rs`, the article's: `rlist` (listener and connections to
//!   read), `wlist` (connections owed output), `wdata` (what each is owed),
//!   and a 0.5 s timeout. `select` overwrites the sets it is given with the
//!   ready ones, so each turn hands it copies of kept ("master") sets, the C
//!   idiom, rather than rebuilding them by walking every connection. An
//!   `fd_set` is a bitmap of FD_SETSIZE (1024 on Linux) bits, and a
//!   descriptor at or above that cannot be put in one without writing past
//!   its end. Python raises `ValueError` there; C corrupts memory. This
//!   server never tries: such a client is told `ERR server full`.
//! - `poll.rs` (`--poll`), the step between select and epoll that 001 §7
//!   describes: an array of `pollfd` entries instead of bitmaps, so no
//!   FD_SETSIZE, but still the whole array copied in and checked on every
//!   call.
//!
//! What both share, a connection and the `recv` and `send` on a ready socket,
//! is in `conn.rs`; the command line is in `cli.rs`.
//!
//! ```text
//! cargo run -p select-echo                                     # terminal 1
//! cargo run -p shared --bin client -- --addr 127.0.0.1:8093    # terminal 2
//! cargo run -p select-echo -- --poll                           # or on poll(2)
//! ```

use std::process::ExitCode;

#[cfg(unix)]
mod cli;
#[cfg(unix)]
mod conn;
#[cfg(unix)]
mod poll;
#[cfg(unix)]
mod select;

#[cfg(unix)]
use cli::Args;

#[cfg(not(unix))]
fn main() -> ExitCode {
    eprintln!("error: select-echo needs select(2) and poll(2) (Linux, macOS, the BSDs)");
    ExitCode::FAILURE
}

#[cfg(unix)]
fn main() -> ExitCode {
    shared::cli::init_logging();
    let args: Args = shared::cli::parse_args_with(
        &[("addr", "127.0.0.1:8093")],
        cli::max_conns_per_loop,
        |_, _| Ok(()),
    );
    let run = if args.poll { poll::run } else { select::run };
    shared::cli::exit_with(run(&args))
}
