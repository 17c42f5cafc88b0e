//! The completion model on Linux, as io_uring does it best (Linux 6.0 and
//! later): one armed operation, many completions.
//!
//! | feature | kernel | what it saves |
//! |---|---|---|
//! | multishot accept (`AcceptMulti`) | 5.19 | one accept serves every client; no re-arming per client |
//! | provided buffer ring (`IORING_REGISTER_PBUF_RING`) | 5.19 | receive buffers belong to the loop, not to each connection: a buffer is taken only when data arrives |
//! | multishot receive (`RecvMulti`) | 6.0 | one receive per connection, armed once |
//! | `SINGLE_ISSUER` + `DEFER_TASKRUN` | 6.1 | the kernel runs completion work when we wait for it, not by interrupting us on another CPU |
//!
//! IOCP's shape (and `--single-shot`'s, in `uring.rs`) is one operation, one
//! completion: every `WSARecv` is posted with its own buffer, completes once,
//! and must be posted again. Here a receive is armed once per connection and
//! then yields a completion each time data arrives, each naming the buffer
//! the kernel picked from the ring; `callback_map` keeps the operation for as
//! long as its completions carry `IORING_CQE_F_MORE`, and drops it with the
//! last one. Article 004's four steps stay: a key per operation, the call,
//! the wait for completions, the key's callback.
//!
//! `user_data` is the operation's key in `callback_map` (a slab index); the
//! connection it concerns is in the operation.
//!
//! ## A connection's life
//!
//! Each connection is in one [`State`]; the receive's key is part of the
//! state for as long as completions for it may come. A send may be in
//! flight in any state (`Conn::in_flight`). "Last" is a receive completion
//! without `F_MORE`: the receive has ended. "Too much owed" is a megabyte
//! of replies not yet sent, the send in flight included.
//!
//! | completion, or event | from | to |
//! |---|---|---|
//! | receive: data, more to come | `Reading` | `Reading`; `Paused` (cancel sent) if now too much owed; `Draining` (cancel sent) after an over-long line, `ERR line too long` owed |
//! | receive: data, more to come | `Paused(key)` | the same; the data is answered (it came before the cancel) |
//! | receive: data, more to come | `Draining(key)`, `Broken(key)` | the same; the data is dropped |
//! | receive: data, last (the kernel ended it) | `Reading` | `Reading` again (re-armed), or `Paused` if too much owed |
//! | receive: data, last, an over-long line | `Reading` | `Draining` (`ERR line too long` owed; the ended receive is not cancelled) |
//! | receive: end of stream (0) | `Reading`, `Paused(key)` | `Draining` (the unfinished line answered as a line) |
//! | receive: `-ENOBUFS`, last | `Reading` | `Starved` |
//! | receive: any other last completion (`-ECANCELED`, `-ENOBUFS`, data) | `Paused(key)` / `Draining(key)` / `Broken(key)` | `Paused` / `Draining` / `Broken`, with no receive; nothing answered in `Draining` and `Broken` |
//! | receive: end of stream (0), last | `Draining(key)` / `Broken(key)` | `Draining` / `Broken`, with no receive |
//! | receive: an error | any but `Broken` | `Broken` |
//! | end of the batch (its buffers given back) | `Starved` | `Reading` (re-armed), or `Paused` if too much owed |
//! | send: all of it taken | any | the next send if more is owed; `Paused` (no receive) → `Reading` once below the bound; `Draining` (no receive) → closed once nothing is owed |
//! | send: part taken | any but `Broken` | the same; the rest sent |
//! | send: an error | any but `Broken` | `Broken` (the armed receive cancelled) |
//! | the last operation in flight completes | `Broken` | freed |
//!
//! So a receive that completes with `-ENOBUFS` while the connection is
//! draining is simply the receive's end: `Draining(key)` becomes
//! `Draining`, nothing is re-armed, and the connection closes once its
//! replies are sent.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::Instant;

use anyhow::Context;
use io_uring::{IoUring, cqueue, opcode, squeue, types};
use log::{debug, info, warn};
use shared::echo::MAX_OWED;
use shared::limits::Room;
use shared::net::{AcceptError, ShortageLog, classify_accept_error};
use shared::{answer_partial_at_end, answer_read};
use slab::Slab;

