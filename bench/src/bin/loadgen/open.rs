//! `--rate R`: the open loop, as users meet a server.
//!
//! A closed loop (each connection sends its next request when the last
//! reply is in) slows down with the server, and so hides queueing: a server
//! that stalls for 300 ms costs its ten connections ten slow requests,
//! where users who kept arriving would have met thousands. This is Gil
//! Tene's coordinated omission, and wrk2's cure is used here: requests are
//! sent on a fixed schedule, whatever the replies do, and each latency is
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
//! `timerfd` with its timer slack cut to 1 ns, waking within microseconds
//! of the next due time; elsewhere it spins through the last millisecond.
//! How late the generator itself was (due to sent) is measured for every
//! request and reported beside the result: a latency no larger than that is
//! the generator's, not the server's.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::time::{Duration, Instant};

use anyhow::bail;
use mio::{Events, Poll, Token};

use crate::{Args, Tally, exchange, read_in, register, take_replies, write_out};

/// The timer's token; connections use their index.
const TIMER: Token = Token(usize::MAX);

/// How long the loop waits, after the last request was due, for the
/// replies still owed, before it calls them lost.
const DRAIN: Duration = Duration::from_secs(10);

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
    let (request, reply) = exchange(args, thread);
    let (mut poll, mut connections) = register(streams)?;
    let mut timer = Timer::new(&poll)?;
    let measure_from = schedule.start + Duration::from_secs_f64(args.warmup_secs);
    let stop_at = measure_from + Duration::from_secs_f64(args.secs);
    // Each connection's next request: (due, connection, its count so far).
    let mut next: BinaryHeap<Reverse<(Instant, usize, u64)>> = (0..connections.len())
        .map(|i| Reverse((schedule.due(schedule.first + i, 0), i, 0)))
        .collect();
    let mut tally = Tally::new();
    let mut owed = 0u64;
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Every request now due goes out, timed from its due time.
        let now = Instant::now();
        while let Some(&Reverse((due, i, k))) = next.peek() {
            if due > now {
                break;
            }
            next.pop();
            if due >= stop_at {
                continue; // this connection's schedule is over
            }
            let c = &mut connections[i];
            c.out.extend_from_slice(&request);
            c.in_flight.push_back(due);
            owed += 1;
            if due >= measure_from {
                tally.due += 1;
                // Read the clock again: the writes before it in this batch
                // took time too, and this one is sent now.
                let late = Instant::now().duration_since(due).as_micros() as u64;
                let _ = tally.lateness_us.record(late.clamp(1, 60_000_000));
            }
            write_out(c)?;
            let i_all = schedule.first + i;
            next.push(Reverse((schedule.due(i_all, k + 1), i, k + 1)));
        }
        if next.is_empty() && owed == 0 {
            break;
        }
        if now > stop_at + DRAIN {
            bail!("{owed} requests still unanswered {DRAIN:?} after the last was due");
        }
        let wake = next.peek().map(|&Reverse((due, ..))| due);
        let timeout = timer.arm(wake, now)?;
        // A stop and continue (SIGSTOP, SIGCONT) ends the wait with EINTR.
        match poll.poll(&mut events, timeout) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => other?,
        }
        let now = Instant::now();
        for event in events.iter() {
            if event.token() == TIMER {
                timer.fired();
                continue;
            }
            let c = &mut connections[event.token().0];
            if event.is_writable() && !c.out.is_empty() {
                write_out(c)?;
            }
            if !event.is_readable() {
                continue;
            }
            read_in(c, &mut buf)?;
            take_replies(args, c, &reply, |due, ok| {
                owed -= 1;
                tally.all += 1;
                tally.errors += u64::from(!ok);
                if due >= measure_from && due < stop_at {
                    tally.requests += 1;
                    let us = now.duration_since(due).as_micros().max(1) as u64;
                    let _ = tally.latency_us.record(us.min(60_000_000));
                }
                // Replies in the window give the rate achieved.
                if now >= measure_from && now < stop_at {
                    tally.in_window += 1;
                }
            });
        }
    }
    tally.measured = stop_at.saturating_duration_since(measure_from);
    Ok(tally)
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

        use anyhow::Context;
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

    /// Sets the timer for `wake` (none: no request left to send) and
    /// returns the timeout for the wait: none on Linux, where the timer
    /// wakes the wait; elsewhere the time left less a millisecond, and
    /// zero (a spin) within the last one.
    #[cfg(target_os = "linux")]
    fn arm(&mut self, wake: Option<Instant>, now: Instant) -> anyhow::Result<Option<Duration>> {
        use std::os::fd::AsRawFd;

        use anyhow::Context;
        let Some(wake) = wake else {
            // Only replies to wait for: a bounded wait, so that the drain's
            // deadline is seen.
            return Ok(Some(Duration::from_millis(100)));
        };
        // At least 1 ns: a zero value would disarm the timer.
        let left = wake
            .saturating_duration_since(now)
            .max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: left.as_secs() as libc::time_t,
                tv_nsec: left.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `spec` is a live itimerspec for the call's duration; a
        // null old value asks for nothing back.
        if unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) }
            != 0
        {
            return Err(io::Error::last_os_error()).context("timerfd_settime");
        }
        Ok(Some(Duration::from_millis(100)))
    }

    #[cfg(not(target_os = "linux"))]
    fn arm(&mut self, wake: Option<Instant>, now: Instant) -> anyhow::Result<Option<Duration>> {
        let Some(wake) = wake else {
            return Ok(Some(Duration::from_millis(100)));
        };
        let left = wake.saturating_duration_since(now);
        Ok(Some(left.saturating_sub(Duration::from_millis(1))))
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
