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

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Instant;

use anyhow::Context;
use io_uring::types::BufRingEntry;
use io_uring::{IoUring, cqueue, opcode, squeue, types};
use log::{debug, info, warn};
use shared::echo::MAX_OWED;
use shared::limits::Room;
use shared::net::{AcceptError, ShortageLog, classify_accept_error};
use shared::{answer_partial_at_end, answer_read};
use slab::Slab;

use crate::Args;
use crate::uring::{Submissions, is_transient};

/// The buffer group the receives take from.
const BGID: u16 = 0;
/// The size of each provided buffer.
pub const BUF_SIZE: usize = 4096;
/// Send buffers past this size are not kept for reuse.
const KEEP_CAPACITY: usize = 64 * 1024;
/// Spare send buffers kept for reuse, at most: enough for a batch's
/// replies, and a bound on what a burst leaves behind (4 MiB).
const KEEP_SPARE: usize = 64;
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

/// One client's state between completions: no input buffer, only the line
/// still arriving, and the replies not yet handed to a send.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    partial: Vec<u8>,
    owed: Vec<u8>,
    /// The key of its armed receive, if one is armed.
    recv: Option<usize>,
    /// A cancel of that receive is in flight.
    cancelling: bool,
    /// Bytes the send in flight holds (0: no send in flight): owed too,
    /// and counted with `owed` against the bound on owed output.
    in_flight: usize,
    /// In `Server::starved`, waiting to be re-armed after `-ENOBUFS`: a
    /// flag, so that a lookup costs nothing however many are starved.
    starved: bool,
    /// End of input or an over-long line: send what is owed, then close.
    closing: bool,
    /// A receive or send failed: free as soon as nothing is in flight.
    broken: bool,
}

impl Conn {
    /// Replies owed past the bound: stop receiving until they drain. What
    /// the send in flight holds counts, or a client that never reads could
    /// hold a megabyte there and another in `owed`.
    fn too_much_owed(&self) -> bool {
        self.owed.len() + self.in_flight >= MAX_OWED
    }

    /// Should a receive be armed now? Not while closing, broken or owing
    /// too much, nor when one is armed already.
    fn wants_recv(&self) -> bool {
        self.recv.is_none() && !self.closing && !self.broken && !self.too_much_owed()
    }
}

/// The default number of provided buffers: one for every eight connections
/// the server may hold, a power of two from 256 to 4096 (1 to 16 MiB).
/// Idle connections hold none, so this is sized for a burst: when more
/// connections have data at the same instant than there are buffers, the
/// receives past the last buffer end with ENOBUFS and are re-armed once the
/// batch has given its buffers back. That costs a re-arm, never a byte.
fn buffers_for(conns: usize) -> u16 {
    let wanted = (conns / 8).clamp(256, 4096).next_power_of_two();
    u16::try_from(wanted).expect("at most 4096")
}

/// The provided buffer ring: `entries` buffers of [`BUF_SIZE`] bytes in one
/// allocation, and the ring of descriptors the kernel takes them from.
/// Registered once; a buffer goes back (the tail moves on) as soon as the
/// lines in it are framed.
struct BufRing {
    ring: *mut BufRingEntry,
    ring_layout: std::alloc::Layout,
    buffers: Box<[u8]>,
    entries: u16,
    tail: u16,
}

