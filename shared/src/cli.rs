//! Command-line arguments every server shares, logging set-up, and the exit path.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;

// Arguments every server takes, flattened into each server's own `Args`.
// `--addr` has no default here because each server defaults to the port its
// article uses; `parse_args` fills it in. These are `//` comments, not doc
// comments: clap turns a flattened struct's doc comment into the `--help`
// text of whichever binary has none of its own.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// Address to listen on (port 0 picks a free port; use 0.0.0.0 to accept
    /// connections from other hosts)
    #[arg(long, value_name = "IP:PORT")]
    pub addr: SocketAddr,

    /// Connections served at once; one more is told `ERR server full` and closed
    #[arg(long, default_value_t = 10_000, value_parser = at_least_one)]
    pub max_conns: usize,

    /// Length of the kernel's queue of connections not yet accepted
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(i32).range(1..))]
    pub backlog: i32,
}

// `ServerArgs` plus the line limit of the echo protocol: what every echo
// server takes. (A `//` comment, for the reason given on `ServerArgs`.)
#[derive(clap::Args, Debug, Clone)]
pub struct EchoArgs {
    #[command(flatten)]
    pub server: ServerArgs,

    /// Longest accepted line in bytes, newline not counted; a longer one is
    /// answered `ERR line too long` and the connection closed
    #[arg(long, default_value_t = 64 * 1024, value_parser = at_least_one)]
    pub max_line: usize,
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// Parses the command line into `T`, with per-server defaults given as
/// `(argument id, value)` pairs, e.g. `[("addr", "127.0.0.1:8093")]`.
///
/// The defaults are set on the clap command itself, so `--help` shows them.
pub fn parse_args<T: Parser>(defaults: &[(&'static str, &'static str)]) -> T {
    parse_args_with(defaults, |command| command)
}

/// [`parse_args`], with `edit` applied to the clap command first: for a
/// server whose common flags behave differently, so that its `--help` says
/// what that server does (epoll-http refuses with `503`, not `ERR server
/// full`).
pub fn parse_args_with<T: Parser>(
    defaults: &[(&'static str, &'static str)],
    edit: impl FnOnce(clap::Command) -> clap::Command,
) -> T {
    let mut command = edit(T::command());
    for &(id, value) in defaults {
        command = command.mut_arg(id, |arg| arg.default_value(value).required(false));
    }
    let matches = command.get_matches();
    T::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Logs to stderr at `info` unless `RUST_LOG` says otherwise.
pub fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
}

/// Turns `main`'s result into the process's exit: one `error: …` line on
/// stderr and status 1 on failure.
pub fn exit_with(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
