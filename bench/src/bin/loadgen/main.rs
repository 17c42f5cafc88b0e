//! A load generator for the io-models servers: many connections driven by
//! one `mio` event loop per thread, every reply checked byte for byte.
//!
//! Each connection keeps `--depth` requests in flight: it writes them, and
//! sends one more for every reply it reads. Latency is timed per request,
//! from its write to the end of its reply, into an HDR histogram. Run for a
//! time (`--secs`, after `--warmup-secs`) or for a fixed number of requests
//! (`--requests`, for counting system calls and instructions per request).
//!
//! `--rate R` runs an open loop instead (`open.rs`): R requests a second
//! on a fixed schedule, whatever the replies do, each latency counted from
//! the moment its request was due, so that queueing in the server shows
//! (coordinated omission corrected, as wrk2 does). `--in-flight N` lets
//! each connection have at most N requests unanswered, the rest waiting in
//! the generator, as clients that wait for each reply do; without it the
//! open loop pipelines. How late the generator itself was, to send and to
//! read, is reported beside the latency.
//!
//! `--idle N` first opens N more connections in bulk, each making one round
//! trip, and holds them silent beside the measured ones: the articles'
//! "many connections, few of them busy" (`idle.rs`). `--burst` ends the run
//! with every one of them sending a line at the same instant.
//!
//! ```text
//! cargo run --release -p select-echo -- --addr 127.0.0.1:8093     # terminal 1
//! cargo run --release -p bench --bin loadgen -- --addr 127.0.0.1:8093 --conns 100 --depth 16
//! cargo run --release -p bench --bin loadgen -- --addr 127.0.0.1:8093 --idle 900 --burst
//! cargo run --release -p bench --bin loadgen -- --addr 127.0.0.1:8093 --rate 20000
//! ```

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

mod idle;
mod open;

#[derive(Parser, Debug, Clone)]
#[command(about = "Drive an io-models server with many connections and check every reply")]
struct Args {
    /// Server address
    #[arg(long)]
    addr: SocketAddr,
    /// Active connections
    #[arg(long, default_value_t = 10)]
    conns: usize,
    /// Request size in bytes, newline included (line protocol)
    #[arg(long, default_value_t = 62, value_parser = clap::value_parser!(u32).range(1..))]
    size: u32,
    /// Requests in flight per connection in the closed loop (without
    /// --rate), pipelined: each reply sends one more. The open loop's
    /// counterpart is --in-flight
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    depth: u32,
    /// Requests per second in all, sent on a fixed schedule whatever the
    /// replies do (an open loop), each latency counted from when its request
    /// was due. Without it, each connection sends its next request when the
    /// last reply is in (a closed loop)
    #[arg(long, conflicts_with_all = ["depth", "requests"], value_parser = rate)]
    rate: Option<f64>,
    /// With --rate: at most N requests in flight per connection; a request
    /// that falls due while N are unanswered waits in the generator, in
    /// order, and is still timed from when it was due. 1 is how browsers,
    /// database drivers and wrk2 behave. Requests still waiting when the
    /// window ends are not sent; each counts as having waited until then.
    /// Without it, every request is sent when due, pipelined behind those
    /// still unanswered. (--depth is the closed loop's: there each reply
    /// sends the next, so nothing waits)
    #[arg(long, value_name = "N", requires = "rate", value_parser = clap::value_parser!(u32).range(1..))]
    in_flight: Option<u32>,
    /// Seconds to measure
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Seconds to run before measuring
    #[arg(long, default_value_t = 1.0)]
    warmup_secs: f64,
    /// Stop after this many requests in all (no warm-up); overrides --secs
    #[arg(long)]
    requests: Option<u64>,
    /// Extra connections opened first, many at once, each making one round
    /// trip, then held silent while the active ones are measured
    #[arg(long, default_value_t = 0)]
    idle: usize,
    /// Loopback source addresses to spread connections over, 127.0.0.1 to
    /// 127.0.0.N, each with its own ephemeral ports (default: one for every
    /// 16 000 connections)
    #[arg(long, value_parser = shared::cli::in_range(1u8, 254))]
    sources: Option<u8>,
    /// Seconds to hold the idle connections silent before the active ones
    /// start, after printing a line that says how many are held
    #[arg(long, default_value_t = 0.0)]
    hold_secs: f64,
    /// After the measured run, every idle connection sends one line at the
    /// same instant, and every reply is checked
    #[arg(long)]
    burst: bool,
    /// What the server puts before each reply's newline (`_SB` for selectors-echo)
    #[arg(long, default_value = "")]
    suffix: String,
    /// Protocol: echo lines, or keep-alive `GET /`
    #[arg(long, value_enum, default_value_t = Proto::Line)]
    proto: Proto,
    /// Event-loop threads the connections are spread over
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    threads: u16,
    /// Print the result as one JSON object
    #[arg(long)]
    json: bool,
}

