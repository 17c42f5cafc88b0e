//! The articles' interactive client: type a line, see the server's reply.
//!
//! Articles 000 and 001 §4 loop on `input('>>: ')`, skip empty input, `send`
//! the text and print one `recv(1024)`. This port frames by line instead: it
//! sends the text plus `\n` and prints the whole reply line, however many
//! reads it takes.
//!
//! ```text
//! cargo run -p select-echo                                   # terminal 1
//! cargo run -p shared --bin client -- --addr 127.0.0.1:8093  # terminal 2, Ctrl-D quits
//! ```
//!
//! When stdin is not a terminal the prompt is left out and every line is sent
//! until end of input, so it works in scripts:
//! `printf 'a\nb\n' | cargo run -p shared --bin client -- --addr 127.0.0.1:8093`.

use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::bail;
use clap::Parser;
use shared::cli::ServerAddr;

/// Said when nothing listens where the client tried.
const HINT: &str = "this client's default, 127.0.0.1:8093, is select-echo's port; every server's port is in docs/protocol.md";

#[derive(Parser, Debug)]
#[command(
    about = "Send lines to an echo server and print its replies",
    long_about = "Send lines to an echo server and print its replies.\n\n\
        At a terminal: type a line at the `>>: ` prompt and press Enter to send it; \
        the reply is printed below. Blanks around the text are trimmed, and an \
        empty line is not sent. Ctrl-D (end of input) quits.\n\n\
        With piped input there is no prompt: every non-empty line is sent in turn, \
        each reply printed, until end of input."
)]
struct Args {
    /// Server address, IP:PORT or HOST:PORT (every address of a name is
    /// tried in turn, IPv4 first)
    #[arg(long, default_value = "127.0.0.1:8093", value_parser = shared::cli::server_addr)]
    addr: ServerAddr,
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
    let stdin = io::stdin();
    let interactive = stdin.is_terminal();
    let mut input = stdin.lock();
    let mut text = String::new();
    let mut reply = Vec::new();
    if interactive {
        // On stderr, so that stdout carries only the prompt and the replies.
        eprintln!(
            "connected to {}: type a line and press Enter (an empty line is not sent); Ctrl-D quits",
            args.addr
        );
    }
    loop {
        if interactive {
            print!(">>: ");
            io::stdout().flush()?;
        }
        text.clear();
        if input.read_line(&mut text)? == 0 {
            if interactive {
                println!();
            }
            return Ok(());
        }
        // Like the article's `input().strip()`: surrounding blanks go, and an
        // empty line is not sent (an empty send would wait for a reply forever).
        let msg = text.trim();
        if msg.is_empty() {
            continue;
        }
        to_server.write_all(format!("{msg}\n").as_bytes())?;
        reply.clear();
        if replies.read_until(b'\n', &mut reply)? == 0 {
            bail!("the server closed the connection");
        }
        let mut out = io::stdout().lock();
        out.write_all(&reply)?;
        out.flush()?;
        if reply.starts_with(b"ERR ") {
            bail!("the server refused the line and closed the connection");
        }
    }
}
