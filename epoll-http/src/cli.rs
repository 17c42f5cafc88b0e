//! epoll-http's command line: the trigger mode, TCP options and timeouts.

use std::time::Duration;

use clap::Parser;
use shared::ServerArgs;

#[derive(Parser, Debug)]
#[command(about = "HTTP \"Hello, world!\" server on epoll (article 003)")]
pub struct Args {
    #[command(flatten)]
    pub server: ServerArgs,

    /// Edge-triggered (EPOLLET) instead of level-triggered
    #[arg(long)]
    pub edge: bool,

    /// Set TCP_CORK while a batch of pipelined responses is written
    #[arg(long)]
    pub cork: bool,

    /// Set TCP_NODELAY on accepted connections
    #[arg(long)]
    pub nodelay: bool,

    /// Seconds a client has to send a whole request head (and body)
    #[arg(long, default_value = "10", value_parser = seconds)]
    pub header_timeout: Duration,

    /// Seconds a keep-alive connection may sit idle between requests
    #[arg(long, default_value = "60", value_parser = seconds)]
    pub idle_timeout: Duration,

    // The echo servers' `--max-line`, accepted only to say why it does not
    // apply here, instead of clap's guess at a similar flag.
    #[arg(long, hide = true, value_name = "N")]
    pub max_line: Option<String>,
}

/// A timeout: more than 0 seconds (0 would close every connection at its
/// first wait, before a response), at most a day.
fn seconds(s: &str) -> Result<Duration, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|secs| *secs > 0.0 && *secs <= 86_400.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| "must be a number of seconds, more than 0 and at most 86400".into())
}

/// Refuses the echo servers' `--max-line`, which has no meaning here.
#[cfg(target_os = "linux")]
pub fn check(_args: &Args, given: &shared::cli::Given) -> Result<(), String> {
    if given.has("max_line") {
        return Err(
            "epoll-http has no --max-line (that is the echo servers' line limit); \
             an HTTP request head may be 8 KiB and a body 1 MiB"
                .into(),
        );
    }
    Ok(())
}
