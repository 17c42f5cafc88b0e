//! The articles' automatic client: sends `<pid> hello` again and again and
//! prints each reply.
//!
//! Article 001 §3 loops forever without a pause; article 002 sends `hello`
//! twenty times, a second apart. Run several at once against a server to see
//! it serve them side by side:
//!
//! ```text
//! cargo run -p nonblocking-echo                               # terminal 1
//! cargo run -p shared --bin hello-client -- --addr 127.0.0.1:8083 --count 5
//! ```

use std::io::{BufRead, BufReader, Write};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use anyhow::bail;
use clap::Parser;
use shared::cli::ServerAddr;

/// Said when nothing listens where the client tried.
const HINT: &str = "this client's default, 127.0.0.1:8083, is nonblocking-echo's port; every server's port is in docs/protocol.md";

#[derive(Parser, Debug)]
#[command(about = "Send `<pid> hello` repeatedly and print the replies")]
struct Args {
    /// Server address, IP:PORT or HOST:PORT (every address of a name is
    /// tried in turn, IPv4 first)
    #[arg(long, default_value = "127.0.0.1:8083", value_parser = shared::cli::server_addr)]
    addr: ServerAddr,
    /// How many times to send (0: until interrupted)
    #[arg(long, default_value_t = 20)]
    count: u64,
    /// Pause between sends, in milliseconds
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
}

fn main() -> ExitCode {
    shared::cli::exit_with(run(Args::parse()))
}

fn run(args: Args) -> anyhow::Result<()> {
    // The article's port for this client's server; a user who started
    // another server learns here how to reach it.
    let stream = shared::net::connect(&args.addr, HINT)?;
    let mut replies = BufReader::new(stream.try_clone()?);
    let mut to_server = stream;
    let line = format!("{} hello\n", std::process::id());
    let mut reply = String::new();
    let mut sent = 0;
    while args.count == 0 || sent < args.count {
        if sent > 0 && args.interval_ms > 0 {
            thread::sleep(Duration::from_millis(args.interval_ms));
        }
        to_server.write_all(line.as_bytes())?;
        sent += 1;
        reply.clear();
        if replies.read_line(&mut reply)? == 0 {
            bail!("the server closed the connection after {sent} lines");
        }
        print!("{reply}");
    }
    Ok(())
}
