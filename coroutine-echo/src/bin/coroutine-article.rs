//! Coroutines, gevent's model, in one file: a task per connection, each
//! written like blocking-echo's `handle` (read, answer, write, in a plain
//! loop), and every task on one thread.
//!
//! Article 002 opens with gevent but gives no server: only `gevent.spawn`,
//! `join` and `monkey.patch_all()`. This file is the server those lines
//! imply, in gevent's idiom, with names of our own. The model: a socket
//! call that would block does not block the thread; the task yields at its
//! `.await`, the thread runs another task, and the reactor (async-io over
//! epoll, kqueue or IOCP) is the one place where the thread waits. Waiting
//! for data is the reactor's; the copy, the read itself, never waits.
//!
//! One difference from gevent's single thread: async-io also starts a
//! helper thread, named `async-io`, that drives the reactor whenever the
//! main thread is busy running tasks. So the process is one thread of tasks
//! plus that driver (two entries in `/proc/<pid>/task`); no task runs on it.
//!
//! Not hardened: the server, `src/main.rs`, adds the limits, the fair turns
//! and the memory-lean task this file leaves out. Run it, then in another
//! terminal `cargo run -p shared --bin client -- --addr 127.0.0.1:8096`.

use std::convert::Infallible;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;

use async_executor::LocalExecutor;
use async_io::Async;
use futures_lite::{AsyncReadExt, AsyncWriteExt};

fn run(addr: &str) -> io::Result<Infallible> {
    // `socket()`, `bind` and `listen`, with std's backlog (128 on Linux).
    let listener = TcpListener::bind(addr)
        .map_err(|e| io::Error::other(format!("cannot listen on {addr}: {e}")))?;
    // gevent's `monkey.patch_all()`: `Async` makes the socket non-blocking
    // and registers it with the reactor, which async-io starts on first use.
    let listener = Async::new(listener)?;
    println!("listening on {}", listener.get_ref().local_addr()?); // flushed at its \n
    // gevent's hub: a single-threaded executor, driven here; whenever no
    // task can run, `block_on` waits in the reactor for a socket to be ready.
    let ex = LocalExecutor::new();
    async_io::block_on(ex.run(accept_loop(&ex, &listener)))
}

/// Accepts clients forever, a task each.
async fn accept_loop(ex: &LocalExecutor<'_>, listener: &Async<TcpListener>) -> ! {
    loop {
        // Waits for a client the way `handle` waits for data: the accept
        // that would block yields to the other tasks instead.
        match listener.accept().await {
            Ok((conn, addr)) => {
                eprintln!("{addr} connected");
                // `gevent.spawn(handle, conn)`. No `join`: as 002 notes of
                // its socket example, the accept loop never ends, so
                // nothing waits for a task; each ends with its client.
                let task = ex.spawn(async move {
                    if let Err(e) = handle(conn).await {
                        // A reset or broken pipe ends this client only.
                        eprintln!("{addr}: {e}");
                    }
                });
                task.detach();
            }
            // A client that left before we took it, or no descriptor free.
            Err(e) => eprintln!("accept: {e}"),
        }
    }
}

/// One client, served until it leaves: blocking-echo's `handle`, with an
/// `.await` wherever the blocking version would sleep.
async fn handle(mut conn: Async<TcpStream>) -> io::Result<()> {
    let mut buf = [0u8; 1024];
    // The part of a line still waiting for its newline.
    let mut line = Vec::new();
    let mut replies = Vec::new();
    loop {
        // async-io calls read(2) on the non-blocking socket. If it fails
        // with WouldBlock, async-io asks the reactor to wake this task when
        // the socket is readable, and the task yields here: gevent's switch.
        // It resumes, and reads, only once data (or the end) is there.
        let n = conn.read(&mut buf).await?;
        // At the end (0), a fragment left by a half-close is a line too.
        let data: &[u8] = if n == 0 && !line.is_empty() {
            b"\n"
        } else {
            &buf[..n]
        };
        answer(&mut line, data, &mut replies);
        // write(2) may take part; on WouldBlock the task yields until the
        // socket has room, and `write_all` goes on until every byte is sent.
        conn.write_all(&replies).await?;
        replies.clear();
        if n == 0 {
            // Dropping `conn` closes it (and leaves the reactor).
            return Ok(());
        }
    }
}

/// Adds `data` to the unfinished `line` and moves every whole line, upper-
/// cased (ASCII a-z only, like Python's `bytes.upper()`), to `replies`. A
/// read may hold half a line or many: only the newline ends one. Only
/// `data` is searched: linear in the bytes read.
fn answer(line: &mut Vec<u8>, data: &[u8], replies: &mut Vec<u8>) {
    let kept = line.len();
    line.extend_from_slice(data);
    if let Some(last) = data.iter().rposition(|&b| b == b'\n') {
        let whole = line.drain(..=kept + last);
        replies.extend(whole.map(|b| b.to_ascii_uppercase()));
    }
}

fn main() -> ExitCode {
    // `run` returns only if it fails: the accept loop has no end.
    let Err(e) = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [] => run("127.0.0.1:8096"), // this crate's port, on loopback
        [flag, addr] if flag == "--addr" => run(addr),
        _ => {
            eprintln!("usage: coroutine-article [--addr HOST:PORT]");
            return ExitCode::from(2);
        }
    };
    eprintln!("error: {e}");
    ExitCode::FAILURE
}
