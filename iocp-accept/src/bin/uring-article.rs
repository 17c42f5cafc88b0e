//! Article 004's program in one file, its IOCP example carried to io_uring: the asynchronous model
//! of article 001 §5, on Linux. Neither phase blocks the program: it hands the kernel whole
//! operations (accept, receive into this buffer, send these bytes), each with a key, `user_data`,
//! as the article hands Windows an OVERLAPPED's address; the kernel waits and copies, and
//! `callback_map` turns the key of each completion back into what comes next. The article stops at
//! its first accept; this receives and sends too, one operation in flight per client (IOCP's
//! shape). Limits and back-off are the server's (`src/uring.rs`). On Windows: `iocp-article.rs`.

#![cfg_attr(not(target_os = "linux"), allow(dead_code, unused_imports))]

#[cfg(target_os = "linux")]
use io_uring::{IoUring, cqueue, opcode, squeue, types::Fd};
#[cfg(target_os = "linux")]
use std::os::fd::{AsRawFd, FromRawFd};
use std::{collections::HashMap, convert::Infallible, io, net, process::ExitCode, ptr::null_mut};

#[cfg(not(target_os = "linux"))] // elsewhere, the model below is not built: only this stand-in
fn run(_: &str) -> Result<Infallible, &'static str> {
    Err("uring-article needs Linux's io_uring; on Windows, run iocp-article")
}

#[cfg(target_os = "linux")]
fn run(addr: &str) -> io::Result<Infallible> {
    // listen_sock: std binds, sets SO_REUSEADDR as the article does, and a backlog, not listen(0).
    let listen_sock = net::TcpListener::bind(addr)
        .map_err(|e| io::Error::other(format!("cannot listen on {addr}: {e}")))?;
    // _iocp: the ring, operations in and completions out; each entry names its own socket.
    let ring = IoUring::new(1024)
        .map_err(|e| io::Error::new(e.kind(), format!("no io_uring here: {e}")))?;
    let mut server = Server {
        ring,
        listen_sock,
        callback_map: HashMap::new(),
        next_key: 0,
    };
    // ov.AcceptEx(...): one accept in flight; on_accepted posts the next.
    server.post_accept()?;
    println!("listening on {}", server.listen_sock.local_addr()?); // flushed at its \n
    loop {
        // GetQueuedCompletionStatus(_iocp, 1000): io_uring_enter hands the kernel what was queued
        // and waits for a completion. No timeout: the article's 1 s only ends in another wait.
        server.ring.submit_and_wait(1)?;
        // Out of the queue before any callback runs: a callback needs the whole `server`, and
        // the completion queue would hold a borrow of its ring meanwhile.
        let done: Vec<cqueue::Entry> = server.ring.completion().collect();
        for cqe in done {
            // `err, transferred, key, address = status`: err, ignored by the article, is -errno.
            let status = match cqe.result() {
                n if n < 0 => Err(io::Error::from_raw_os_error(-n)),
                n => Ok(n as usize),
            };
            // `callback = callback_map[address]; callback()`. Removed: an operation
            // completes once, and its buffer is then ours again.
            let callback = server.callback_map.remove(&cqe.user_data());
            callback.expect("every key is filed")(&mut server, status)?;
        }
    }
}

/// What to do when an operation completes; it owns the buffer the kernel uses till then.
#[cfg(target_os = "linux")]
type Callback = Box<dyn FnOnce(&mut Server, io::Result<usize>) -> io::Result<()>>;

#[cfg(target_os = "linux")]
struct Server {
    ring: IoUring,
    listen_sock: net::TcpListener,
    /// The article's `callback_map`: key (user_data) -> callback.
    callback_map: HashMap<u64, Callback>,
    next_key: u64,
}

/// One client, owned by the one operation in flight on it, so nothing frees it meanwhile.
struct Conn {
    sock: net::TcpStream,
    peer: net::SocketAddr,
    buf: Vec<u8>,     // where each receive lands
    line: Vec<u8>,    // a line still arriving: a receive may end anywhere
    replies: Vec<u8>, // what the kernel has yet to take
    eof: bool,        // the client has shut down its sending
}

#[cfg(target_os = "linux")]
impl Server {
    /// The article's `ov = Overlapped(NULL)` and `callback_map[ov.address] = ...`: a
    /// new key, its callback filed under it, and the entry queued with it.
    fn submit(&mut self, entry: squeue::Entry, callback: Callback) -> io::Result<()> {
        let key = self.next_key;
        self.next_key += 1;
        self.callback_map.insert(key, callback);
        if self.ring.submission().is_full() {
            self.ring.submit()?; // the kernel takes what is queued: room again
        }
        // SAFETY: the entry points only into memory its callback owns, in callback_map until this
        // key completes; or until `run` fails, and the process ends with the operations.
        unsafe { self.ring.submission().push(&entry.user_data(key)) }
            .map_err(|_| io::Error::other("submission queue full"))
    }

