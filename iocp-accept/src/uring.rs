//! The completion model on Linux in IOCP's shape (`--single-shot`, and the
//! default on kernels before 6.0): one operation, one completion.
//!
//! A submission queue entry describes a whole operation (accept, receive,
//! send) and carries `user_data`, a key of our choosing, as IOCP's
//! OVERLAPPED address does. `io_uring_enter` hands the kernel the new
//! entries and waits for completions. Each completion carries the key back,
//! and `callback_map` turns it into the operation and its callback. As with
//! `WSARecv`, every receive is posted with its own buffer (the connection's
//! line buffer) and posted again after it completes: a buffer per pending
//! receive, whether data comes or not. That is the cost of the shape, and
//! what `multishot.rs` removes.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};

use anyhow::Context;
use io_uring::{IoUring, opcode, squeue, types};
use log::{debug, info};
use shared::echo::MAX_OWED;
use shared::limits::Room;
use shared::net::{AcceptError, ShortageLog, classify_accept_error};
use shared::{LineBuffer, answer_lines, answer_rest};
use slab::Slab;

use crate::Args;
use crate::submissions::{Submissions, is_transient};

/// Accepts kept armed, so a burst of clients does not wait for each one to
/// be re-armed.
const ACCEPTS_ARMED: usize = 4;
/// Send buffers past this size are not kept for reuse.
const KEEP_CAPACITY: usize = 64 * 1024;

/// The loop: article 004's steps 3 and 4, over and over; steps 1 and 2 are
/// [`Server::submit`] and the `post_*` calls, below it with the callbacks.
pub fn run(args: &Args, listener: TcpListener, ring: IoUring, room: Room) -> anyhow::Result<()> {
    info!("single-shot operations, IOCP's shape: a buffer per pending receive");
    let mut server = Server {
        ring,
        submissions: Submissions::default(),
        listener,
        callback_map: Slab::new(),
        conns: Slab::new(),
        room,
        max_line: args.echo.max_line,
        shortage: ShortageLog::default(),
    };
    for _ in 0..ACCEPTS_ARMED {
        server.post_accept()?;
    }
    let mut completed = Vec::new();
    shared::net::announce(&server.listener)?;
    loop {
        // Step 3: hand over what was queued, wait for at least one
        // completion (not while the kernel still refuses held entries).
        let all_in = server
            .submissions
            .flush(&mut server.ring)
            .context("io_uring_enter")?;
        match server.ring.submit_and_wait(usize::from(all_in)) {
            Ok(_) => {}
            // Interrupted, completions the queue could not hold waiting
            // (reap first), or no memory for a request just now.
            Err(e) if is_transient(&e) => {}
            Err(e) => return Err(e).context("io_uring_enter"),
        }
        let mut cq = server.ring.completion();
        completed.reserve(cq.len());
        for c in &mut cq {
            completed.push((c.user_data(), c.result()));
        }
        drop(cq);
        for (key, result) in completed.drain(..) {
            // Step 4: the key finds the operation, the operation its callback.
            match server.callback_map.remove(key as usize) {
                Op::Accept => server.on_accepted(result)?,
                Op::AcceptPause { .. } => server.post_accept()?,
                Op::Recv { conn, input } => server.on_received(conn, input, result)?,
                Op::Send { conn, buf, sent } => server.on_sent(conn, buf, sent, result)?,
            }
        }
    }
}

struct Server {
    ring: IoUring,
    submissions: Submissions,
    listener: TcpListener,
    /// The article's `callback_map`: key -> pending operation.
    callback_map: Slab<Op>,
    conns: Slab<Conn>,
    /// `--max-conns`, or less if the descriptor limit allows less.
    room: Room,
    max_line: usize,
    shortage: ShortageLog,
}

/// An operation handed to the kernel and not yet completed: the value in
/// `callback_map` for the key it was submitted with.
///
/// It owns every byte the kernel reads or writes for it, until its
/// completion is taken out of the map. That is what makes the raw pointers
/// in the submission entries sound: a buffer freed, or moved, while the
/// operation is in flight would still be written by the kernel, into memory
/// since reused for something else. A `Box` or `Vec` can move between
/// places; the heap bytes it points to do not.
enum Op {
    Accept,
    /// Accepts are paused after running out of descriptors; when this
    /// timeout completes, the accept is armed again. The kernel reads the
    /// timespec, so the operation owns it.
    AcceptPause {
        _timespec: Box<types::Timespec>,
    },
    /// The connection's line buffer travels with the receive: the kernel
    /// writes straight into its free space, and the completion says how
    /// many bytes landed there.
    Recv {
        conn: usize,
        input: LineBuffer,
    },
    Send {
        conn: usize,
        buf: Vec<u8>,
        sent: usize,
    },
}

