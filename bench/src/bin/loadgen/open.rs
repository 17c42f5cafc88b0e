//! `--rate R`: the open loop, as users meet a server.
//!
//! A closed loop (each connection sends its next request when the last
//! reply is in) slows down with the server, and so hides queueing: a server
//! that stalls for 300 ms costs its ten connections ten slow requests,
//! where users who kept arriving would have met thousands. This is Gil
//! Tene's coordinated omission, and wrk2's cure is used here: requests fall
//! due on a fixed schedule, whatever the replies do, and each latency is
//! counted from the moment its request was *due*, not from when it was
//! sent. A connection that falls behind (the generator itself was held up)
//! sends its overdue requests as soon as it can, each still timed from its
//! own due time.
//!
//! The schedule: R requests a second in all, spread evenly over the
//! connections, each connection on a fixed interval (`conns / R`), their
//! phases staggered so that one request falls due every `1 / R` seconds.
//! Timers that round to whole milliseconds (epoll's, mio's) would add up to
//! 1 ms to every latency at low rates, so on Linux the loop sleeps on a
//! `timerfd` with its timer slack cut to 1 ns, armed at the next due time
//! itself (an absolute time), and wakes within microseconds of it;
//! elsewhere it spins through the last millisecond.
//!
//! # Pipelined, or a few in flight
//!
//! By default a request is written when it falls due, pipelined behind
//! those its connection still waits for. A server that falls behind then
//! finds a backlog on each connection, reads it in one go and answers it in
//! one write: it carries the whole rate, at a latency cost, by batching that
//! users never offer it. Clients that wait for each reply (browsers,
//! HTTP/1.1 without pipelining, database drivers, wrk2) send one request,
//! and the next only when its reply is in. `--in-flight N` does the same:
//! at most N requests unanswered on a connection, and one that falls due
//! while N are waits in the generator, in order, is sent when a reply frees
//! a slot, and is still timed from its due time. The rate a server carries
//! is then bounded by connections × N / round trip, and a server slow to
//! come back to each connection carries less, as it would for those users.
//!
//! When the measured window ends, requests still waiting in the generator
//! are not sent. Each goes into the latency histogram as the time from its
//! due time to the window's end, the least its user would have waited, and
//! is counted (`unsent`): a server far too slow for the schedule is given
//! a figure, where waiting for all of them would never end. The requests
//! already in flight are answered in the drain, as in the pipelined mode.
//!
//! # The generator's own timing
//!
//! A latency includes the generator's own delays, so both are measured,
//! from the window's start on (the drain included), and reported beside
//! the latency:
//!
//! - **Sending** (`late_p99_us`, `late_max_us`), for every request
//!   written: from when it could be sent to when it was. That is its due
//!   time, or, for one that waited for a slot, the read of the reply that
//!   freed it: the wait before is the server's doing, and is in the
//!   latency, not here.
//! - **Reading** (`read_late_p99_us`, `read_late_max_us`; Linux), for every
//!   read that completes a reply: every socket has `SO_TIMESTAMPNS` on, so
//!   each read brings the kernel's receive time of the newest segment in
//!   it, and the gap runs from there to the generator's clock reading just
//!   after the read. Elsewhere the kernel's time is not read and the gap is
//!   not reported.
//!
//! Each reply is timed by the clock read just after the read that completed
//! it, not once for a batch of events: a reply read late in a batch is not
//! timed short.
//!
//! The rule for whoever reads the figures: a step in which the generator
//! was late to send or to read (either p99 past the slack allowed, 200 µs
//! in bench-models) measured the generator as much as the server: it is
//! generator-bound, not the server's figure. A latency no larger than the
//! generator's lateness is the generator's resolution, not the server's.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Poll, Token};

use crate::{Args, Conn, Tally, exchange, register, take_replies, write_out};

/// The timer's token; connections use their index.
const TIMER: Token = Token(usize::MAX);

/// How long the loop waits, after the window's end, for the replies still
/// owed, before it calls them lost.
const DRAIN: Duration = Duration::from_secs(10);

/// The longest wait for events, so that the drain's deadline is seen even
/// when nothing happens.
const TICK: Duration = Duration::from_millis(100);

/// When this thread's connections start, and how their requests are spread.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// The moment the first request of all falls due (every thread's).
    pub start: Instant,
    /// Requests per second, all threads together.
    pub rate: f64,
    /// Connections, all threads together.
    pub conns: usize,
    /// The index, among all, of this thread's first connection.
    pub first: usize,
}

