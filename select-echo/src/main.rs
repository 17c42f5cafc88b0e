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
//! is in `conn.rs`.
//!
//! ```text
//! cargo run -p select-echo                                     # terminal 1
//! cargo run -p shared --bin client -- --addr 127.0.0.1:8093    # terminal 2
//! cargo run -p select-echo -- --poll                           # or on poll(2)
//! ```

use std::process::ExitCode;

use clap::Parser;
use shared::EchoArgs;

#[cfg(unix)]
mod conn;
#[cfg(unix)]
mod poll;
#[cfg(unix)]
mod select;

#[derive(Parser, Debug)]
#[command(
    about = "Echo server multiplexing its sockets with select(2), or poll(2) (article 001 §4)"
)]
struct Args {
    #[command(flatten)]
    echo: EchoArgs,

    /// Wait in poll(2) instead of select(2): no FD_SETSIZE limit, the same
    /// loop otherwise
    #[arg(long)]
    poll: bool,

    /// Log, each turn, how many sockets were watched and how many came back
    /// ready (the article prints `rl` and `wl`)
    #[arg(long)]
    trace_sets: bool,
}

// `--max-conns` defaults: with select, below FD_SETSIZE (1024), leaving room
// for stdin/stdout/stderr, the listener and a few spare descriptors; with
// poll, which has no such wall, the other servers' default.
#[cfg(unix)]
const SELECT_MAX_CONNS: &str = "1000";
#[cfg(unix)]
const POLL_MAX_CONNS: &str = "10000";

#[cfg(not(unix))]
fn main() -> ExitCode {
    eprintln!("error: select-echo needs select(2) and poll(2) (Linux, macOS, the BSDs)");
    ExitCode::FAILURE
}

#[cfg(unix)]
fn main() -> ExitCode {
    use clap::builder::ArgPredicate;
    shared::cli::init_logging();
    let args: Args = shared::cli::parse_args_with(
        &[("addr", "127.0.0.1:8093")],
        |command| {
            command.mut_arg("max_conns", |arg| {
                arg.default_value(SELECT_MAX_CONNS)
                    .default_value_if(
                        "poll",
                        ArgPredicate::Equals("true".into()),
                        Some(POLL_MAX_CONNS),
                    )
                    .help(
                        "Connections served at once; one more is told `ERR server full` and closed \
                     [default: 1000 with select, 10000 with --poll]",
                    )
                    .hide_default_value(true)
            })
        },
        |_, _| Ok(()),
    );
    let run = if args.poll { poll::run } else { select::run };
    shared::cli::exit_with(run(&args))
}
