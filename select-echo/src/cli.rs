//! select-echo's command line: which of the two calls waits, and its
//! `--max-conns` default, which depends on that call.

use clap::Parser;
use clap::builder::ArgPredicate;
use shared::EchoArgs;

#[derive(Parser, Debug)]
#[command(
    about = "Echo server multiplexing its sockets with select(2), or poll(2) (article 001 §4)"
)]
pub struct Args {
    #[command(flatten)]
    pub echo: EchoArgs,

    /// Wait in poll(2) instead of select(2): no FD_SETSIZE limit, the same
    /// loop otherwise
    #[arg(long)]
    pub poll: bool,

    /// Log, each turn, how many sockets were watched and how many came back
    /// ready (the article prints `rl` and `wl`)
    #[arg(long)]
    pub trace_sets: bool,
}

// `--max-conns` defaults: with select, below FD_SETSIZE (1024), leaving room
// for stdin/stdout/stderr, the listener and a few spare descriptors; with
// poll, which has no such wall, the other servers' default.
const SELECT_MAX_CONNS: &str = "1000";
const POLL_MAX_CONNS: &str = "10000";

/// `--max-conns` with the default of the loop `--poll` picks, and a help
/// line that gives both.
pub fn max_conns_per_loop(command: clap::Command) -> clap::Command {
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
}