/// A rate: more than 0, at most 10 million requests a second.
fn rate(s: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|r| *r > 0.0 && *r <= 1e7)
        .ok_or_else(|| "must be a number of requests a second, more than 0".into())
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Line,
    Http,
}

/// What one thread measured.
struct Tally {
    /// Requests measured and answered: the closed loop's in the window, the
    /// open loop's that fell due in it.
    requests: u64,
    /// Replies received, warm-up included.
    all: u64,
    errors: u64,
    latency_us: Histogram<u64>,
    measured: Duration,
    /// The open loop: requests that fell due in the window (each one
    /// answered, or, with `--in-flight`, left unsent at its end: `requests`
    /// and `unsent` add up to it), replies that arrived in it (the rate
    /// achieved), and how late the generator sent each request written from
    /// its start on (`open.rs` says from when).
    due: u64,
    in_window: u64,
    lateness_us: Histogram<u64>,
    /// With `--in-flight`: requests of the window that waited in the
    /// generator for a reply before they could be sent, and those still
    /// waiting when it ended (in the latency histogram, never sent).
    waited: u64,
    unsent: u64,
    /// The open loop: the round trip of each reply read in the window, from
    /// its request's write to its read, whatever that request waited before.
    round_trip_us: Histogram<u64>,
    /// The open loop on Linux: how long after the kernel received replies
    /// the generator read them, for each read from the window's start on
    /// that completed one.
    read_lateness_us: Histogram<u64>,
}

impl Tally {
    fn new() -> Tally {
        // 1 µs to 60 s, 3 significant digits.
        let histogram = || Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds");
        Tally {
            requests: 0,
            all: 0,
            errors: 0,
            latency_us: histogram(),
            measured: Duration::ZERO,
            due: 0,
            in_window: 0,
            lateness_us: histogram(),
            waited: 0,
            unsent: 0,
            round_trip_us: histogram(),
            read_lateness_us: histogram(),
        }
    }
}

fn main() -> ExitCode {
    shared::cli::exit_with(run(Args::parse()))
}