impl Schedule {
    /// When connection `i` (of all) sends its `k`-th request: every
    /// `conns / rate` seconds, starting `i / rate` seconds in.
    fn due(&self, i: usize, k: u64) -> Instant {
        let secs = (i as f64 + k as f64 * self.conns as f64) / self.rate;
        self.start + Duration::from_secs_f64(secs)
    }
}

/// Drives `streams` on the schedule until the measured window has passed
/// and every request sent has its reply.
pub fn drive(
    args: &Args,
    streams: Vec<std::net::TcpStream>,
    schedule: Schedule,
    thread: usize,
) -> anyhow::Result<Tally> {
    let (mut poll, connections) = register(streams)?;
    let clocks = Clocks::read();
    let mut timer = Timer::new(&poll)?;
    let mut run = Run::new(args, schedule, connections, thread)?;
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        run.send_due()?;
        if !run.cut && Instant::now() >= run.stop_at {
            run.cut_waiting();
        }
        if run.cut && run.next.is_empty() && run.owed == 0 {
            break;
        }
        if Instant::now() > run.stop_at + DRAIN {
            bail!(
                "{} requests still unanswered {DRAIN:?} after the window ended",
                run.owed
            );
        }
        let timeout = timer.arm(run.wake(), &clocks)?;
        // A stop and continue (SIGSTOP, SIGCONT) ends the wait with EINTR.
        match poll.poll(&mut events, timeout) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => other?,
        }
        for event in events.iter() {
            if event.token() == TIMER {
                timer.fired();
                continue;
            }
            let i = event.token().0;
            if event.is_writable() && !run.lines[i].conn.out.is_empty() {
                write_out(&mut run.lines[i].conn)?;
            }
            if event.is_readable() {
                run.read(i, &mut buf, &clocks)?;
            }
        }
    }
    run.tally.measured = run.stop_at.saturating_duration_since(run.measure_from);
    Ok(run.tally)
}

/// One thread's open loop: its connections, what is due and what waits.
struct Run<'a> {
    args: &'a Args,
    schedule: Schedule,
    request: Vec<u8>,
    reply: Vec<u8>,
    lines: Vec<Line>,
    /// Each connection's next request: (due, connection, its count so far).
    /// Only requests due before the window's end are put here.
    next: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    /// Requests in flight on a connection at most: `--in-flight`, or no
    /// limit (pipelined).
    cap: usize,
    measure_from: Instant,
    stop_at: Instant,
    /// The window has ended, and what still waited was dropped.
    cut: bool,
    /// Requests written and not yet answered, on every connection.
    owed: u64,
    tally: Tally,
}

/// A connection of the open loop.
struct Line {
    conn: Conn,
    /// Due times of the requests waiting in the generator for a slot
    /// (`--in-flight`), oldest first.
    waiting: VecDeque<Instant>,
    /// When each request in flight was written, beside the due times
    /// `conn` keeps, oldest first: its round trip starts there.
    written: VecDeque<Instant>,
}