use crate::Args;
use crate::bufring::{BGID, BUF_SIZE, BufRing, Taken, buffers_for};
use crate::submissions::{Submissions, is_transient};

/// Send buffers past this size are not kept for reuse.
const KEEP_CAPACITY: usize = 64 * 1024;
/// Spare send buffers kept for reuse, at most: enough for a batch's
/// replies, and a bound on what a burst leaves behind (4 MiB).
const KEEP_SPARE: usize = 64;

/// The loop: article 004's steps 3 and 4, as in `uring.rs`, with the
/// multishot operations kept in `callback_map` while more is to come.
pub fn run(args: &Args, listener: TcpListener, ring: IoUring, room: Room) -> anyhow::Result<()> {
    let entries = args.buffers.unwrap_or_else(|| buffers_for(room.conns));
    let bufs = BufRing::register(&ring, entries)?;
    info!(
        "multishot accept and receive, {entries} provided buffers of {} KiB",
        BUF_SIZE / 1024
    );
    let mut server = Server {
        ring,
        submissions: Submissions::default(),
        bufs,
        listener,
        callback_map: Slab::new(),
        conns: Slab::new(),
        spare: Vec::new(),
        starved: Vec::new(),
        short_of_buffers: None,
        room,
        max_line: args.echo.max_line,
        shortage: ShortageLog::default(),
    };
    server.post_accept()?;
    let mut completed = Vec::new();
    shared::net::announce(&server.listener)?;
    loop {
        // Step 3: hand over what was queued, wait for completions.
        let all_in = server
            .submissions
            .flush(&mut server.ring)
            .context("io_uring_enter")?;
        match server.wait(all_in) {
            Ok(()) => {}
            // Interrupted, completions the queue could not hold waiting
            // (reap first), or no memory for a request just now.
            Err(e) if is_transient(&e) => {}
            Err(e) => return Err(e).context("io_uring_enter"),
        }
        // Copied out, so that the callbacks may queue new operations.
        let cq = server.ring.completion();
        completed.extend(cq.map(|c| (c.user_data(), c.result(), c.flags())));
        for (key, result, flags) in completed.drain(..) {
            let key = key as usize;
            // Step 4: the key finds the operation, the operation its
            // callback. A multishot one stays while more is to come.
            let more = cqueue::more(flags);
            let op = if more {
                match &server.callback_map[key] {
                    Op::Accept => Op::Accept,
                    Op::Recv { conn } => Op::Recv { conn: *conn },
                    _ => server.callback_map.remove(key),
                }
            } else {
                server.callback_map.remove(key)
            };
            match op {
                Op::Accept => server.on_accepted(result, more)?,
                Op::AcceptPause { .. } => server.post_accept()?,
                Op::Recv { conn } => server.on_received(conn, result, flags, more)?,
                Op::Send { conn, buf, sent } => server.on_sent(conn, buf, sent, result)?,
                Op::Cancel => {}
            }
        }
        // The buffers this batch used are back: make them visible, then
        // re-arm the receives that ran dry.
        server.bufs.publish();
        server.rearm_starved()?;
    }
}

struct Server {
    ring: IoUring,
    submissions: Submissions,
    bufs: BufRing,
    listener: TcpListener,
    /// The article's `callback_map`: key -> pending operation.
    callback_map: Slab<Op>,
    conns: Slab<Conn>,
    /// Send buffers back from finished sends, for the next ones: no
    /// allocation per request once warm.
    spare: Vec<Vec<u8>>,
    /// Connections whose receive ended for want of buffers: re-armed once
    /// this batch of completions has given its buffers back.
    starved: Vec<usize>,
    /// The burst of `-ENOBUFS` under way, if any: told once as it starts,
    /// and once, with its count of re-arms, when it has passed.
    short_of_buffers: Option<ShortOfBuffers>,
    /// `--max-conns`, or less if the descriptor limit allows less.
    room: Room,
    max_line: usize,
    shortage: ShortageLog,
}

impl Drop for Server {
    /// The buffer ring is unregistered before its memory goes (`bufs` is
    /// dropped after this): closing the io_uring alone tears it down in
    /// the background, not at once.
    fn drop(&mut self) {
        let _ = self.ring.submitter().unregister_buf_ring(BGID);
    }
}

