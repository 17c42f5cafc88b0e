//! Non-blocking I/O in one file: the busy-polling echo server of article
//! 001 §3 (article 002's `conn_lst`/`del_lst` server is the same loop).
//!
//! No call waits: `accept`, `read` and `write` do their work at once or fail
//! with `WouldBlock` (Python's `BlockingIOError`), and the loop asks again
//! next pass. Waiting for data is no longer the kernel's job: the program
//! keeps asking, and spins a core doing so. The copy still happens in `read`.
//!
//! Not hardened: the server, `src/main.rs`, adds the limits, bounds and
//! back-off this file leaves out. Run it, then in another terminal
//! `cargo run -p shared --bin client -- --addr 127.0.0.1:8083`.

use std::convert::Infallible;
use std::io::ErrorKind::{Interrupted, WouldBlock};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn run(addr: &str) -> io::Result<Infallible> {
    // `socket()`, `SO_REUSEADDR` (std sets it on Unix), `bind` and `listen`,
    // with std's backlog (128 on Linux): the article's 5 overflows at once.
    let server = TcpListener::bind(addr)
        .map_err(|e| io::Error::other(format!("cannot listen on {addr}: {e}")))?;
    // `server.setblocking(False)`: `accept` no longer waits.
    server.set_nonblocking(true)?;
    println!("listening on {}", server.local_addr()?); // flushed at its \n

    let mut r_list: Vec<Conn> = Vec::new();
    // `w_list[conn] = data`: here w_list[i] is what r_list[i] is owed.
    let mut w_list: Vec<Vec<u8>> = Vec::new();
    let mut del_rlist: Vec<usize> = Vec::new();
    let mut chunk = [0u8; 1024];
    let mut last_print = Instant::now();
    loop {
        match server.accept() {
            Ok((sock, addr)) => {
                // Python, like accept(2) on Linux, hands back a *blocking*
                // socket: the article's `recv` would wait. Not here.
                sock.set_nonblocking(true).expect("O_NONBLOCK");
                eprintln!("{addr} connected");
                let (line, ended) = (Vec::new(), false);
                r_list.push(Conn { sock, line, ended });
                w_list.push(Vec::new());
                continue;
            }
            // Nobody waiting: the article's `except BlockingIOError`.
            Err(e) if e.kind() == WouldBlock => {}
            // A client that left before we took it, or no descriptor free.
            Err(e) => eprintln!("accept: {e}"),
        }
        // "Doing other things", a few times a second rather than every pass.
        if last_print.elapsed() >= Duration::from_millis(500) {
            let w = w_list.iter().filter(|data| !data.is_empty()).count();
            eprintln!("doing other things: r_list {}, w_list {w}", r_list.len());
            last_print = Instant::now();
        }

        // One `recv` per client per pass, data or not: with nothing there
        // each costs a system call and answers `WouldBlock`.
        for (i, conn) in r_list.iter_mut().enumerate().filter(|(_, c)| !c.ended) {
            match conn.sock.read(&mut chunk) {
                // `if not data`: the client is done sending. Python closes at
                // once and loses what it owes; here the replies go out first,
                // and a fragment left by a half-close is answered as a line.
                Ok(0) => {
                    conn.ended = true;
                    let rest: &[u8] = if conn.line.is_empty() { b"" } else { b"\n" };
                    answer(&mut conn.line, rest, &mut w_list[i]);
                }
                // `w_list[conn] = data.upper()` would overwrite what is still
                // owed, and upper-case half lines: here whole lines are added.
                Ok(n) => answer(&mut conn.line, &chunk[..n], &mut w_list[i]),
                // No data yet (or a signal cut the call short): on to the
                // next socket, and this one again next pass.
                Err(e) if matches!(e.kind(), WouldBlock | Interrupted) => continue,
                // `except ConnectionResetError`: owe it nothing, close it.
                Err(_) => {
                    w_list[i].clear();
                    conn.ended = true;
                }
            }
        }

        // Every reply owed is tried in the same pass, with no wait for room.
        for (i, data) in w_list.iter_mut().enumerate() {
            if !data.is_empty() {
                match r_list[i].sock.write(data) {
                    // `send` may take only part, and the article drops the
                    // rest. Here it stays owed, sent once the socket has room.
                    Ok(n) => {
                        data.drain(..n);
                    }
                    // The socket's buffer is full: try again next pass.
                    Err(e) if matches!(e.kind(), WouldBlock | Interrupted) => {}
                    // A reset: owe it nothing, close it.
                    Err(_) => {
                        data.clear();
                        r_list[i].ended = true;
                    }
                }
            }
            // Nothing owed to a client that is done: on the delete list.
            if data.is_empty() && r_list[i].ended {
                del_rlist.push(i);
            }
        }
        // Removed after the walks, back to front so that each swap_remove
        // moves one that stays. Dropping a socket closes it.
        for i in del_rlist.drain(..).rev() {
            r_list.swap_remove(i);
            w_list.swap_remove(i);
        }
    }
}

/// A client. The article keeps only the socket; a byte stream needs the
/// unfinished line too, and whether the client has stopped sending.
struct Conn {
    sock: TcpStream,
    line: Vec<u8>,
    ended: bool,
}

/// Adds `data` to the unfinished `line` and moves every whole line, upper-
/// cased (ASCII a-z only, like `bytes.upper()`), to `replies`. Only `data`
/// is searched for the newline: linear in the bytes read.
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
        [] => run("127.0.0.1:8083"), // the article's port, on loopback
        [flag, addr] if flag == "--addr" => run(addr),
        _ => {
            eprintln!("usage: nonblocking-article [--addr HOST:PORT]");
            return ExitCode::from(2);
        }
    };
    eprintln!("error: {e}");
    ExitCode::FAILURE
}