impl<'a> Run<'a> {
    fn new(
        args: &'a Args,
        schedule: Schedule,
        connections: Vec<Conn>,
        thread: usize,
    ) -> anyhow::Result<Run<'a>> {
        let (request, reply) = exchange(args, thread);
        let measure_from = schedule.start + Duration::from_secs_f64(args.warmup_secs);
        let stop_at = measure_from + Duration::from_secs_f64(args.secs);
        let lines = connections
            .into_iter()
            .map(|conn| {
                stamp_receipts(&conn.stream).context("SO_TIMESTAMPNS")?;
                Ok(Line {
                    conn,
                    waiting: VecDeque::new(),
                    written: VecDeque::new(),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let next = (0..lines.len())
            .map(|i| (schedule.due(schedule.first + i, 0), i))
            .filter(|&(due, _)| due < stop_at)
            .map(|(due, i)| Reverse((due, i, 0)))
            .collect();
        Ok(Run {
            args,
            schedule,
            request,
            reply,
            lines,
            next,
            cap: args.in_flight.map_or(usize::MAX, |n| n as usize),
            measure_from,
            stop_at,
            cut: false,
            owed: 0,
            tally: Tally::new(),
        })
    }

    /// Every request now due is sent, or, where its connection has as many
    /// in flight as allowed (or others already wait), waits behind them.
    fn send_due(&mut self) -> anyhow::Result<()> {
        let now = Instant::now();
        while let Some(&Reverse((due, i, k))) = self.next.peek() {
            if due > now {
                break;
            }
            self.next.pop();
            let after = self.schedule.due(self.schedule.first + i, k + 1);
            if after < self.stop_at {
                self.next.push(Reverse((after, i, k + 1)));
            }
            let measured = due >= self.measure_from;
            self.tally.due += u64::from(measured);
            let line = &mut self.lines[i];
            if line.conn.in_flight.len() >= self.cap || !line.waiting.is_empty() {
                line.waiting.push_back(due);
                self.tally.waited += u64::from(measured);
                continue;
            }
            self.send(i, due, due)?;
        }
        Ok(())
    }

    /// Writes connection `i`'s request that fell due at `due` and could be
    /// sent from `ready` on (its due time, or the read that freed its slot):
    /// the time from `ready` to now is the generator's lateness.
    fn send(&mut self, i: usize, due: Instant, ready: Instant) -> anyhow::Result<()> {
        let line = &mut self.lines[i];
        line.conn.out.extend_from_slice(&self.request);
        line.conn.in_flight.push_back(due);
        // The clock is read again for each request: the writes before it
        // in this batch took time too, and this one is sent now.
        let now = Instant::now();
        line.written.push_back(now);
        self.owed += 1;
        if now >= self.measure_from {
            record(
                &mut self.tally.lateness_us,
                now.saturating_duration_since(ready),
            );
        }
        write_out(&mut line.conn)
    }

    /// Reads connection `i` one read at a time, until the socket is empty.
    /// The replies a read completes are timed by the clock read just after
    /// it, and each slot they free sends the oldest request waiting, unless
    /// the window is over.
    fn read(&mut self, i: usize, buf: &mut [u8], clocks: &Clocks) -> anyhow::Result<()> {
        loop {
            let line = &mut self.lines[i];
            let (n, received) = match recv(&mut line.conn.stream, buf, clocks) {
                Ok((0, _)) => bail!("the server closed a connection"),
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("reading replies"),
            };
            let now = Instant::now();
            line.conn.inbox.extend_from_slice(&buf[..n]);
            let (tally, owed, written) = (&mut self.tally, &mut self.owed, &mut line.written);
            let (measure_from, stop_at) = (self.measure_from, self.stop_at);
            let mut replies = 0;
            take_replies(self.args, &mut line.conn, &self.reply, |due, ok| {
                let sent = written.pop_front().expect("a write for each request");
                *owed -= 1;
                replies += 1;
                tally.all += 1;
                tally.errors += u64::from(!ok);
                if due >= measure_from {
                    tally.requests += 1;
                    record(&mut tally.latency_us, now.saturating_duration_since(due));
                }
                // Replies in the window give the rate achieved, and the
                // round trips that bound it.
                if now >= measure_from && now < stop_at {
                    tally.in_window += 1;
                    record(
                        &mut tally.round_trip_us,
                        now.saturating_duration_since(sent),
                    );
                }
            });
            if replies > 0
                && now >= self.measure_from
                && let Some(received) = received
            {
                record(
                    &mut self.tally.read_lateness_us,
                    now.saturating_duration_since(received),
                );
            }
            while now < self.stop_at
                && self.lines[i].conn.in_flight.len() < self.cap
                && let Some(due) = self.lines[i].waiting.pop_front()
            {
                self.send(i, due, now)?;
            }
        }
    }

    /// The window is over: the requests still waiting in the generator are
    /// not sent. Each counts as having waited until the window's end, the
    /// least its user would have waited; more would be a guess.
    fn cut_waiting(&mut self) {
        self.cut = true;
        for line in &mut self.lines {
            for due in line.waiting.drain(..) {
                if due >= self.measure_from {
                    self.tally.unsent += 1;
                    record(
                        &mut self.tally.latency_us,
                        self.stop_at.saturating_duration_since(due),
                    );
                }
            }
        }
    }

    /// When the loop must wake next: the next due time, or the window's
    /// end if nothing else falls due before it; none once it has passed.
    fn wake(&self) -> Option<Instant> {
        match self.next.peek() {
            Some(&Reverse((due, ..))) => Some(due),
            None => (!self.cut).then_some(self.stop_at),
        }
    }
}

/// Records `d` in whole microseconds, within the histograms' bounds (1 µs
/// to 60 s).
fn record(h: &mut Histogram<u64>, d: Duration) {
    let _ = h.record((d.as_micros() as u64).clamp(1, 60_000_000));
}

/// The kernel's clocks tied to `Instant`, by one reading of each taken
/// together. On Linux std's `Instant` is `CLOCK_MONOTONIC`, but it offers
/// no way to turn one into the `timespec` the kernel takes, so the offset
/// from this reading is carried instead. The kernel stamps what it receives
/// with `CLOCK_REALTIME`, which a clock step (NTP, by hand) moves against
/// `Instant`: a gap measured across one is wrong by the step, and one that
/// comes out below zero is taken as zero.
#[cfg(target_os = "linux")]
struct Clocks {
    at: Instant,
    /// `CLOCK_MONOTONIC` and `CLOCK_REALTIME` at `at`, each from its zero.
    monotonic: Duration,
    realtime: Duration,
}

#[cfg(target_os = "linux")]
impl Clocks {
    fn read() -> Clocks {
        fn clock(id: libc::clockid_t) -> Duration {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: clock_gettime writes one timespec into `ts`, live on
            // this stack; both clocks asked for exist on every Linux.
            unsafe { libc::clock_gettime(id, &mut ts) };
            Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
        }
        let monotonic = clock(libc::CLOCK_MONOTONIC);
        let at = Instant::now();
        let realtime = clock(libc::CLOCK_REALTIME);
        Clocks {
            at,
            monotonic,
            realtime,
        }
    }

    /// `t` on `CLOCK_MONOTONIC`, for an absolute timer.
    fn monotonic(&self, t: Instant) -> libc::timespec {
        let on_clock = match t.checked_duration_since(self.at) {
            Some(ahead) => self.monotonic + ahead,
            None => self.monotonic.saturating_sub(self.at - t),
        };
        // A zero would disarm the timer.
        let on_clock = on_clock.max(Duration::from_nanos(1));
        libc::timespec {
            tv_sec: on_clock.as_secs() as libc::time_t,
            tv_nsec: on_clock.subsec_nanos() as libc::c_long,
        }
    }

    /// The `Instant` of a `CLOCK_REALTIME` stamp from the kernel.
    fn realtime_instant(&self, ts: &libc::timespec) -> Option<Instant> {
        let stamp = Duration::new(
            u64::try_from(ts.tv_sec).ok()?,
            u32::try_from(ts.tv_nsec).ok()?,
        );
        match stamp.checked_sub(self.realtime) {
            Some(after) => self.at.checked_add(after),
            None => self.at.checked_sub(self.realtime - stamp),
        }
    }
}

/// Elsewhere nothing is read from the kernel's clocks.
#[cfg(not(target_os = "linux"))]
struct Clocks;

#[cfg(not(target_os = "linux"))]
impl Clocks {
    fn read() -> Clocks {
        Clocks
    }
}

/// Asks the kernel to stamp every segment `stream` receives with its
/// receive time, handed to each read (`SO_TIMESTAMPNS`). While one socket
/// asks, the kernel stamps every packet it receives, the server's too: a
/// clock read each, tens of nanoseconds beside a loopback round trip's tens
/// of microseconds.
#[cfg(target_os = "linux")]
fn stamp_receipts(stream: &TcpStream) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    crate::switch_on(stream.as_raw_fd(), libc::SOL_SOCKET, libc::SO_TIMESTAMPNS)
}

#[cfg(not(target_os = "linux"))]
fn stamp_receipts(_stream: &TcpStream) -> io::Result<()> {
    Ok(())
}

/// One read from `stream` into `buf`: how many bytes, and when the kernel
/// received them. mio has no call for a control message, so this is
/// `recvmsg` on the raw descriptor. TCP hands over the stamp of the newest
/// segment the read took in: older bytes in the same read waited longer
/// than it says, so the gap it gives is a lower bound.
#[cfg(target_os = "linux")]
fn recv(
    stream: &mut TcpStream,
    buf: &mut [u8],
    clocks: &Clocks,
) -> io::Result<(usize, Option<Instant>)> {
    use std::os::fd::AsRawFd;
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for one control message with a timespec in it, and then some;
    // u64s, so that it is aligned as a cmsghdr must be.
    let mut control = [0u64; 8];
    // SAFETY: a msghdr of zeros is valid: no name, no buffers, no flags.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control) as _;
    // SAFETY: `msg` points at one iovec over `buf` and at `control`, all
    // live and writable for their stated lengths through the call; the
    // descriptor is the live socket `stream` owns.
    let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &raw mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut received = None;
    // SAFETY: `msg` is as recvmsg left it, its control length within
    // `control`; the CMSG macros walk only the messages it holds.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&raw const msg) };
    while !cmsg.is_null() {
        // SAFETY: a non-null header CMSG_FIRSTHDR or CMSG_NXTHDR gave,
        // inside `control`.
        let header = unsafe { &*cmsg };
        if header.cmsg_level == libc::SOL_SOCKET && header.cmsg_type == libc::SCM_TIMESTAMPNS {
            // SAFETY: an SCM_TIMESTAMPNS message carries one timespec,
            // perhaps unaligned after its header.
            let ts: libc::timespec =
                unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
            received = clocks.realtime_instant(&ts);
        }
        // SAFETY: as for CMSG_FIRSTHDR.
        cmsg = unsafe { libc::CMSG_NXTHDR(&raw const msg, cmsg) };
    }
    Ok((n as usize, received))
}

#[cfg(not(target_os = "linux"))]
fn recv(
    stream: &mut TcpStream,
    buf: &mut [u8],
    _clocks: &Clocks,
) -> io::Result<(usize, Option<Instant>)> {
    use std::io::Read;
    stream.read(buf).map(|n| (n, None))
}

/// Wakes the loop at a request's due time, to within microseconds.
struct Timer {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::OwnedFd,
}

impl Timer {
    /// On Linux a `timerfd` (`CLOCK_MONOTONIC`, as `Instant` is), and the
    /// thread's timer slack cut from 50 µs to 1 ns, so the kernel fires it
    /// when asked rather than batching it with other timers.
    #[cfg(target_os = "linux")]
    fn new(poll: &Poll) -> anyhow::Result<Timer> {
        use std::os::fd::{AsRawFd, FromRawFd};

        use mio::Interest;
        // SAFETY: prctl(PR_SET_TIMERSLACK) takes a number, no pointers.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1) };
        // SAFETY: timerfd_create takes flags, no pointers.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error()).context("timerfd_create");
        }
        // SAFETY: a descriptor timerfd_create just returned, owned here.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        poll.registry().register(
            &mut mio::unix::SourceFd(&fd.as_raw_fd()),
            TIMER,
            Interest::READABLE,
        )?;
        Ok(Timer { fd })
    }