/// An operation handed to the kernel and not yet finished: the value in
/// `callback_map` for the key it was submitted with. A multishot operation
/// stays here across its completions, until one comes without
/// `IORING_CQE_F_MORE`.
enum Op {
    /// The one multishot accept.
    Accept,
    /// Out of descriptors: the accept is armed again when this completes.
    /// The kernel reads the timespec, so the operation owns it.
    AcceptPause { _timespec: Box<types::Timespec> },
    /// A connection's multishot receive. It owns no buffer: each completion
    /// names one from the ring.
    Recv { conn: usize },
    /// A send owns its bytes until it completes.
    Send {
        conn: usize,
        buf: Vec<u8>,
        sent: usize,
    },
    /// Cancelling a connection's receive (back-pressure, or closing).
    Cancel,
}

/// Where a connection is in its life. The receive's key is in the state
/// for as long as completions for it may still come, so that a state says
/// which completions the connection can still get; the send in flight is
/// `Conn::in_flight`, which any state may have. The module doc's table
/// gives every move between these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Receiving: the multishot receive with this key is armed.
    Reading(usize),
    /// The receive ended for want of provided buffers (`-ENOBUFS`). Nothing
    /// was lost (the data waits in the socket); it is armed again at the end
    /// of the batch, once the batch has given its buffers back.
    Starved,
    /// Not receiving, because too much is owed: the receive was cancelled.
    /// Its key while its last completion is still to come (data it brings
    /// meanwhile is answered: it was received before the cancel). Armed
    /// again once the sends bring what is owed below the bound.
    Paused(Option<usize>),
    /// No more input is taken (end of stream, or an over-long line): what
    /// is owed is sent, then the connection is closed. The receive's key
    /// while its last completion is still to come; data it brings is
    /// dropped, since after `ERR line too long` nothing more is answered.
    Draining(Option<usize>),
    /// A receive or send failed, and the socket is shut down: freed as soon
    /// as the receive (its key, if any) and the send in flight complete.
    Broken(Option<usize>),
}

impl State {
    /// The receive whose completions may still come, if any.
    fn recv(self) -> Option<usize> {
        match self {
            State::Reading(key) => Some(key),
            State::Starved => None,
            State::Paused(key) | State::Draining(key) | State::Broken(key) => key,
        }
    }
}

/// One client between completions: no input buffer, only the line still
/// arriving, and the replies not yet handed to a send.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    state: State,
    partial: Vec<u8>,
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

/// A burst that found the provided buffers all in use, for the log.
struct ShortOfBuffers {
    since: Instant,
    rearmed: u64,
}

impl Server {
    /// End of a batch, its buffers given back: the receives that ran dry
    /// are armed again, and a burst of them is told once as it starts and
    /// once, with its count, when it has passed.
    fn rearm_starved(&mut self) -> io::Result<()> {
        if self.starved.is_empty() {
            // A burst is over once a batch needs no re-arm, a second or
            // more after it began: shorter lulls belong to the same burst,
            // so that a ring too small for steady load logs once a second.
            if let Some(short) = self
                .short_of_buffers
                .take_if(|s| s.since.elapsed().as_secs() >= 1)
            {
                warn!(
                    "out of provided buffers for {:.1} s: {} receives re-armed after ENOBUFS; \
                     --buffers sets how many there are",
                    short.since.elapsed().as_secs_f64(),
                    short.rearmed
                );
            }
            return Ok(());
        }
        if self.short_of_buffers.is_none() {
            warn!(
                "out of provided buffers: receives that find none are re-armed once their \
                 batch gives buffers back (said once per burst)"
            );
        }
        let mut rearmed = 0;
        for conn in std::mem::take(&mut self.starved) {
            // The key may have been freed, or even reused, in this batch:
            // only a connection still `Starved` is the one that starved.
            // One that now owes too much stays `Paused`; its sends re-arm
            // it once they drain.
            let Some(c) = self
                .conns
                .get_mut(conn)
                .filter(|c| c.state == State::Starved)
            else {
                continue;
            };
            c.state = State::Paused(None);
            if !c.too_much_owed() {
                rearmed += 1;
                self.arm_recv(conn)?;
            }
        }
        let short = self.short_of_buffers.get_or_insert(ShortOfBuffers {
            since: Instant::now(),
            rearmed: 0,
        });
        short.rearmed += rearmed;
        Ok(())
    }

