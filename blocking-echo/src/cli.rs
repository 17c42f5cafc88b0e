//! blocking-echo's command line: the mode, and the pool's size.

use clap::{Parser, ValueEnum};
use shared::EchoArgs;

#[derive(Parser, Debug)]
#[command(about = "Echo server on blocking sockets (articles 001 §2 and 004)")]
pub struct Args {
    #[command(flatten)]
    pub echo: EchoArgs,

    /// How connections are served
    #[arg(long, value_enum, default_value_t = Mode::Serial)]
    pub mode: Mode,

    /// Worker threads (pool mode only)
    #[arg(long, default_value_t = 4, value_parser = shared::cli::in_range(1u16, u16::MAX))]
    pub workers: u16,

    /// Accepted connections waiting for a worker (pool mode only); one more
    /// is told `ERR server full`. Pool mode's capacity is workers + queue,
    /// so it takes no --max-conns
    #[arg(long, default_value_t = 64, value_parser = shared::cli::in_range(0usize, 1_000_000))]
    pub queue: usize,
}

/// Refuses a flag the chosen mode would ignore: a user who asks for four
/// workers in serial mode has misread something, and should be told.
pub fn check(args: &Args, given: &shared::cli::Given) -> Result<(), String> {
    let applies = |flag: &str| match flag {
        "workers" | "queue" => matches!(args.mode, Mode::Pool),
        "max_conns" => matches!(args.mode, Mode::Thread | Mode::Fork),
        _ => true,
    };
    for flag in ["workers", "queue", "max_conns"] {
        if given.has(flag) && !applies(flag) {
            let name = flag.replace('_', "-");
            let only = match flag {
                "max_conns" => {
                    "--mode thread and --mode fork (serial serves one client; pool's capacity is --workers plus --queue)"
                }
                _ => "--mode pool",
            };
            return Err(format!(
                "--{name} does not apply to --mode {}: it is for {only}",
                args.mode
            ));
        }
    }
    Ok(())
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Mode {
    /// One client at a time, the article's loop
    Serial,
    /// A thread per connection
    Thread,
    /// A fixed pool of worker threads fed by a bounded queue
    Pool,
    /// A process per connection (Unix)
    Fork,
}

// The mode as the flag spells it, in messages and the log.
impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = self.to_possible_value().expect("no mode is skipped");
        f.write_str(value.get_name())
    }
}