fn run(args: Args) -> anyhow::Result<()> {
    if args.proto == Proto::Line && (args.suffix.len() + 1) as u32 > args.size + 16 {
        bail!("--suffix is longer than a reply");
    }
    if let Some(limit) = shared::limits::raise_descriptor_limit() {
        let wanted = args.idle + args.conns + shared::limits::RESERVED;
        if (wanted as u64) > limit.now {
            bail!(
                "--idle {} and --conns {} need about {wanted} descriptors; this process may \
                 hold {} (RLIMIT_NOFILE)",
                args.idle,
                args.conns,
                limit.now
            );
        }
    }
    let sources = idle::sources(
        args.addr,
        args.sources
            .unwrap_or_else(|| u8::try_from((args.idle + args.conns) / 16_000 + 1).unwrap_or(254)),
    );
    let (request, reply) = exchange(&args, 0);
    let reply_len = |b: &[u8]| reply_len(args.proto, b, &reply);
    let check = |b: &[u8]| match args.proto {
        Proto::Line => b == reply.as_slice(),
        Proto::Http => http_ok(b),
    };
    // The active connections first, so that a server that fills up while
    // the idle crowd is opened refuses an idle one, not one measured.
    let threads = usize::from(args.threads).min(args.conns.max(1));
    let active: Vec<Vec<std::net::TcpStream>> = (0..threads)
        .map(|t| {
            let conns = args.conns / threads + usize::from(t < args.conns % threads);
            (0..conns)
                .map(|_| std::net::TcpStream::connect(args.addr))
                .collect::<io::Result<_>>()
        })
        .collect::<io::Result<_>>()
        .with_context(|| format!("cannot connect to {}", args.addr))?;
    // Idle connections: opened, one round trip each, then held silent.
    let mut crowd = idle::open(args.addr, &sources, args.idle, &request, &reply_len, &check)
        .context("opening idle connections")?;
    if args.hold_secs > 0.0 {
        if args.json {
            println!(
                "{{\"held\":{},\"idle\":{},\"idle_secs\":{:.3}}}",
                crowd.held.len(),
                args.idle,
                crowd.secs
            );
        } else {
            println!("holding {} idle connections", crowd.held.len());
        }
        io::stdout().flush()?;
        thread::sleep(Duration::from_secs_f64(args.hold_secs));
    }

    // The open loop's schedule starts a moment after every thread is
    // spawned, the same for all.
    let start = Instant::now() + Duration::from_millis(20);
    let mut first = 0;
    let handles: Vec<_> = active
        .into_iter()
        .enumerate()
        .map(|(t, streams)| {
            let args = args.clone();
            let requests = args
                .requests
                .map(|r| r / threads as u64 + u64::from((t as u64) < r % threads as u64));
            let schedule = args.rate.map(|rate| open::Schedule {
                start,
                rate,
                conns: args.conns,
                first,
            });
            first += streams.len();
            thread::spawn(move || match schedule {
                Some(schedule) => open::drive(&args, streams, schedule, t),
                None => drive(&args, streams, requests, t),
            })
        })
        .collect();
    let mut total = Tally::new();
    for h in handles {
        let t = h.join().expect("load thread panicked")?;
        total.requests += t.requests;
        total.all += t.all;
        total.errors += t.errors;
        total.latency_us.add(&t.latency_us).expect("same bounds");
        total.measured = total.measured.max(t.measured);
        total.due += t.due;
        total.in_window += t.in_window;
        total.lateness_us.add(&t.lateness_us).expect("same bounds");
        total.waited += t.waited;
        total.unsent += t.unsent;
        total
            .round_trip_us
            .add(&t.round_trip_us)
            .expect("same bounds");
        total
            .read_lateness_us
            .add(&t.read_lateness_us)
            .expect("same bounds");
    }
    if args.rate.is_some() && total.requests + total.unsent != total.due {
        bail!(
            "{} requests fell due in the window, {} were answered and {} left unsent",
            total.due,
            total.requests,
            total.unsent
        );
    }
    let burst = if args.burst {
        Some(idle::burst(&mut crowd.held, &request, &reply_len, &check).context("burst")?)
    } else {
        None
    };
    report(&args, &total, &crowd, burst.as_ref());
    if total.errors > 0 {
        bail!("{} replies did not match", total.errors);
    }
    if let Some(b) = burst.filter(|b| b.wrong > 0 || b.stopped.is_some()) {
        bail!(
            "burst: {} replies right, {} wrong or missing ({})",
            b.replies,
            b.wrong,
            b.stopped.as_deref().unwrap_or("connections closed")
        );
    }
    Ok(())
}

/// One connection's state.
struct Conn {
    stream: TcpStream,
    /// Request bytes not yet written.
    out: Vec<u8>,
    /// Reply bytes received and not yet checked.
    inbox: Vec<u8>,
    /// When each request in flight was written (the open loop: when it
    /// was due), oldest first.
    in_flight: VecDeque<Instant>,
}

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            out: Vec::new(),
            inbox: Vec::new(),
            in_flight: VecDeque::new(),
        }
    }
}