    /// Step 3: submits what is queued and waits for one completion, or
    /// only submits while the kernel still refuses held entries (`all_in`
    /// false: see [`Submissions::flush`]). (Waiting for more at once was
    /// tried, and cost more than it saved: the crate README's "What was
    /// tried".)
    fn wait(&mut self, all_in: bool) -> io::Result<()> {
        self.ring.submit_and_wait(usize::from(all_in)).map(drop)
    }

    /// Steps 1 and 2: stores `op` in `callback_map` and queues `entry` with
    /// its key. `entry` points only into memory `op` (or the buffer ring,
    /// which outlives every operation) owns.
    fn submit(&mut self, op: Op, entry: squeue::Entry) -> io::Result<usize> {
        let key = self.callback_map.insert(op);
        let entry = entry.user_data(key as u64);
        // SAFETY: every pointer in `entry` is to heap memory owned by the
        // `Op` now in `callback_map` (a send's bytes), which keeps it there,
        // unmoved and unfreed, until the operation's last completion
        // removes it; or to nothing (accept, receive).
        unsafe { self.submissions.push(&mut self.ring, entry) }?;
        Ok(key)
    }

    /// The article's `AcceptEx`, armed once for every client to come.
    fn post_accept(&mut self) -> io::Result<()> {
        let fd = types::Fd(self.listener.as_raw_fd());
        let entry = opcode::AcceptMulti::new(fd)
            .flags(libc::SOCK_CLOEXEC)
            .build();
        self.submit(Op::Accept, entry).map(drop)
    }