/// Where a connection is in its life: the one place that says which
/// completions it can still get. A send may be in flight in any state
/// (`Conn::in_flight`).
///
/// | completion | from | to |
/// |---|---|---|
/// | receive: data | `Receiving` | `Receiving` (posted again), or `Paused` if a megabyte is owed; `Draining` after an over-long line (`ERR line too long` owed) |
/// | receive: end of stream (0) | `Receiving` | `Draining` (the unfinished line answered as a line) |
/// | receive: an error | `Receiving` | `Broken` |
/// | send: all of it taken | any but `Broken` | the next send if more is owed; `Paused` → `Receiving` once below the bound; `Draining` → closed once nothing is owed |
/// | send: part taken | any but `Broken` | the same; the rest sent |
/// | send: an error | any but `Broken` | `Broken` (a receive may still be in flight) |
/// | the last operation in flight completes | `Broken` | freed |
enum State {
    /// A receive is in flight, and owns the connection's line buffer: the
    /// kernel writes into it.
    Receiving,
    /// No receive posted, because a megabyte of replies is owed; the line
    /// buffer waits here, and a receive is posted again once the sends
    /// bring what is owed below the bound.
    Paused(LineBuffer),
    /// End of input, or an over-long line: no receive is posted again;
    /// what is owed is sent, then the connection is closed.
    Draining,
    /// A receive or send failed, and the socket is shut down: freed as
    /// soon as nothing is in flight (`receiving`: a receive still is).
    Broken { receiving: bool },
}

/// One client's state, kept by the program between completions.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    state: State,
    /// Replies not yet handed to a send.
    owed: Vec<u8>,
    /// Bytes the send in flight holds (0: no send in flight): owed too,
    /// and counted with `owed` against the bound on owed output.
    in_flight: usize,
}

impl Conn {
    /// Replies owed past the bound: stop receiving until they drain. What
    /// the send in flight holds counts, or a client that never reads could
    /// hold a megabyte there and another in `owed`.
    fn too_much_owed(&self) -> bool {
        self.owed.len() + self.in_flight >= MAX_OWED
    }
}

impl Server {
    /// Steps 1 and 2: stores `op` in `callback_map` and queues `entry` with
    /// its key. `entry` points only into memory `op` owns.
    fn submit(&mut self, op: Op, entry: squeue::Entry) -> io::Result<()> {
        let key = self.callback_map.insert(op);
        let entry = entry.user_data(key as u64);
        // SAFETY: every pointer in `entry` is to heap memory owned by the
        // `Op` now in `callback_map`, which keeps it there, unmoved and
        // unfreed, until this operation's completion removes it.
        unsafe { self.submissions.push(&mut self.ring, entry) }
    }

    /// The article's `ov.AcceptEx(listen_sock, conn_sock)`.
    fn post_accept(&mut self) -> io::Result<()> {
        let fd = types::Fd(self.listener.as_raw_fd());
        let entry = opcode::Accept::new(fd, std::ptr::null_mut(), std::ptr::null_mut())
            .flags(libc::SOCK_CLOEXEC)
            .build();
        self.submit(Op::Accept, entry)
    }

    /// The article's `on_accepted()`. Every accept completion arms the next
    /// one, so the server never stops accepting: at once after a failure
    /// that concerns one connection, 100 ms later when out of descriptors
    /// (retrying at once would only fail again). A broken listener ends the
    /// server.
    fn on_accepted(&mut self, result: i32) -> anyhow::Result<()> {
        if result < 0 {
            let e = io::Error::from_raw_os_error(-result);
            return match classify_accept_error(&e) {
                AcceptError::WouldBlock | AcceptError::Skip => {
                    debug!("accept: {e}");
                    Ok(self.post_accept()?)
                }
                AcceptError::OutOfResources => {
                    self.shortage.pausing(&e);
                    let pause = Box::new(
                        types::Timespec::new().nsec(shared::net::ACCEPT_BACKOFF.as_nanos() as u32),
                    );
                    let entry = opcode::Timeout::new(&*pause).build();
                    Ok(self.submit(Op::AcceptPause { _timespec: pause }, entry)?)
                }
                // A broken listener (EBADF, EINVAL): an accept armed on it
                // again would fail again, so a pause would only retry it for
                // ever.
                AcceptError::Fatal => Err(e).context("accept failed"),
            };
        }
        // SAFETY: a successful accept completion's result is a new
        // descriptor that nothing else owns.
        let stream = unsafe { TcpStream::from_raw_fd(result) };
        self.post_accept()?;
        if self.conns.len() >= self.room.conns {
            self.shortage.refusing(&self.room.limit);
            shared::net::refuse(&stream);
            return Ok(());
        }
        let Ok(peer) = stream.peer_addr() else {
            return Ok(()); // already gone
        };
        self.shortage.clear();
        info!("{peer} connected");
        let conn = self.conns.insert(Conn {
            stream,
            peer,
            state: State::Receiving,
            owed: Vec::new(),
            in_flight: 0,
        });
        Ok(self.post_recv(conn, LineBuffer::new(self.max_line))?)
    }

    /// Asks the kernel to receive into the free space of the connection's
    /// line buffer, which travels with the operation until it completes.
    fn post_recv(&mut self, conn: usize, mut input: LineBuffer) -> io::Result<()> {
        let c = &mut self.conns[conn];
        c.state = State::Receiving;
        let spare = input.spare();
        let entry = opcode::Recv::new(
            types::Fd(c.stream.as_raw_fd()),
            spare.as_mut_ptr(),
            spare.len() as u32,
        )
        .build();
        self.submit(Op::Recv { conn, input }, entry)
    }