/// Drives `streams` until time is up or `requests` are answered.
fn drive(
    args: &Args,
    streams: Vec<std::net::TcpStream>,
    requests: Option<u64>,
    thread: usize,
) -> anyhow::Result<Tally> {
    let (request, reply) = exchange(args, thread);
    let (mut poll, mut connections) = register(streams)?;

    let start = Instant::now();
    let warmup = if requests.is_some() {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(args.warmup_secs)
    };
    let measure_from = start + warmup;
    let stop_at = measure_from + Duration::from_secs_f64(args.secs);
    let mut tally = Tally::new();
    // Requests still to be sent, when the run is counted rather than timed.
    let mut to_send = requests.unwrap_or(u64::MAX);
    let mut answered = 0u64;
    for c in &mut connections {
        let n = u64::from(args.depth).min(to_send);
        for _ in 0..n {
            c.out.extend_from_slice(&request);
            c.in_flight.push_back(Instant::now());
        }
        to_send -= n;
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let now = Instant::now();
        let done = match requests {
            Some(r) => answered >= r,
            None => now >= stop_at,
        };
        if done || connections.is_empty() {
            break;
        }
        // A stop and continue (SIGSTOP, SIGCONT) ends the wait with EINTR.
        match poll.poll(&mut events, Some(Duration::from_millis(100))) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => other?,
        }
        for event in events.iter() {
            let c = &mut connections[event.token().0];
            if event.is_writable() || !c.out.is_empty() {
                write_out(c)?;
            }
            if !event.is_readable() {
                continue;
            }
            read_in(c, &mut buf)?;
            // Timed when this connection was read, not when the wait
            // returned: a reply read late in a batch is not timed short.
            let now = Instant::now();
            let measuring = now >= measure_from;
            // Every complete reply: check it, time it, send the next request.
            let mut sends = 0;
            take_replies(args, c, &reply, |sent, ok| {
                answered += 1;
                if measuring {
                    tally.requests += 1;
                    tally.errors += u64::from(!ok);
                    let us = now.duration_since(sent).as_micros().max(1) as u64;
                    let _ = tally.latency_us.record(us.min(60_000_000));
                } else if !ok {
                    tally.errors += 1;
                }
                if to_send > 0 {
                    to_send -= 1;
                    sends += 1;
                }
            });
            for _ in 0..sends {
                c.out.extend_from_slice(&request);
                c.in_flight.push_back(Instant::now());
            }
            if !c.out.is_empty() {
                write_out(c)?;
            }
        }
    }
    tally.measured = Instant::now().saturating_duration_since(measure_from);
    tally.all = answered;
    Ok(tally)
}

/// A poller for this thread, and `streams` registered with it as
/// connections, each token its index.
fn register(streams: Vec<std::net::TcpStream>) -> anyhow::Result<(Poll, Vec<Conn>)> {
    let poll = Poll::new()?;
    let mut connections = Vec::with_capacity(streams.len());
    for (i, std_stream) in streams.into_iter().enumerate() {
        // Pipelined requests go out at once, not after a delayed ACK.
        std_stream.set_nodelay(true)?;
        std_stream.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(std_stream);
        poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        connections.push(Conn::new(stream));
    }
    Ok((poll, connections))
}

/// Reads what the socket has into the connection's inbox.
fn read_in(c: &mut Conn, buf: &mut [u8]) -> anyhow::Result<()> {
    loop {
        match c.stream.read(buf) {
            Ok(0) => bail!("the server closed a connection"),
            Ok(n) => c.inbox.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("reading replies"),
        }
    }
}

/// Takes every complete reply from the connection's inbox, checks it, and
/// calls `answered` with its request's time in flight and whether it was
/// right.
fn take_replies(args: &Args, c: &mut Conn, reply: &[u8], mut answered: impl FnMut(Instant, bool)) {
    let mut used = 0;
    while let Some(len) = reply_len(args.proto, &c.inbox[used..], reply) {
        let got = &c.inbox[used..used + len];
        let ok = match args.proto {
            Proto::Line => got == reply,
            Proto::Http => http_ok(got),
        };
        used += len;
        let sent = c
            .in_flight
            .pop_front()
            .expect("a reply to a request in flight");
        answered(sent, ok);
    }
    c.inbox.drain(..used);
}