    /// The article's `on_accepted()`, once per client. When a completion
    /// comes without `F_MORE` the multishot accept has ended (an error
    /// does that): arm it again, after 100 ms when out of descriptors. A
    /// broken listener ends the server.
    fn on_accepted(&mut self, result: i32, more: bool) -> anyhow::Result<()> {
        if result < 0 {
            let e = io::Error::from_raw_os_error(-result);
            return match classify_accept_error(&e) {
                AcceptError::WouldBlock | AcceptError::Skip => {
                    debug!("accept: {e}");
                    if !more {
                        self.post_accept()?;
                    }
                    Ok(())
                }
                AcceptError::OutOfResources => {
                    self.shortage.pausing(&e);
                    if more {
                        // Still armed: nothing to pause. (The kernel ends a
                        // multishot accept on an error, so this is rare.)
                        return Ok(());
                    }
                    let pause = Box::new(
                        types::Timespec::new().nsec(shared::net::ACCEPT_BACKOFF.as_nanos() as u32),
                    );
                    let entry = opcode::Timeout::new(&*pause).build();
                    self.submit(Op::AcceptPause { _timespec: pause }, entry)?;
                    Ok(())
                }
                // A broken listener (EBADF, EINVAL): an accept armed on it
                // again would fail again, so a pause would only retry it for
                // ever.
                AcceptError::Fatal => Err(e).context("accept failed"),
            };
        }
        if !more {
            self.post_accept()?;
        }
        // SAFETY: from_raw_fd's caller guarantees the descriptor is open and
        // owned by no one else: a successful accept's result is a new one.
        let stream = unsafe { TcpStream::from_raw_fd(result) };
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
            // Not receiving yet; armed at once below.
            state: State::Paused(None),
            partial: Vec::new(),
            owed: Vec::new(),
            in_flight: 0,
        });
        Ok(self.arm_recv(conn)?)
    }

    /// Arms the connection's one multishot receive, taking from the ring.
    fn arm_recv(&mut self, conn: usize) -> io::Result<()> {
        let fd = types::Fd(self.conns[conn].stream.as_raw_fd());
        let entry = opcode::RecvMulti::new(fd, BGID).build();
        let key = self.submit(Op::Recv { conn }, entry)?;
        self.conns[conn].state = State::Reading(key);
        Ok(())
    }

    /// Leaves `Reading` (or a state with no receive armed) for `to`: the
    /// armed receive is cancelled, and `to` keeps its key until its last
    /// completion comes. Letting it end by itself would not do: a multishot
    /// receive does not end while data keeps coming.
    fn stop_reading(&mut self, conn: usize, to: fn(Option<usize>) -> State) -> io::Result<()> {
        let c = &mut self.conns[conn];
        let State::Reading(recv) = c.state else {
            // No receive armed, or one already cancelled: nothing to stop.
            c.state = to(c.state.recv());
            return Ok(());
        };
        c.state = to(Some(recv));
        // The cancel names the receive by its key, and a key is reused once
        // its operation's last completion is taken. That completion may
        // come later in this same batch, and the key go to a new operation
        // queued after this cancel; the cancel still cannot hit it, because
        // the kernel issues a submission batch in order (held entries keep
        // their order too: `Submissions`), and a cancel runs as it is
        // issued: it finds the old receive, or nothing (`-ENOENT`), never
        // an operation issued after it.
        let entry = opcode::AsyncCancel::new(recv as u64).build();
        self.submit(Op::Cancel, entry).map(drop)
    }

    /// A receive completed: `result` bytes in the buffer its flags name.
    /// The lines are framed and answered from there and the buffer goes
    /// straight back to the ring; only an unfinished line is copied out.
    /// `more`: the receive stays armed; without it, this is its last
    /// completion, and the state says what comes next (the module doc's
    /// table).
    fn on_received(&mut self, conn: usize, result: i32, flags: u32, more: bool) -> io::Result<()> {
        // SAFETY: `flags` are this receive completion's, just reaped, and
        // taken here once.
        let taken = unsafe { self.bufs.take(flags) };
        if result > 0 {
            let taken = taken.expect("a receive with data names its buffer");
            self.answer(conn, &taken, result as usize, more)?;
            self.bufs.push(taken);
        } else if let Some(taken) = taken {
            self.bufs.push(taken);
        }
        if more {
            return self.settle(conn);
        }
        let c = &mut self.conns[conn];
        let failed = result < 0 && result != -libc::ENOBUFS && result != -libc::ECANCELED;
        c.state = match (c.state, result) {
            (State::Broken(_), _) => State::Broken(None),
            // The receive failed: broken off below (it has ended, so there
            // is nothing to cancel).
            _ if failed => State::Broken(None),
            (State::Draining(_), _) => State::Draining(None),
            // End of stream: the unterminated last fragment is answered
            // too. (Never after `ERR line too long`: that is `Draining`.)
            (_, 0) => {
                answer_partial_at_end(&mut c.partial, b"", &mut c.owed);
                State::Draining(None)
            }
            // The ring ran dry. Re-armed at the end of this batch, once its
            // buffers are back; not at once, which would only fail again.
            (State::Reading(_), n) if n == -libc::ENOBUFS => {
                self.starved.push(conn);
                State::Starved
            }
            // A cancelled receive's end, or one the kernel ended after data
            // (it may end a multishot receive at any time): `settle` arms
            // it again once nothing stops it.
            _ => State::Paused(None),
        };
        if failed {
            debug!(
                "{} receive failed: {}",
                c.peer,
                io::Error::from_raw_os_error(-result)
            );
            return self.break_off(conn);
        }
        self.settle(conn)
    }

    /// Frames and answers `len` bytes of buffer `taken` for `conn`, if it
    /// is still taking input: data a cancelled receive brings while paused
    /// was received before the cancel, and is answered; while draining or
    /// broken it is dropped. An over-long line ends the input: `Draining`,
    /// with the receive cancelled if `more` says it is still armed (a
    /// receive that has ended is not cancelled: its key is free already).
    fn answer(&mut self, conn: usize, taken: &Taken, len: usize, more: bool) -> io::Result<()> {
        let c = &mut self.conns[conn];
        if !matches!(c.state, State::Reading(_) | State::Paused(_)) {
            return Ok(());
        }
        // The replies go into one of the loop's send buffers, taken from
        // `spare` when the connection holds none and handed back when its
        // send completes: no allocation per request, and no buffer held by
        // an idle connection.
        if c.owed.capacity() == 0 {
            c.owed = self.spare.pop().unwrap_or_default();
        }
        let data = self.bufs.buffer(taken, len);
        let too_long = answer_read(&mut c.partial, data, self.max_line, b"", &mut c.owed).is_err();
        if c.owed.is_empty() {
            // Only part of a line came: the buffer goes back (or, past the
            // spares kept, is let go).
            let unused = std::mem::take(&mut c.owed);
            if self.spare.len() < KEEP_SPARE {
                self.spare.push(unused);
            }
        }
        if too_long && more {
            return self.stop_reading(conn, State::Draining);
        }
        if too_long {
            // The receive's last completion: `on_received` ends it.
            self.conns[conn].state = State::Draining(None);
        }
        Ok(())
    }

    /// After a completion: sends what is owed, then makes the move the
    /// state and the amount owed call for. Receiving and owing little,
    /// nothing moves: the common case, checked first and inlined into both
    /// callbacks; the moves are out of line (`move_on`). Measured with
    /// bench-models' counts at depth 1: 605 instructions a request as one
    /// function, 536 split.
    #[inline]
    fn settle(&mut self, conn: usize) -> io::Result<()> {
        let c = &self.conns[conn];
        if matches!(c.state, State::Reading(_)) && !c.too_much_owed() {
            return self.post_send(conn);
        }
        self.move_on(conn)
    }

    /// The rare part of [`settle`](Self::settle): every move of the
    /// module doc's table that the amount owed or the sends decide.
    #[inline(never)]
    fn move_on(&mut self, conn: usize) -> io::Result<()> {
        let c = &self.conns[conn];
        if let State::Broken(recv) = c.state {
            // Freed once nothing is in flight: the kernel may still write
            // into what a pending operation owns.
            if recv.is_none() && c.in_flight == 0 {
                debug!("{} dropped", c.peer);
                self.conns.remove(conn);
            }
            return Ok(());
        }
        self.post_send(conn)?;
        let c = &self.conns[conn];
        match c.state {
            State::Reading(_) if c.too_much_owed() => self.stop_reading(conn, State::Paused),
            State::Paused(None) if !c.too_much_owed() => self.arm_recv(conn),
            State::Draining(None) if c.owed.is_empty() && c.in_flight == 0 => {
                shared::net::close_gracefully(&c.stream);
                info!("{} closed", c.peer);
                self.conns.remove(conn);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Hands what is owed to the kernel in one send, unless one is in
    /// flight (replies then gather in `owed` and go in the next).
    fn post_send(&mut self, conn: usize) -> io::Result<()> {
        let c = &mut self.conns[conn];
        if c.in_flight > 0 || c.owed.is_empty() {
            return Ok(());
        }
        // The send owns the bytes now; the connection keeps nothing.
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
        self.submit(Op::Send { conn, buf, sent }, entry).map(drop)
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
        if result < 0 && !matches!(c.state, State::Broken(_)) {
            debug!(
                "{} send failed: {}",
                c.peer,
                io::Error::from_raw_os_error(-result)
            );
            return self.break_off(conn);
        }
        let sent = sent + result.max(0) as usize;
        if sent < buf.len() && !matches!(c.state, State::Broken(_)) {
            // A short send: the rest goes in another.
            return self.send_from(conn, buf, sent);
        }
        // The buffer goes back to the loop's spares, for the next replies
        // of any connection; a large one is let go.
        if buf.capacity() <= KEEP_CAPACITY && self.spare.len() < KEEP_SPARE {
            buf.clear();
            self.spare.push(buf);
        }
        self.settle(conn)
    }

    /// A receive or send failed. Shutting the socket down makes the
    /// operations still in flight on it complete (the armed receive is
    /// cancelled too); the connection, and its descriptor, is freed only
    /// after the last one has.
    fn break_off(&mut self, conn: usize) -> io::Result<()> {
        let _ = self.conns[conn].stream.shutdown(std::net::Shutdown::Both);
        self.stop_reading(conn, State::Broken)?;
        self.settle(conn)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use super::*;

    /// A server on a real ring, to which nothing is ever submitted (the
    /// entries queued stay in the submission queue and go with it), with
    /// lines of at most 16 bytes and one connection whose multishot
    /// receive is armed under the key returned; the client's end too, to
    /// keep the connection open. None where io_uring is not available,
    /// unless IOCP_ACCEPT_REQUIRE_URING=1 (as in the black-box tests).
    fn server_with_a_receive() -> Option<(Server, usize, usize, TcpStream)> {
        let ring = match IoUring::new(8) {
            Ok(ring) => ring,
            Err(e) if std::env::var_os("IOCP_ACCEPT_REQUIRE_URING").is_some_and(|v| v == "1") => {
                panic!("io_uring is required (IOCP_ACCEPT_REQUIRE_URING=1) but unavailable: {e}")
            }
            Err(e) => {
                eprintln!("skipped: io_uring is not available here ({e})");
                return None;
            }
        };
        let bufs = BufRing::register(&ring, 4).expect("buffer ring");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
        let (stream, peer) = listener.accept().expect("accept");
        let mut server = Server {
            ring,
            submissions: Submissions::default(),
            bufs,
            listener,
            callback_map: Slab::new(),
            conns: Slab::new(),
            spare: Vec::new(),
            starved: Vec::new(),
            short_of_buffers: None,
            room: Room {
                conns: 8,
                limit: "8 connections (--max-conns)".to_string(),
            },
            max_line: 16,
            shortage: ShortageLog::default(),
        };
        let conn = server.conns.insert(Conn {
            stream,
            peer,
            state: State::Paused(None),
            partial: Vec::new(),
            owed: Vec::new(),
            in_flight: 0,
        });
        let key = server.callback_map.insert(Op::Recv { conn });
        server.conns[conn].state = State::Reading(key);
        Some((server, conn, key, client))
    }

    /// The flags of a receive completion that names buffer `bid`:
    /// `IORING_CQE_F_BUFFER`, and the buffer id from bit 16 up.
    fn names_buffer(bid: u16) -> u32 {
        (u32::from(bid) << 16) | 1
    }

    /// The operations waiting in `callback_map`, by kind, in key order.
    fn pending(server: &Server) -> Vec<&'static str> {
        server
            .callback_map
            .iter()
            .map(|(_, op)| match op {
                Op::Accept => "accept",
                Op::AcceptPause { .. } => "accept pause",
                Op::Recv { .. } => "receive",
                Op::Send { .. } => "send",
                Op::Cancel => "cancel",
            })
            .collect()
    }

    /// The bytes of the one send queued.
    fn sent(server: &Server) -> Vec<u8> {
        let sends: Vec<_> = server
            .callback_map
            .iter()
            .filter_map(|(_, op)| match op {
                Op::Send { buf, .. } => Some(buf.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(sends.len(), 1, "one send");
        sends[0].clone()
    }

    /// An over-long line in a receive's last completion (`F_MORE` clear:
    /// the kernel ended the receive, as it does when the completion queue
    /// is full): `ERR line too long` is sent and the connection drains,
    /// with no cancel queued. The receive's key was freed with that
    /// completion, and a cancel for it could only find nothing: the slab
    /// hands the freed key to the next operation queued, which was the
    /// cancel itself (`-ENOENT`).
    #[test]
    fn an_over_long_line_in_an_ended_receive_queues_no_cancel() {
        let Some((mut server, conn, key, _client)) = server_with_a_receive() else {
            return;
        };
        // As the loop does for a last completion: its operation is gone
        // from `callback_map` before the callback runs.
        server.callback_map.remove(key);
        // 100 bytes of buffer 0, no newline among them: past 16.
        server
            .on_received(conn, 100, names_buffer(0), false)
            .expect("queued");
        assert_eq!(pending(&server), ["send"]);
        assert_eq!(sent(&server), b"ERR line too long\n");
        assert_eq!(server.conns[conn].state, State::Draining(None));
    }

    /// The same line while the receive is still armed (`F_MORE` set): it is
    /// cancelled, and the connection drains once its last completion comes.
    #[test]
    fn an_over_long_line_in_an_armed_receive_cancels_it() {
        let Some((mut server, conn, key, _client)) = server_with_a_receive() else {
            return;
        };
        server
            .on_received(conn, 100, names_buffer(0), true)
            .expect("queued");
        assert_eq!(pending(&server), ["receive", "cancel", "send"]);
        assert_eq!(sent(&server), b"ERR line too long\n");
        assert_eq!(server.conns[conn].state, State::Draining(Some(key)));
    }
}