impl BufRing {
    /// Allocates, touches and registers a ring of `entries` buffers.
    fn register(uring: &IoUring, entries: u16) -> anyhow::Result<BufRing> {
        // The ring must be page-aligned.
        let ring_layout = std::alloc::Layout::from_size_align(
            usize::from(entries) * size_of::<BufRingEntry>(),
            4096,
        )
        .context("buffer ring layout")?;
        // SAFETY: the layout has a non-zero size (entries >= 1).
        let ring = unsafe { std::alloc::alloc_zeroed(ring_layout) }.cast::<BufRingEntry>();
        if ring.is_null() {
            anyhow::bail!("cannot allocate the buffer ring");
        }
        // Every page written now, so that the buffers count in the
        // server's baseline memory, not against the first connections.
        let mut buffers = vec![0u8; usize::from(entries) * BUF_SIZE].into_boxed_slice();
        for page in buffers.chunks_mut(4096) {
            page[0] = 1;
        }
        let mut this = BufRing {
            ring,
            ring_layout,
            buffers,
            entries,
            tail: 0,
        };
        for bid in 0..entries {
            this.push(bid);
        }
        this.publish();
        // SAFETY: the ring memory is page-aligned, `entries` long, and lives
        // (with the buffers) as long as this BufRing, which the server keeps
        // until it exits; nothing else writes the descriptors.
        unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(ring as u64, entries, BGID, 0)
        }
        .context("registering the buffer ring (IORING_REGISTER_PBUF_RING, Linux 5.19)")?;
        Ok(this)
    }

    /// The bytes of buffer `bid`.
    fn buffer(&self, bid: u16, len: usize) -> &[u8] {
        let at = usize::from(bid) * BUF_SIZE;
        &self.buffers[at..at + len]
    }

    /// Queues buffer `bid` for the kernel again (seen once [`publish`]ed).
    fn push(&mut self, bid: u16) {
        let slot = usize::from(self.tail & (self.entries - 1));
        let addr = self.buffers[usize::from(bid) * BUF_SIZE..].as_ptr() as u64;
        // SAFETY: `slot` is within the ring's `entries` descriptors, which
        // the kernel reads only up to the published tail.
        let entry = unsafe { &mut *self.ring.add(slot) };
        entry.set_addr(addr);
        entry.set_len(BUF_SIZE as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the pushed buffers visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail field lives in the first descriptor of the ring,
        // which is valid and aligned for an atomic u16; the kernel reads it
        // with acquire ordering.
        let tail = unsafe { &*BufRingEntry::tail(self.ring).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout in `register`. The ring is
        // dropped after the io_uring (field order in `Server`), so the
        // kernel no longer reads it.
        unsafe { std::alloc::dealloc(self.ring.cast(), self.ring_layout) }
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
        server.submissions.flush(&mut server.ring);
        match server.wait() {
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
        if server.starved.is_empty() {
            // A burst is over once a batch needs no re-arm, a second or
            // more after it began: shorter lulls belong to the same burst,
            // so that a ring too small for steady load logs once a second.
            if let Some(short) = server
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
            continue;
        }
        if server.short_of_buffers.is_none() {
            warn!(
                "out of provided buffers: receives that find none are re-armed once their \
                 batch gives buffers back (said once per burst)"
            );
        }
        let mut rearmed = 0;
        for conn in std::mem::take(&mut server.starved) {
            // The key may have been freed, or even reused, in this batch:
            // only a connection still flagged is the one that starved. One
            // that owes too much stays unarmed; its sends re-arm it once
            // they drain (`apply_backpressure`).
            let Some(c) = server.conns.get_mut(conn).filter(|c| c.starved) else {
                continue;
            };
            c.starved = false;
            if c.wants_recv() {
                rearmed += 1;
                server.arm_recv(conn)?;
            }
        }
        let short = server.short_of_buffers.get_or_insert(ShortOfBuffers {
            since: Instant::now(),
            rearmed: 0,
        });
        short.rearmed += rearmed;
    }
}

/// A burst that found the provided buffers all in use, for the log.
struct ShortOfBuffers {
    since: Instant,
    rearmed: u64,
}

impl Server {
    /// Step 3: submits what is queued and waits for one completion.
    ///
    /// Most sends complete while this call submits them, so it often
    /// returns at once with only those, and the loop enters again to wait
    /// for the next request: two calls for such a batch. Waiting instead
    /// for one completion more than the sends just queued, with
    /// `min_wait_usec` (Linux 6.12) so that a send stuck behind a client
    /// that does not read holds nothing back, makes it one call; but the
    /// kernel then arms a timer and sleeps where this call would return,
    /// and that costs more than the call it saves. Measured on Linux 6.18
    /// at depth 1 (server CPU per request, median of 5 rounds): +16% at 10
    /// connections and +5% at 100, for 12% fewer calls at 10.
    fn wait(&mut self) -> io::Result<()> {
        self.ring.submit_and_wait(1).map(drop)
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
    /// does that): arm it again, after 100 ms when out of descriptors.
    fn on_accepted(&mut self, result: i32, more: bool) -> io::Result<()> {
        if result < 0 {
            let e = io::Error::from_raw_os_error(-result);
            return match classify_accept_error(&e) {
                AcceptError::WouldBlock | AcceptError::Skip => {
                    debug!("accept: {e}");
                    if more { Ok(()) } else { self.post_accept() }
                }
                AcceptError::OutOfResources | AcceptError::Fatal => {
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
                    self.submit(Op::AcceptPause { _timespec: pause }, entry)
                        .map(drop)
                }
            };
        }
        if !more {
            self.post_accept()?;
        }
        // SAFETY: a successful accept completion's result is a new
        // descriptor that nothing else owns.
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
            partial: Vec::new(),
            owed: Vec::new(),
            recv: None,
            cancelling: false,
            in_flight: 0,
            starved: false,
            closing: false,
            broken: false,
        });
        self.arm_recv(conn)
    }

    /// Arms the connection's one multishot receive, taking from the ring.
    fn arm_recv(&mut self, conn: usize) -> io::Result<()> {
        let fd = types::Fd(self.conns[conn].stream.as_raw_fd());
        let entry = opcode::RecvMulti::new(fd, BGID).build();
        let key = self.submit(Op::Recv { conn }, entry)?;
        self.conns[conn].recv = Some(key);
        Ok(())
    }

    /// A receive completed: `result` bytes in the buffer its flags name.
    /// The lines are framed and answered from there and the buffer goes
    /// straight back to the ring; only an unfinished line is copied out.
    fn on_received(&mut self, conn: usize, result: i32, flags: u32, more: bool) -> io::Result<()> {
        let bid = cqueue::buffer_select(flags);
        let c = &mut self.conns[conn];
        if !more {
            c.recv = None;
            c.cancelling = false;
        }
        if result > 0 {
            let bid = bid.expect("a receive with data names its buffer");
            if !c.broken && !c.closing {
                // The replies go into one of the loop's send buffers, taken
                // from `spare` when the connection holds none and handed
                // back when its send completes: no allocation per request,
                // and no buffer held by an idle connection.
                if c.owed.capacity() == 0 {
                    c.owed = self.spare.pop().unwrap_or_default();
                }
                let data = self.bufs.buffer(bid, result as usize);
                if answer_read(&mut c.partial, data, self.max_line, b"", &mut c.owed).is_err() {
                    c.closing = true;
                }
                if c.owed.is_empty() {
                    // Only part of a line came: the buffer goes back (or,
                    // past the spares kept, is let go).
                    let unused = std::mem::take(&mut c.owed);
                    if self.spare.len() < KEEP_SPARE {
                        self.spare.push(unused);
                    }
                }
            }
            self.bufs.push(bid);
        } else if let Some(bid) = bid {
            self.bufs.push(bid);
        }
        let c = &mut self.conns[conn];
        if c.broken {
            return self.free_if_idle(conn);
        }
        match result {
            0 => {
                // End of stream: the unterminated last fragment is answered
                // too, unless the connection is already closing. After `ERR
                // line too long` nothing more is owed, least of all the
                // rejected line.
                if !c.closing {
                    answer_partial_at_end(&mut c.partial, b"", &mut c.owed);
                }
                c.closing = true;
            }
            // The ring ran dry: nothing was lost (the data waits in the
            // socket), and the receive has ended. Re-armed at the end of
            // this batch, once its buffers are back; not at once, which
            // would only fail again.
            n if n == -libc::ENOBUFS && !c.closing && c.recv.is_none() && !c.starved => {
                c.starved = true;
                self.starved.push(conn);
            }
            n if n == -libc::ENOBUFS => {}
            n if n == -libc::ECANCELED => {}
            n if n < 0 => {
                debug!(
                    "{} receive failed: {}",
                    c.peer,
                    io::Error::from_raw_os_error(-n)
                );
                return self.break_off(conn);
            }
            // Data (answered above). If the receive ended without an error
            // (the kernel may end a multishot receive at any time), it is
            // armed again below, unless back-pressure says otherwise.
            _ => {}
        }
        self.settle(conn)
    }

    /// After a completion: sends what is owed, stops or restarts receiving,
    /// and closes the connection once it is done. Inlined into both
    /// callbacks, with the rare cases kept out of line.
    #[inline]
    fn settle(&mut self, conn: usize) -> io::Result<()> {
        self.post_send(conn)?;
        let c = &self.conns[conn];
        // Receiving, as it should: the common case, with nothing to change.
        if c.recv.is_some() && !c.closing && !c.too_much_owed() {
            return Ok(());
        }
        self.change_course(conn)
    }

    /// The rare part of [`Server::settle`].
    #[inline(never)]
    fn change_course(&mut self, conn: usize) -> io::Result<()> {
        self.apply_backpressure(conn)?;
        self.close_if_done(conn)
    }

    /// Stops receiving while a megabyte is owed (and when closing), and
    /// starts again once it drains. The armed receive is cancelled: its
    /// last completion, `-ECANCELED` without `F_MORE`, comes after any data
    /// already received, which is still answered. Letting it end by itself
    /// would not do: a multishot receive does not end while data keeps
    /// coming.
    fn apply_backpressure(&mut self, conn: usize) -> io::Result<()> {
        let c = &self.conns[conn];
        let stop = c.closing || c.too_much_owed();
        match c.recv {
            Some(recv) if stop && !c.cancelling => {
                let entry = opcode::AsyncCancel::new(recv as u64).build();
                self.conns[conn].cancelling = true;
                self.submit(Op::Cancel, entry).map(drop)
            }
            // A starved connection is re-armed at the end of the batch.
            None if c.wants_recv() && !c.starved => self.arm_recv(conn),
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
        if c.broken {
            return self.free_if_idle(conn);
        }
        if result < 0 {
            debug!(
                "{} send failed: {}",
                c.peer,
                io::Error::from_raw_os_error(-result)
            );
            return self.break_off(conn);
        }
        let sent = sent + result as usize;
        if sent < buf.len() {
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

    /// Closes a finished connection once everything owed was sent and its
    /// receive has ended.
    fn close_if_done(&mut self, conn: usize) -> io::Result<()> {
        let c = &self.conns[conn];
        if c.closing && c.owed.is_empty() && c.in_flight == 0 && c.recv.is_none() {
            shared::net::close_gracefully(&c.stream);
            info!("{} closed", c.peer);
            self.conns.remove(conn);
        }
        Ok(())
    }

    /// A receive or send failed. Shutting the socket down makes the
    /// operations still in flight on it complete; the connection (and its
    /// descriptor) is freed only after the last one has.
    fn break_off(&mut self, conn: usize) -> io::Result<()> {
        let c = &mut self.conns[conn];
        c.broken = true;
        let _ = c.stream.shutdown(std::net::Shutdown::Both);
        if let Some(recv) = c.recv
            && !c.cancelling
        {
            c.cancelling = true;
            let entry = opcode::AsyncCancel::new(recv as u64).build();
            self.submit(Op::Cancel, entry)?;
        }
        self.free_if_idle(conn)
    }

    fn free_if_idle(&mut self, conn: usize) -> io::Result<()> {
        let c = &self.conns[conn];
        if c.recv.is_none() && c.in_flight == 0 {
            debug!("{} dropped", c.peer);
            self.conns.remove(conn);
        }
        Ok(())
    }
}