    /// `ov.AcceptEx(listen_sock.fileno(), conn_sock.fileno())`. io_uring's accept
    /// makes the new socket itself: there is no `conn_sock` to make beforehand.
    fn post_accept(&mut self) -> io::Result<()> {
        let entry = opcode::Accept::new(Fd(self.listen_sock.as_raw_fd()), null_mut(), null_mut());
        self.submit(entry.build(), Box::new(|s, r| s.on_accepted(r)))
    }

    /// The article's `on_accepted()`: says who connected, then receives.
    fn on_accepted(&mut self, status: io::Result<usize>) -> io::Result<()> {
        self.post_accept()?; // the next accept, so one is always in flight
        let Ok(fd) = status.inspect_err(|e| eprintln!("accept: {e}")) else {
            // The one just posted takes over; with no descriptor free it fails at once too: a spin.
            return Ok(());
        };
        // SAFETY: an accept's result is a new descriptor that nothing else owns.
        let sock = unsafe { net::TcpStream::from_raw_fd(fd as i32) };
        let Ok(peer) = sock.peer_addr() else {
            return Ok(()); // reset already
        };
        eprintln!("connected from {peer}");
        self.carry_on(Conn {
            sock,
            peer,
            buf: vec![0; 4096],
            line: vec![],
            replies: vec![],
            eof: false,
        })
    }

    fn on_received(&mut self, mut conn: Conn, status: io::Result<usize>) -> io::Result<()> {
        let n = match status {
            Ok(n) => n,
            Err(e) => return dropped(conn.peer, e),
        };
        conn.replies = answer_lines(&mut conn.line, &conn.buf[..n]);
        // 0 bytes: the client has shut down its sending; a last unended line is answered too.
        conn.eof = n == 0;
        if conn.eof && !conn.line.is_empty() {
            conn.replies = answer_lines(&mut conn.line, b"\n");
        }
        self.carry_on(conn)
    }

    fn on_sent(&mut self, mut conn: Conn, status: io::Result<usize>) -> io::Result<()> {
        match status {
            Ok(n) => drop(conn.replies.drain(..n)), // part, maybe (never none): rest goes next
            Err(e) => return dropped(conn.peer, e),
        }
        self.carry_on(conn)
    }

    /// A client's next operation, one at a time: a send while replies are owed; then
    /// the close if it has shut down its sending; else a receive into its buffer.
    fn carry_on(&mut self, mut conn: Conn) -> io::Result<()> {
        let (fd, replies) = (Fd(conn.sock.as_raw_fd()), &conn.replies);
        if !replies.is_empty() {
            let entry = opcode::Send::new(fd, replies.as_ptr(), replies.len() as u32);
            return self.submit(entry.build(), Box::new(|s, r| s.on_sent(conn, r)));
        }
        if conn.eof {
            eprintln!("{} closed", conn.peer);
            return Ok(()); // dropping `conn` closes its socket
        }
        let entry = opcode::Recv::new(fd, conn.buf.as_mut_ptr(), conn.buf.len() as u32);
        self.submit(entry.build(), Box::new(|s, r| s.on_received(conn, r)))
    }
}

/// A client that failed (reset, mostly) is dropped, with whatever it is owed.
fn dropped(peer: net::SocketAddr, e: io::Error) -> io::Result<()> {
    eprintln!("{peer} dropped: {e}");
    Ok(())
}

/// The reply to each whole line, ASCII a-z upper-cased; the rest stays in `line`: a
/// receive is not a message, and may hold several lines, or part of one.
fn answer_lines(line: &mut Vec<u8>, data: &[u8]) -> Vec<u8> {
    let mut replies = Vec::new();
    for &b in data {
        line.push(b.to_ascii_uppercase());
        if b == b'\n' {
            replies.append(line);
        }
    }
    replies
}

fn main() -> ExitCode {
    // `--addr HOST:PORT`, read by hand; `run` returns only if it fails: its loop has no end.
    let Err(e) = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [] => run("127.0.0.1:9090"), // the article's port, on loopback
        [flag, addr] if flag == "--addr" => run(addr),
        _ => {
            eprintln!("usage: uring-article [--addr HOST:PORT]");
            return ExitCode::from(2);
        }
    };
    eprintln!("error: {e}");
    ExitCode::FAILURE
}
