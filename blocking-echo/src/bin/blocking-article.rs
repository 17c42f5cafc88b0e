//! Blocking I/O in one file: the serial server of article 001 §2.
//!
//! Every call waits until it is done. `accept` sleeps until a client comes,
//! `read` sleeps until data arrives and then copies it (both phases of input
//! block), `write_all` sleeps until the kernel has taken every byte. While the
//! one thread sits in a call it can do nothing else, so one client is served
//! at a time and the next waits, connected but unanswered.
//!
//! Not hardened: the server, `src/main.rs`, adds what this file leaves out:
//! threads, a pool and processes, a line limit, `ERR server full`, back-off
//! when descriptors run out, logging.
//!
//! ```text
//! cargo run -p blocking-echo --bin blocking-article            # terminal 1
//! cargo run -p shared --bin client -- --addr 127.0.0.1:5464    # terminal 2
//! ```

use std::convert::Infallible;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;

fn run(addr: &str) -> io::Result<Infallible> {
    // `socket()`, `bind` and `listen` in one call. std's backlog (128 on
    // Linux) stands in for the article's `listen(100)`.
    let server = TcpListener::bind(addr)
        .map_err(|e| io::Error::other(format!("cannot listen on {addr}: {e}")))?;
    println!("listening on {}", server.local_addr()?); // flushed at its \n
    loop_forever(&server)
}

/// The article's `handle(conn)`. It reads one `recv(1024)`, answers
/// `Server:Good Bye.` and closes; here the client is served the echo
/// protocol until it leaves: a reply per whole line, however the reads cut
/// the stream.
fn handle(mut conn: TcpStream) -> io::Result<()> {
    let mut chunk = [0u8; 1024];
    // The part of a line still waiting for its newline.
    let mut line = Vec::new();
    let mut replies = Vec::new();
    loop {
        // Both phases of input happen inside this one call: the thread is
        // parked until bytes are in the socket, then while they are copied.
        // A signal cuts it short: Python retries, Rust returns `Interrupted`.
        let n = match conn.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        // The article's `print(repr(chunk))`.
        eprintln!("{:?}", String::from_utf8_lossy(&chunk[..n]));
        // At the end (0), a fragment left by a half-close is a line too.
        let data: &[u8] = if n == 0 && !line.is_empty() {
            b"\n"
        } else {
            &chunk[..n]
        };
        answer(&mut line, data, &mut replies);
        // Python's `send` may take part of the bytes and the article drops
        // the rest; `write_all` loops until the kernel holds all of them. A
        // client that never reads fills its buffer and parks us here.
        conn.write_all(&replies)?;
        replies.clear();
        if n == 0 {
            // The article's `conn.close()`: dropping `conn` closes it.
            return Ok(());
        }
    }
}

/// The article's `loop_forever`: accept a client, serve it until it leaves,
/// only then accept the next.
fn loop_forever(server: &TcpListener) -> ! {
    loop {
        // Parked in the kernel until a client completes its handshake.
        match server.accept() {
            Ok((client, addr)) => {
                eprintln!("{addr}");
                // A reset or broken pipe ends this client only, as the
                // article's `except socket.error: pass` does.
                if let Err(e) = handle(client) {
                    eprintln!("{addr}: {e}");
                }
            }
            // A client that left before we took it, or no descriptor free.
            Err(e) => eprintln!("accept: {e}"),
        }
    }
}

/// Adds `data` to the unfinished `line` and moves every whole line, upper-
/// cased (ASCII a-z only, like Python's `bytes.upper()`), to `replies`.
/// The article upper-cases whatever one `recv` returned; TCP is a byte
/// stream, so a read may hold half a line or many, and only the newline
/// says where a line ends. Only `data` is searched: linear in bytes read.
fn answer(line: &mut Vec<u8>, data: &[u8], replies: &mut Vec<u8>) {
    let kept = line.len();
    line.extend_from_slice(data);
    if let Some(last) = data.iter().rposition(|&b| b == b'\n') {
        let whole = line.drain(..=kept + last);
        replies.extend(whole.map(|b| b.to_ascii_uppercase()));
    }
}

fn main() -> ExitCode {
    // `run` returns only if it fails: the article's loop has no end.
    let Err(e) = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        // The article binds 0.0.0.0:5464; we stay on loopback unless asked.
        [] => run("127.0.0.1:5464"),
        [flag, addr] if flag == "--addr" => run(addr),
        _ => {
            eprintln!("usage: blocking-article [--addr HOST:PORT]");
            return ExitCode::from(2);
        }
    };
    eprintln!("error: {e}");
    ExitCode::FAILURE
}