    #[cfg(not(target_os = "linux"))]
    fn new(_poll: &Poll) -> anyhow::Result<Timer> {
        Ok(Timer {})
    }

    /// Sets the timer for `wake` (none: nothing left to wake for) and
    /// returns the timeout for the wait: [`TICK`] on Linux, where the timer
    /// wakes the wait; elsewhere the time left less a millisecond, and
    /// zero (a spin) within the last one.
    ///
    /// The timer is set at `wake` itself, an absolute time: one set to an
    /// interval from a clock read before the loop's writes would fire late
    /// by as long as those writes took.
    #[cfg(target_os = "linux")]
    fn arm(&mut self, wake: Option<Instant>, clocks: &Clocks) -> anyhow::Result<Option<Duration>> {
        use std::os::fd::AsRawFd;

        let Some(wake) = wake else {
            return Ok(Some(TICK));
        };
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: clocks.monotonic(wake),
        };
        // SAFETY: `spec` is a live itimerspec for the call's duration; a
        // null old value asks for nothing back.
        let rc = unsafe {
            libc::timerfd_settime(
                self.fd.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error()).context("timerfd_settime");
        }
        Ok(Some(TICK))
    }

    #[cfg(not(target_os = "linux"))]
    fn arm(&mut self, wake: Option<Instant>, _clocks: &Clocks) -> anyhow::Result<Option<Duration>> {
        let Some(wake) = wake else {
            return Ok(Some(TICK));
        };
        let left = wake.saturating_duration_since(Instant::now());
        Ok(Some(
            left.saturating_sub(Duration::from_millis(1)).min(TICK),
        ))
    }

    /// Empties the timer's count, so that it reads as not ready again.
    fn fired(&mut self) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let mut expirations = 0u64;
            // SAFETY: reads at most 8 bytes into a live u64.
            unsafe {
                libc::read(self.fd.as_raw_fd(), (&raw mut expirations).cast(), 8);
            }
        }
    }
}