    /// A receive completed: `result` bytes are already in the line buffer.
    fn on_received(&mut self, conn: usize, mut input: LineBuffer, result: i32) -> io::Result<()> {
        let c = &mut self.conns[conn];
        if let State::Broken { receiving } = &mut c.state {
            *receiving = false;
            return self.settle(conn);
        }
        match result {
            n if n < 0 => {
                debug!(
                    "{} receive failed: {}",
                    c.peer,
                    io::Error::from_raw_os_error(-n)
                );
                c.state = State::Broken { receiving: false };
                return self.break_off(conn);
            }
            0 => {
                // End of stream: answer the unterminated last fragment too.
                let _ = answer_rest(&mut input, b"", &mut c.owed);
                c.state = State::Draining;
            }
            n => {
                input.filled(n as usize);
                if answer_lines(&mut input, b"", &mut c.owed).is_err() {
                    c.state = State::Draining;
                } else {
                    // The common case: the replies go, and a receive is
                    // posted again, unless a megabyte is owed.
                    self.post_send(conn)?;
                    if !self.conns[conn].too_much_owed() {
                        return self.post_recv(conn, input);
                    }
                    self.conns[conn].state = State::Paused(input);
                    return Ok(());
                }
            }
        }
        self.settle(conn)
    }

    /// After a completion: sends what is owed, then makes the move the
    /// amount owed calls for (the table at [`State`]).
    fn settle(&mut self, conn: usize) -> io::Result<()> {
        let c = &mut self.conns[conn];
        match &c.state {
            State::Broken { receiving } => {
                // Freed once nothing is in flight: the kernel may still
                // write into what a pending operation owns.
                if !*receiving && c.in_flight == 0 {
                    debug!("{} dropped", c.peer);
                    self.conns.remove(conn);
                }
                return Ok(());
            }
            State::Draining if c.owed.is_empty() && c.in_flight == 0 => {
                shared::net::close_gracefully(&c.stream);
                info!("{} closed", c.peer);
                self.conns.remove(conn);
                return Ok(());
            }
            _ => {}
        }
        self.post_send(conn)?;
        let c = &mut self.conns[conn];
        // Receiving pauses while a megabyte of replies waits to be sent.
        if matches!(c.state, State::Paused(_)) && !c.too_much_owed() {
            let State::Paused(input) = std::mem::replace(&mut c.state, State::Receiving) else {
                unreachable!("matched above");
            };
            return self.post_recv(conn, input);
        }
        Ok(())
    }

    /// Hands what is owed to the kernel in one send, unless one is in flight
    /// (replies then gather in `owed` and go in the next).
    fn post_send(&mut self, conn: usize) -> io::Result<()> {
        let c = &mut self.conns[conn];
        if c.in_flight > 0 || c.owed.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut c.owed);
        self.send_from(conn, buf, 0)
    }

    fn send_from(&mut self, conn: usize, buf: Vec<u8>, sent: usize) -> io::Result<()> {
        let c = &mut self.conns[conn];
        let rest = &buf[sent..];
        let entry = opcode::Send::new(
            types::Fd(c.stream.as_raw_fd()),
            rest.as_ptr(),
            rest.len() as u32,
        )
        .build();
        // The whole buffer, sent part included: it is all held until the
        // send completes.
        c.in_flight = buf.len();
        self.submit(Op::Send { conn, buf, sent }, entry)
    }

    /// A send completed, with `result` more bytes taken by the kernel.
    fn on_sent(
        &mut self,
        conn: usize,
        mut buf: Vec<u8>,
        sent: usize,
        result: i32,
    ) -> io::Result<()> {
        let c = &mut self.conns[conn];
        c.in_flight = 0;
        if matches!(c.state, State::Broken { .. }) {
            return self.settle(conn);
        }
        if result < 0 {
            debug!(
                "{} send failed: {}",
                c.peer,
                io::Error::from_raw_os_error(-result)
            );
            let receiving = matches!(c.state, State::Receiving);
            c.state = State::Broken { receiving };
            return self.break_off(conn);
        }
        let sent = sent + result as usize;
        if sent < buf.len() {
            // A short send: the rest goes in another.
            return self.send_from(conn, buf, sent);
        }
        // Keep the buffer for the next replies.
        if c.owed.is_empty() && buf.capacity() <= KEEP_CAPACITY {
            buf.clear();
            c.owed = buf;
        }
        self.settle(conn)
    }

    /// A receive or send failed (the state is `Broken` already). Shutting
    /// the socket down makes any operation still in flight on it complete;
    /// the connection (and its descriptor) is freed only after the last one
    /// has.
    fn break_off(&mut self, conn: usize) -> io::Result<()> {
        let _ = self.conns[conn].stream.shutdown(std::net::Shutdown::Both);
        self.settle(conn)
    }
}