fn write_out(c: &mut Conn) -> anyhow::Result<()> {
    while !c.out.is_empty() {
        match c.stream.write(&c.out) {
            Ok(n) => {
                c.out.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("writing requests"),
        }
    }
    Ok(())
}

/// The request every connection of this thread sends, and the exact reply
/// it expects (for HTTP, a template only its length is taken from).
fn exchange(args: &Args, thread: usize) -> (Vec<u8>, Vec<u8>) {
    match args.proto {
        Proto::Line => {
            let body = args.size as usize - 1;
            let mut request: Vec<u8> = (0..body)
                .map(|i| b"abcdefghijklmnopqrstuvwxyz"[(i + thread) % 26])
                .collect();
            let mut reply = request.to_ascii_uppercase();
            reply.extend_from_slice(args.suffix.as_bytes());
            reply.push(b'\n');
            request.push(b'\n');
            (request, reply)
        }
        Proto::Http => (
            format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", args.addr).into_bytes(),
            Vec::new(),
        ),
    }
}

/// Length of the first complete reply at the start of `inbox`, if any.
fn reply_len(proto: Proto, inbox: &[u8], reply: &[u8]) -> Option<usize> {
    match proto {
        Proto::Line => (inbox.len() >= reply.len()).then_some(reply.len()),
        Proto::Http => match bench::http_response_len(inbox) {
            Ok(len) => len,
            // Not HTTP: count it as one wrong reply of everything received.
            Err(_) => Some(inbox.len()),
        },
    }
}

/// A correct response to `GET /`: 200 and the 13-byte body.
fn http_ok(response: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut r = httparse::Response::new(&mut headers);
    matches!(r.parse(response), Ok(httparse::Status::Complete(head))
        if r.code == Some(200) && &response[head..] == b"Hello, world!")
}

fn report(args: &Args, t: &Tally, crowd: &idle::Crowd, burst: Option<&idle::Burst>) {
    let secs = t.measured.as_secs_f64().max(1e-9);
    // The closed loop's rate is its requests answered; the open loop's,
    // the replies that arrived in the window (its requests that fell due
    // there are all answered or left unsent, some answered after it if the
    // server fell behind).
    let achieved = if args.rate.is_some() {
        t.in_window
    } else {
        t.requests
    };
    let rps = achieved as f64 / secs;
    let q = |h: &Histogram<u64>, x: f64| {
        if h.is_empty() {
            0
        } else {
            h.value_at_quantile(x)
        }
    };
    let max = |h: &Histogram<u64>| if h.is_empty() { 0 } else { h.max() };
    let h = &t.latency_us;
    let late = &t.lateness_us;
    let read_late = &t.read_lateness_us;
    let mode = match (args.rate, args.in_flight) {
        (None, _) => "closed".to_string(),
        (Some(_), None) => "pipelined".to_string(),
        (Some(_), Some(n)) => format!("in-flight {n}"),
    };
    // With N in flight on each connection, no more than N replies a round
    // trip can come back on it, however many requests fall due.
    let round_trip = q(&t.round_trip_us, 0.5);
    let bound = match args.in_flight {
        Some(n) if args.rate.is_some() && round_trip > 0 => {
            (args.conns as f64 * f64::from(n)) / (round_trip as f64 / 1e6)
        }
        _ => 0.0,
    };
    // The kernel's receive times are read on Linux alone.
    let reads_timed = args.rate.is_some() && cfg!(target_os = "linux");
    if args.json {
        let read_late_fields = if reads_timed {
            format!(
                "\"read_late_p99_us\":{},\"read_late_max_us\":{},",
                q(read_late, 0.99),
                max(read_late)
            )
        } else {
            String::new()
        };
        println!(
            "{{\"addr\":\"{}\",\"proto\":\"{:?}\",\"conns\":{},\"depth\":{},\"mode\":\"{mode}\",\
             \"in_flight\":{},\"size\":{},\"idle\":{},\
             \"threads\":{},\"secs\":{:.3},\"requests\":{},\"errors\":{},\"all_requests\":{},\
             \"offered_rps\":{:.1},\"rps\":{:.1},\"due\":{},\"waited\":{},\"unsent\":{},\
             \"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\
             \"rtt_p50_us\":{round_trip},\"bound_rps\":{bound:.1},\
             \"late_p99_us\":{},\"late_max_us\":{},{read_late_fields}\"idle_held\":{},\
             \"idle_secs\":{:.3},\"idle_stopped\":{},\"burst_replies\":{},\"burst_wrong\":{},\
             \"burst_secs\":{:.3}}}",
            args.addr,
            args.proto,
            args.conns,
            args.depth,
            args.in_flight.unwrap_or(0),
            args.size,
            args.idle,
            args.threads,
            secs,
            t.requests,
            t.errors,
            t.all,
            args.rate.unwrap_or(0.0),
            rps,
            t.due,
            t.waited,
            t.unsent,
            q(h, 0.5),
            q(h, 0.9),
            q(h, 0.99),
            q(h, 0.999),
            max(h),
            q(late, 0.99),
            max(late),
            crowd.held.len(),
            crowd.secs,
            json_string(crowd.stopped.as_deref().unwrap_or("")),
            burst.map_or(0, |b| b.replies),
            burst.map_or(0, |b| b.wrong),
            burst.map_or(0.0, |b| b.secs),
        );
    } else {
        if let Some(rate) = args.rate {
            let answered = if args.in_flight.is_some() {
                format!(
                    "{} answered, {} waited in the generator for a reply, {} of them left \
                     unsent at the end (counted as waiting until then)",
                    t.requests, t.waited, t.unsent
                )
            } else {
                "all answered".to_string()
            };
            let reads = if reads_timed {
                format!(
                    ", and read replies late by p99 {} us, max {} us",
                    q(read_late, 0.99),
                    max(read_late)
                )
            } else {
                String::new()
            };
            println!(
                "open loop, {mode}: {rate:.0} requests/s offered, {} fell due in {secs:.2} s, \
                 {answered}; the generator sent them late by p99 {} us, max {} us{reads}",
                t.due,
                q(late, 0.99),
                max(late)
            );
            match args.in_flight {
                Some(n) if round_trip > 0 => println!(
                    "at most {n} in flight on each of {} connections: the carried rate cannot \
                     pass {} x {n} / {round_trip} us (the median round trip) = {bound:.0} \
                     requests/s",
                    args.conns, args.conns
                ),
                Some(n) => println!(
                    "at most {n} in flight on each of {} connections, and no reply in the \
                     window to time a round trip by",
                    args.conns
                ),
                None => {}
            }
        }
        println!(
            "{} requests in {secs:.2} s: {rps:.0} requests/s; latency p50 {} us, p90 {} us, \
             p99 {} us, p99.9 {} us, max {} us; {} errors",
            t.requests,
            q(h, 0.5),
            q(h, 0.9),
            q(h, 0.99),
            q(h, 0.999),
            max(h),
            t.errors
        );
        if args.idle > 0 {
            println!(
                "{} of {} idle connections opened and answered in {:.2} s{}",
                crowd.held.len(),
                args.idle,
                crowd.secs,
                crowd
                    .stopped
                    .as_ref()
                    .map_or(String::new(), |why| format!("; stopped: {why}"))
            );
        }
        if let Some(b) = burst {
            println!(
                "burst: {} of {} replies right in {:.3} s",
                b.replies,
                crowd.held.len(),
                b.secs
            );
        }
    }
}

/// `s` as a JSON string: quoted, with quotes, backslashes and control
/// characters escaped.
fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Sets an integer socket option to 1 on `fd` (`setsockopt`, which socket2
/// and mio have no call for in the two options loadgen turns on this way).
#[cfg(target_os = "linux")]
fn switch_on(fd: std::os::fd::RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads `optlen` bytes at `optval`: a c_int on this
    // stack, and its size; `fd` is a live socket the caller owns.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const on).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
