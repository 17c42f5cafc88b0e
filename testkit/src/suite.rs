//! The echo protocol's conformance tests, run against every echo server.
//!
//! Each function starts the server described by an [`EchoSpec`] and checks
//! one rule of the echo protocol (docs/protocol.md) on the wire. [`echo_suite!`](crate::echo_suite)
//! turns the list into `#[test]` functions in the calling crate, so each
//! server (and each mode of one) runs the same checks.

use std::io::ErrorKind;
use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use super::TestServer;

/// Which server to test and what its replies look like.
#[derive(Debug, Clone, Copy)]
pub struct EchoSpec {
    /// Path of the server binary (`env!("CARGO_BIN_EXE_…")`).
    pub bin: &'static str,
    /// Arguments besides `--addr`, such as `["--mode", "thread"]`.
    pub args: &'static [&'static str],
    /// What the server puts before each reply's `\n` (`_SB` for selectors-echo).
    pub suffix: &'static str,
    /// False for a server that serves one client at a time: the tests then
    /// expect a second client to be answered only after the first leaves.
    pub concurrent: bool,
    /// True for a server that polls in a busy loop by design
    /// (nonblocking-echo without `--idle-sleep-ms`): it always uses a core,
    /// so the "does not spin" checks do not apply to it.
    pub busy_polls: bool,
}

impl EchoSpec {
    /// What most specs are: a server that serves clients at once and waits
    /// in the kernel, run with `args`, putting `suffix` before each `\n`.
    pub const fn concurrent(
        bin: &'static str,
        args: &'static [&'static str],
        suffix: &'static str,
    ) -> EchoSpec {
        EchoSpec {
            bin,
            args,
            suffix,
            concurrent: true,
            busy_polls: false,
        }
    }

    /// Starts the server with the spec's arguments plus `extra`.
    pub fn start(&self, extra: &[&str]) -> TestServer {
        let args: Vec<&str> = self.args.iter().chain(extra).copied().collect();
        TestServer::start(self.bin, &args)
    }

    /// The exact reply the server owes for `line`.
    pub fn reply(&self, line: &str) -> String {
        format!("{}{}\n", line.to_ascii_uppercase(), self.suffix)
    }
}

/// A long payload cut down for a failure message.
fn summary(s: &str) -> String {
    const SHOW: usize = 120;
    if s.len() <= SHOW {
        return format!("{s:?}");
    }
    let head: String = s.chars().take(SHOW).collect();
    format!("{head:?}… ({} bytes in all)", s.len())
}

/// The exact error line for an over-long line.
pub const ERR_LINE_TOO_LONG: &str = "ERR line too long\n";

/// The exact refusal for a client past `--max-conns`.
pub const ERR_SERVER_FULL: &str = "ERR server full\n";

/// One line in, one upper-cased line out; the connection stays open.
pub fn one_request(spec: &EchoSpec) {
    let server = spec.start(&[]);
    let mut client = server.connect();
    assert_eq!(
        client.request("hello, World 42"),
        spec.reply("hello, World 42")
    );
    assert_eq!(client.request(""), spec.reply(""));
    assert_eq!(client.request("again"), spec.reply("again"));
}

/// 1000 lines sent in a single write get 1000 replies, in order, byte for byte.
pub fn pipelined_1000(spec: &EchoSpec) {
    let server = spec.start(&[]);
    let mut client = server.connect();
    let lines: Vec<String> = (0..1000).map(|i| format!("line {i} of many")).collect();
    let request: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let expected: String = lines.iter().map(|l| spec.reply(l)).collect();
    client.send(request.as_bytes());
    let got = client.read_exact(expected.len()).expect("all replies");
    let got = String::from_utf8(got).unwrap();
    assert!(got == expected, "replies differ: {}", summary(&got));
}

/// A line sent one byte per write (one segment each, Nagle off) is one
/// reply, and nothing comes back before its newline: a server that took
/// one `recv` for one message would answer each byte.
pub fn byte_by_byte(spec: &EchoSpec) {
    let server = spec.start(&[]);
    let mut client = server.connect();
    for &b in b"split into single bytes" {
        client.send(&[b]);
    }
    assert!(
        client.is_silent_for(Duration::from_millis(200)),
        "a reply came before the line's newline"
    );
    client.send(b"\n");
    assert_eq!(
        client.read_line().unwrap(),
        spec.reply("split into single bytes").as_bytes()
    );
}

/// 50 clients at once, 100 requests each, every reply correct and in order.
pub fn concurrent_50x100(spec: &EchoSpec) {
    const CLIENTS: usize = 50;
    const REQUESTS: usize = 100;
    let server = spec.start(&[]);
    let start_together = Barrier::new(CLIENTS);
    thread::scope(|s| {
        for c in 0..CLIENTS {
            let (server, start_together) = (&server, &start_together);
            s.spawn(move || {
                let mut client = server.connect();
                start_together.wait();
                for r in 0..REQUESTS {
                    let line = format!("client {c} request {r}");
                    assert_eq!(client.request(&line), spec.reply(&line));
                }
            });
        }
    });
}

/// 200 clients at once, each sending 50 lines in one write and then
/// reading the 50 replies: every reply correct and in order, whatever
/// order the server takes the clients in (a serial server one by one).
///
/// A serial server's clients start together and then connect: the ones it
/// has not reached wait in its listen queue, which may hold fewer than 200
/// (std's `std::net::TcpListener::bind` asks for 128), and the kernel drops the SYNs
/// past it for the client to send again. Were all 200 to connect before any
/// sent, the server would wait on its first client's line while that client
/// waited for the 200th to connect.
pub fn many_clients_pipelining(spec: &EchoSpec) {
    const CLIENTS: usize = 200;
    const LINES: usize = 50;
    let server = spec.start(&[]);
    let start_together = Barrier::new(CLIENTS);
    thread::scope(|s| {
        for c in 0..CLIENTS {
            let (server, start_together) = (&server, &start_together);
            s.spawn(move || {
                if !spec.concurrent {
                    start_together.wait();
                }
                let mut client = server.connect();
                let lines: Vec<String> =
                    (0..LINES).map(|l| format!("client {c} line {l}")).collect();
                let request: String = lines.iter().map(|l| format!("{l}\n")).collect();
                let expected: String = lines.iter().map(|l| spec.reply(l)).collect();
                if spec.concurrent {
                    start_together.wait();
                }
                client.send(request.as_bytes());
                let got = client.read_exact(expected.len()).expect("all 50 replies");
                let got = String::from_utf8(got).unwrap();
                assert!(
                    got == expected,
                    "client {c}: replies differ: {}",
                    summary(&got)
                );
            });
        }
    });
}

/// A line of exactly `--max-line` bytes is answered; one byte more is told
/// `ERR line too long` and closed as soon as the limit passes, with no
/// newline sent; other clients carry on.
pub fn over_long_line(spec: &EchoSpec) {
    const LIMIT: usize = 64 * 1024; // the default --max-line
    let server = spec.start(&[]);
    let mut bystander = spec.concurrent.then(|| server.connect());
    if let Some(b) = bystander.as_mut() {
        assert_eq!(b.request("before"), spec.reply("before"));
    }

    let mut at_limit = server.connect();
    let line = "a".repeat(LIMIT);
    let reply = at_limit.request(&line);
    assert!(
        reply == spec.reply(&line),
        "wrong reply to a line at the limit: {}",
        summary(&reply)
    );
    drop(at_limit);

    let mut over = server.connect();
    over.send("b".repeat(LIMIT + 1).as_bytes());
    assert_eq!(over.read_line().unwrap(), ERR_LINE_TOO_LONG.as_bytes());
    assert_eq!(over.read_to_end().expect("a clean close, not a reset"), b"");

    let mut after = bystander.unwrap_or_else(|| server.connect());
    assert_eq!(after.request("after"), spec.reply("after"));
}

/// An over-long line, then the client's half-close, many times over, with
/// and without a newline and at several lengths: each time `ERR line too
/// long` and the close, and nothing else. The rejected line is never sent,
/// however the end of stream and the error meet (they race, so one try
/// proves little).
pub fn over_long_line_then_half_close(spec: &EchoSpec) {
    const LIMIT: usize = 64 * 1024; // the default --max-line
    let server = spec.start(&[]);
    for round in 0..4 {
        for len in [LIMIT + 1, LIMIT + 1000, 70_000] {
            for newline in [false, true] {
                let mut line = vec![b'b'; len];
                if newline {
                    line.push(b'\n');
                }
                let mut client = server.connect();
                client.send(&line);
                client.shutdown_write();
                let (got, error) = client.read_until_closed();
                assert!(
                    got == ERR_LINE_TOO_LONG.as_bytes(),
                    "round {round}, {len} bytes, newline {newline}: got {} then {error:?}",
                    summary(&String::from_utf8_lossy(&got))
                );
            }
        }
    }
    let mut after = server.connect();
    assert_eq!(after.request("after"), spec.reply("after"));
}

/// After the client shuts down its sending side, every owed reply comes back
/// (the unterminated last fragment answered as a line), then end of stream.
pub fn half_close(spec: &EchoSpec) {
    let server = spec.start(&[]);
    let mut client = server.connect();
    client.send(b"first\nsecond\nno newline");
    client.shutdown_write();
    let got = client.read_to_end().expect("replies, then a clean close");
    let expected = spec.reply("first") + &spec.reply("second") + &spec.reply("no newline");
    assert_eq!(String::from_utf8(got).unwrap(), expected);
}

/// Clients that reset mid-line, or with replies still owed, do not disturb
/// the others.
pub fn reset_mid_stream(spec: &EchoSpec) {
    let server = spec.start(&[]);
    let mut other = spec.concurrent.then(|| server.connect());
    if let Some(o) = other.as_mut() {
        assert_eq!(o.request("still here"), spec.reply("still here"));
    }

    let mut mid_line = server.connect();
    assert_eq!(mid_line.request("hi"), spec.reply("hi"));
    mid_line.send(b"half a li");
    mid_line.reset();

    let mut owed = server.connect();
    owed.send("reset before reading\n".repeat(5000).as_bytes());
    owed.reset();

    let mut other = other.unwrap_or_else(|| server.connect());
    assert_eq!(other.request("still here"), spec.reply("still here"));
    drop(other); // a serial server serves the newcomer only after this one
    let mut newcomer = server.connect();
    assert_eq!(newcomer.request("newcomer"), spec.reply("newcomer"));
}

/// A client that writes 16 MiB of lines and never reads: the server stops
/// reading from it once 1 MiB of replies is owed, so its memory stays
/// bounded, and it still answers someone else.
#[cfg(target_os = "linux")]
pub fn non_reading_client(spec: &EchoSpec) {
    use super::proc;
    const FLOOD: usize = 16 << 20;
    let server = spec.start(&[]);
    let mut probe = server.connect();
    assert_eq!(probe.request("warm up"), spec.reply("warm up"));
    // A serial server must be free for the flooder.
    let probe = spec.concurrent.then_some(probe);
    let rss_before = proc::tree_rss_kib(server.pid());

    let mut flooder = super::flooder(server.addr());
    let chunk = "never going to read the replies to any of these lines.....\n".repeat(1024);
    let written = super::flood(&mut flooder, chunk.as_bytes(), FLOOD);

    let grown_kib = proc::tree_rss_kib(server.pid()).saturating_sub(rss_before);
    assert!(
        grown_kib < 8 * 1024,
        "server RSS grew by {grown_kib} KiB while a client wrote {written} bytes and read none"
    );
    // Kernel buffers on both ends can absorb this much of the flood; past
    // it, only a server that stopped reading explains the stall.
    let kernel_room = proc::tcp_buffer_max() as usize + (2 << 20);
    if kernel_room < FLOOD {
        assert!(
            written < FLOOD,
            "the server kept reading all {written} bytes"
        );
    }

    let mut probe = probe.unwrap_or_else(|| {
        drop(flooder);
        server.connect()
    });
    assert_eq!(probe.request("anyone there"), spec.reply("anyone there"));
}

/// A client that writes 2 MiB more lines than the server's send buffer
/// can hold replies (the `tcp_wmem` maximum), reading nothing meanwhile,
/// and only then reads: the server's writes are cut short, and it must
/// keep what its socket did not take, in order. Every reply arrives, byte
/// for byte: the client finishes the line the flood cut (where the server
/// stopped reading, its socket stops taking them), half-closes, and reads
/// until the server closes.
#[cfg(target_os = "linux")]
pub fn a_slow_reader_gets_every_reply(spec: &EchoSpec) {
    use std::io::{Read, Write};
    use std::net::Shutdown;
    let limit = super::proc::tcp_send_buffer_max() as usize + (2 << 20);
    let line = "every reply to these lines is owed until the client reads.\n";
    let server = spec.start(&[]);
    let mut stream = super::flooder(server.addr());
    let written = super::flood(&mut stream, line.repeat(1024).as_bytes(), limit);
    let cut = written % line.len();
    let rest = if cut == 0 {
        &[][..]
    } else {
        &line.as_bytes()[cut..]
    };
    let lines = written.div_ceil(line.len());
    let expected = spec.reply(line.trim_end_matches('\n')).repeat(lines);
    stream
        .set_read_timeout(Some(super::TIMEOUT))
        .expect("timeout");
    let got = thread::scope(|s| {
        let stream = &stream;
        let reader = s.spawn(move || {
            let mut got = Vec::new();
            let mut reading: &std::net::TcpStream = stream;
            reading.read_to_end(&mut got).map(|_| got)
        });
        let mut writing: &std::net::TcpStream = stream;
        writing.write_all(rest).expect("the rest of the cut line");
        writing.shutdown(Shutdown::Write).expect("half-close");
        reader.join().expect("reader")
    });
    let got = got.expect("every reply, then the close");
    let expected = expected.as_bytes();
    if got != expected {
        let at = got.iter().zip(expected).take_while(|(a, b)| a == b).count();
        panic!(
            "{written} bytes of lines sent: {} bytes of replies expected, {} came, \
             the first difference at byte {at}: {}",
            expected.len(),
            got.len(),
            summary(&String::from_utf8_lossy(&got[at..]))
        );
    }
}

/// Many clients that write lines as fast as they can and never read, all
/// at once, each until its socket stops taking bytes: the server stops
/// reading each at the bound on owed output (1 MiB), so its memory grows by
/// at most that much per client, plus one read's replies and a fixed
/// margin, and a newcomer is answered. `extra` is added to the server's
/// arguments (a smaller ring of buffers, say).
#[cfg(target_os = "linux")]
pub fn many_non_reading_clients(spec: &EchoSpec, extra: &[&str]) {
    use super::{flood, flooder, proc, raise_nofile_limit};
    const CLIENTS: usize = 32;
    // Past what kernel buffers and the bound let through, per client: a
    // server that keeps reading lets every client reach it.
    const CEILING: usize = 32 << 20;
    const ONE_READ: u64 = 64 << 10;
    const MARGIN: u64 = 32 << 20;
    raise_nofile_limit(4 * CLIENTS as u64 + 100);
    let server = spec.start(extra);
    let mut probe = server.connect();
    assert_eq!(probe.request("warm up"), spec.reply("warm up"));
    let probe = spec.concurrent.then_some(probe);
    let before = proc::tree_pss_kib(server.pid()) * 1024;
    let chunk = "a line whose reply is never read, 4000 bytes a line in all.."
        .repeat(4000 / 60)
        .into_bytes();
    let lines: Vec<u8> = chunk
        .iter()
        .copied()
        .chain(*b"\n")
        .cycle()
        .take(64 << 10)
        .collect();
    let addr = server.addr();
    let flooders: Vec<_> = thread::scope(|s| {
        let lines = &lines;
        let handles: Vec<_> = (0..CLIENTS)
            .map(|_| {
                s.spawn(move || {
                    let mut stream = flooder(addr);
                    let written = flood(&mut stream, lines, CEILING);
                    (stream, written)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("flooder"))
            .collect()
    });
    let grown = (proc::tree_pss_kib(server.pid()) * 1024).saturating_sub(before);
    let bound = CLIENTS as u64 * ((1 << 20) + ONE_READ) + MARGIN;
    let written: usize = flooders.iter().map(|(_, w)| w).sum();
    eprintln!(
        "{} {:?} {extra:?}: {CLIENTS} clients wrote {} MiB unread; memory grew {} MiB (bound {} MiB)",
        spec.bin,
        spec.args,
        written >> 20,
        grown >> 20,
        bound >> 20
    );
    assert!(grown <= bound, "memory grew {grown} bytes, past {bound}");
    assert!(
        flooders.iter().all(|&(_, w)| w < CEILING),
        "the server read everything a client wrote"
    );
    let mut probe = probe.unwrap_or_else(|| {
        drop(flooders);
        server.connect()
    });
    assert_eq!(probe.request("anyone there"), spec.reply("anyone there"));
}

/// How many of the flooders' lines a server may answer, the two together,
/// between a newcomer's connect and its first reply. A loop that serves
/// every ready socket, the listener included, in each turn answers the
/// newcomer within a few turns: a few times 16 reads of 64 KiB, some 20 000
/// lines a turn. One that runs 200 tasks between two looks at the listener
/// answers some four million first. Counted in the server's work, not in
/// time, so that a machine slowed by other load slows both sides alike and
/// the bound holds however busy it is.
pub const NEWCOMER_FLOOD_LINES: u64 = 1_000_000;

/// Two clients pipeline 64 KiB of lines per write without pause, reading
/// their replies as fast as they come, while a third makes 200 round trips.
/// The flooders stop only once the third is done, so a server whose loop
/// one greedy client can hold never answers it (the read times out): its
/// replies arrive while the flooders still have replies outstanding. With
/// `cut_short`, the server's debug log must also show its per-turn budget
/// at work (`… cut short so far`): a loop that reads until `WouldBlock`
/// (edge-triggered epoll, signals, coroutines) needs one.
///
/// The third client's first reply, its accept included, must also come
/// before the flooders have had [`NEWCOMER_FLOOD_LINES`] replies: a loop
/// that looks at the listener only after many turns of the flooders does
/// answer in the end, but after millions of theirs.
pub fn a_flooder_does_not_hold_the_loop(spec: &EchoSpec, cut_short: bool) {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Duration;

    assert!(
        spec.concurrent,
        "a serial server serves one client at a time"
    );
    let crate_name = std::path::Path::new(spec.bin)
        .file_name()
        .expect("a binary name")
        .to_string_lossy()
        .replace('-', "_");
    let mut command = std::process::Command::new(spec.bin);
    command
        .args(spec.args)
        .env("RUST_LOG", format!("warn,{crate_name}=debug"));
    let server = TestServer::start_command(command);
    let stop = AtomicBool::new(false);
    let sent = [AtomicU64::new(0), AtomicU64::new(0)];
    let answered = [AtomicU64::new(0), AtomicU64::new(0)];
    thread::scope(|s| {
        // Ends the flood however the test ends, a failed assertion too.
        let _stop = super::SetOnDrop(&stop);
        for f in 0..2 {
            let flooder = server.connect();
            let mut writer = flooder.stream().try_clone().expect("clone");
            let mut reader = flooder.stream().try_clone().expect("clone");
            writer
                .set_write_timeout(Some(Duration::from_millis(200)))
                .expect("timeout");
            reader
                .set_read_timeout(Some(Duration::from_millis(200)))
                .expect("timeout");
            let (stop, sent, answered) = (&stop, &sent[f], &answered[f]);
            s.spawn(move || {
                let line = "pipelined without a pause, replies read as they come\n";
                let batch = line.repeat(64 * 1024 / line.len());
                let lines = (batch.len() / line.len()) as u64;
                while !stop.load(Ordering::Relaxed) {
                    if writer.write_all(batch.as_bytes()).is_ok() {
                        sent.fetch_add(lines, Ordering::Relaxed);
                    }
                }
                drop(flooder);
            });
            s.spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = reader.read(&mut buf) {
                        let newlines = buf[..n].iter().filter(|&&b| b == b'\n').count();
                        answered.fetch_add(newlines as u64, Ordering::Relaxed);
                    }
                }
            });
        }
        // Let the flood take hold before the third client starts.
        assert!(super::eventually(|| answered
            .iter()
            .all(|a| a.load(Ordering::Relaxed) > 10_000)));
        let flood_answered = || {
            answered
                .iter()
                .map(|a| a.load(Ordering::Relaxed))
                .sum::<u64>()
        };
        let (arrived, before) = (std::time::Instant::now(), flood_answered());
        let mut third = server.connect();
        for i in 0..200 {
            let line = format!("round trip {i} beside the flood");
            assert_eq!(third.request(&line), spec.reply(&line));
            if i == 0 {
                let (waited, flood) = (arrived.elapsed(), flood_answered() - before);
                eprintln!(
                    "the third client was first answered after {waited:?}, \
                     and {flood} of the flooders' lines meanwhile"
                );
                assert!(
                    flood <= NEWCOMER_FLOOD_LINES,
                    "the third client was first answered after {flood} of the flooders' \
                     lines (at most {NEWCOMER_FLOOD_LINES}), {waited:?}"
                );
            }
        }
        for f in 0..2 {
            let (s, a) = (
                sent[f].load(Ordering::Relaxed),
                answered[f].load(Ordering::Relaxed),
            );
            eprintln!("flooder {f}: {s} lines sent, {a} answered when the third client was done");
            assert!(s > a, "flooder {f} had nothing outstanding");
        }
        // Looked for while the flood goes on (the log is waited for): the
        // budget is spent only once a flooder has 16 reads' worth waiting.
        if cut_short {
            assert!(
                server.logged_text("cut short so far"),
                "no per-turn budget in the log:\n{}",
                server.log()
            );
        }
    });
}

/// Generates one `#[test]` per conformance check, for the server the given
/// [`EchoSpec`] expression describes. Use it inside a module per server mode:
///
/// ```text
/// mod thread_mode {
///     testkit::echo_suite!(testkit::suite::EchoSpec {
///         bin: env!("CARGO_BIN_EXE_blocking-echo"),
///         args: &["--mode", "thread"],
///         suffix: "",
///         concurrent: true,
///         busy_polls: false,
///     });
/// }
/// ```
///
/// A server that forks a process per connection runs out of processes, not
/// descriptors: `echo_suite!(SPEC, forks)` checks
/// [`survives_process_exhaustion`] in place of
/// [`survives_descriptor_exhaustion`].
#[macro_export]
macro_rules! echo_suite {
    ($spec:expr) => {
        $crate::echo_suite!(@common $spec);
        #[cfg(target_os = "linux")]
        #[test]
        fn survives_descriptor_exhaustion() {
            $crate::suite::survives_descriptor_exhaustion(&SPEC);
        }
    };
    ($spec:expr, forks) => {
        $crate::echo_suite!(@common $spec);
        #[cfg(target_os = "linux")]
        #[test]
        fn survives_process_exhaustion() {
            $crate::suite::survives_process_exhaustion(&SPEC);
        }
    };
    (@common $spec:expr) => {
        pub const SPEC: $crate::suite::EchoSpec = $spec;
        #[test]
        fn one_request() {
            $crate::suite::one_request(&SPEC);
        }
        #[test]
        fn pipelined_1000() {
            $crate::suite::pipelined_1000(&SPEC);
        }
        #[test]
        fn byte_by_byte() {
            $crate::suite::byte_by_byte(&SPEC);
        }
        #[test]
        fn concurrent_50x100() {
            $crate::suite::concurrent_50x100(&SPEC);
        }
        #[test]
        fn over_long_line() {
            $crate::suite::over_long_line(&SPEC);
        }
        #[test]
        fn half_close() {
            $crate::suite::half_close(&SPEC);
        }
        #[test]
        fn reset_mid_stream() {
            $crate::suite::reset_mid_stream(&SPEC);
        }
        #[cfg(target_os = "linux")]
        #[test]
        fn non_reading_client() {
            $crate::suite::non_reading_client(&SPEC);
        }
        #[cfg(target_os = "linux")]
        #[test]
        fn churn_leaves_no_trace() {
            $crate::suite::churn_leaves_no_trace(&SPEC);
        }
        #[test]
        fn over_long_line_then_half_close() {
            $crate::suite::over_long_line_then_half_close(&SPEC);
        }
        #[cfg(target_os = "linux")]
        #[test]
        fn a_slow_reader_gets_every_reply() {
            $crate::suite::a_slow_reader_gets_every_reply(&SPEC);
        }
        #[cfg(target_os = "linux")]
        #[test]
        fn many_non_reading_clients() {
            $crate::suite::many_non_reading_clients(&SPEC, &[]);
        }
        #[test]
        fn start_up_from_outside() {
            $crate::suite::start_up_from_outside(&SPEC);
        }
        #[cfg(unix)]
        #[test]
        fn ends_by_sigterm() {
            $crate::suite::ends_by_sigterm(&SPEC);
        }
        #[cfg(unix)]
        #[test]
        fn descriptor_limit_raised() {
            $crate::suite::descriptor_limit_raised(&SPEC);
        }
        #[cfg(target_os = "linux")]
        #[test]
        fn replies_are_not_held_back() {
            $crate::suite::replies_are_not_held_back(&SPEC);
        }
        #[cfg(target_os = "linux")]
        #[test]
        fn a_broken_listener_ends_the_server() {
            $crate::suite::a_broken_listener_ends_the_server(&SPEC);
        }
    };
}

/// The checks an article's one-file program passes: the wire protocol for
/// ordinary clients (docs/protocol.md), without the limits, ceilings and
/// hostile clients that only the hardened servers are held to, and the
/// start-up every one of them shares ([`article_start_up`]). One
/// `#[test]` each, for the program the given [`EchoSpec`] describes:
///
/// ```text
/// testkit::article_suite!(testkit::suite::EchoSpec::concurrent(
///     env!("CARGO_BIN_EXE_select-article"),
///     &[],
///     "",
/// ));
/// ```
///
/// A program that needs what a machine may lack (io_uring) adds a condition
/// after the spec, `if ready()`: each check runs only when it holds, and
/// `ready` says why it does not (or panics, where skipping is not allowed).
#[macro_export]
macro_rules! article_suite {
    ($spec:expr) => {
        $crate::article_suite!($spec, if true);
    };
    ($spec:expr, if $ready:expr) => {
        pub const SPEC: $crate::suite::EchoSpec = $spec;
        /// A round trip, an empty line, another round trip.
        #[test]
        fn one_request() {
            if $ready {
                $crate::suite::one_request(&SPEC);
            }
        }
        #[test]
        fn pipelined_1000() {
            if $ready {
                $crate::suite::pipelined_1000(&SPEC);
            }
        }
        #[test]
        fn byte_by_byte() {
            if $ready {
                $crate::suite::byte_by_byte(&SPEC);
            }
        }
        #[test]
        fn many_clients_pipelining() {
            if $ready {
                $crate::suite::many_clients_pipelining(&SPEC);
            }
        }
        #[test]
        fn reset_mid_stream() {
            if $ready {
                $crate::suite::reset_mid_stream(&SPEC);
            }
        }
        #[test]
        fn half_close() {
            if $ready {
                $crate::suite::half_close(&SPEC);
            }
        }
        #[test]
        fn article_start_up() {
            if $ready {
                $crate::suite::article_start_up(&SPEC);
            }
        }
    };
}

/// Replies go out the moment they are written, not held back by Nagle's
/// algorithm: a server that leaves it on holds a small reply while an
/// earlier one is unacknowledged, and a client whose ACK is delayed (as
/// Linux delays it, to ride on the next request) then meets the reply one
/// request later. Under an open loop that showed as a p99 of one
/// connection's interval between requests, whatever the model. Read from
/// outside: every TCP socket of the server and of its children, taken with
/// `pidfd_getfd` after a round trip, must have `TCP_NODELAY` set, and the
/// client's own connection must be among them.
#[cfg(target_os = "linux")]
pub fn replies_are_not_held_back(spec: &EchoSpec) {
    use super::proc::{socket_copies, socket_option, tree};

    let server = spec.start(&[]);
    let mut client = server.connect();
    assert_eq!(client.request("nagle"), spec.reply("nagle"));
    let (mut streams, mut listeners) = (0, 0);
    // A process per connection: the connection lives in a child.
    for pid in tree(server.pid()) {
        let sockets = match socket_copies(pid) {
            Ok(sockets) => sockets,
            Err(e) if super::proc::pidfd_refused(&e) => return,
            // A child that has ended since is left out.
            Err(_) if pid != server.pid() => continue,
            Err(e) => panic!("the server's sockets: {e}"),
        };
        for (fd, socket) in sockets {
            if socket_option(&socket, libc::SOL_SOCKET, libc::SO_PROTOCOL)
                != Some(libc::IPPROTO_TCP)
            {
                continue; // a Unix socket pair
            }
            let (what, count) =
                if socket_option(&socket, libc::SOL_SOCKET, libc::SO_ACCEPTCONN) == Some(1) {
                    ("the listening socket", &mut listeners)
                } else {
                    ("a connection", &mut streams)
                };
            assert_eq!(
                socket_option(&socket, libc::IPPROTO_TCP, libc::TCP_NODELAY),
                Some(1),
                "{what}, descriptor {fd} of process {pid}: TCP_NODELAY is off",
            );
            *count += 1;
        }
    }
    assert!(listeners >= 1, "no listening socket found");
    assert!(streams >= 1, "the client's connection was not found");
}

/// More clients than `--max-conns` 20: the extra five are told
/// `ERR server full` and closed, the rest served; a place frees as soon as
/// clients leave.
pub fn refuses_past_max_conns(spec: &EchoSpec) {
    let server = spec.start(&["--max-conns", "20"]);
    let c = crowd(&server, spec, 25);
    assert_eq!((c.served.len(), c.refused), (20, 5));
    says_it_refuses(&server, "(--max-conns)");
    drop(c);
    assert!(super::eventually(|| {
        let mut newcomer = server.connect();
        newcomer.send(b"newcomer\n");
        newcomer
            .read_line()
            .is_ok_and(|l| l == spec.reply("newcomer").as_bytes())
    }));
}

/// The server's log says, in the words every server uses, that it is
/// refusing clients and at which limit (`limit` is part of that line).
pub fn says_it_refuses(server: &TestServer, limit: &str) {
    assert!(
        server.logged(|l| l.contains(limit) && l.contains("; refusing new clients")),
        "no \"{limit} …; refusing new clients\" in the log:\n{}",
        server.log()
    );
}

/// The descriptor ceiling at start-up. Started as a desktop session starts
/// programs, with a soft `RLIMIT_NOFILE` of 256 under a hard one of 1024,
/// the server raises the first to the second and says so; asked for
/// `--max-conns 5000`, it warns that it holds at most 1008 (1024 less the
/// 16 it keeps for itself), serves that many, past the old soft limit, and
/// tells the rest `ERR server full` rather than leaving them unanswered.
///
/// Serial and pool modes take no `--max-conns` (one client; `--workers`
/// plus `--queue`), and fork mode's parent holds no client's descriptor:
/// for those only the raise is checked.
#[cfg(unix)]
pub fn descriptor_limit_raised(spec: &EchoSpec) {
    use std::process::Command;

    use super::limit_descriptors;

    const HARD: u64 = 1024;
    const ROOM: usize = 1024 - 16;
    let mode = |m: &str| spec.args.windows(2).any(|w| w == ["--mode", m]);
    let holds_clients = !(mode("serial") || mode("pool") || mode("fork"));
    let mut command = Command::new(spec.bin);
    command.args(spec.args);
    if holds_clients {
        command.args(["--max-conns", "5000"]);
    }
    limit_descriptors(&mut command, 256, HARD);
    command.env("RUST_LOG", "info");
    let server = TestServer::start_command(command);
    // The lines come before the ready line, but through another pipe:
    // each is waited for in turn, not read once after the first.
    assert!(
        server.logged_text("descriptor limit 1024 (raised from 256)"),
        "no raise in the log:\n{}",
        server.log()
    );
    if !holds_clients {
        return;
    }
    assert!(
        server.logged_text(&format!("room for {ROOM} connections")),
        "{}",
        server.log()
    );
    assert!(
        server.logged(|l| l.contains("WARN")
            && l.contains(&format!(
                "--max-conns 5000 is more than the descriptor limit allows: \
                 holding at most {ROOM} connections"
            ))
            && l.contains("hard RLIMIT_NOFILE")),
        "no warning in the log:\n{}",
        server.log()
    );
    super::raise_nofile_limit(2 * HARD + 100);
    let c = crowd(&server, spec, ROOM + 12);
    assert_eq!((c.served.len(), c.refused), (ROOM, 12));
    says_it_refuses(&server, &format!("{ROOM} connections (RLIMIT_NOFILE 1024)"));
}

/// Starting up, seen from outside: on a port in use the server says so in
/// one `error:` line; with `--addr localhost:0` it listens on 127.0.0.1 and
/// serves.
pub fn start_up_from_outside(spec: &EchoSpec) {
    super::cli::port_in_use_is_one_error_line(spec.bin, spec.args);
    let server = super::cli::listens_on_a_host_name(spec.bin, spec.args);
    assert_eq!(server.connect().request("by name"), spec.reply("by name"));
}

/// An article's program starting up, one `error:` line for an address in
/// use and one `usage:` line for anything but `--addr`
/// ([`cli::article_start_up`](super::cli::article_start_up)), and the first
/// instance still serving afterwards.
pub fn article_start_up(spec: &EchoSpec) {
    let first = super::cli::article_start_up(spec.bin, spec.args);
    assert_eq!(
        first.connect().request("still here"),
        spec.reply("still here")
    );
}

/// SIGTERM ends the server by that signal, after it has served a client.
#[cfg(unix)]
pub fn ends_by_sigterm(spec: &EchoSpec) {
    let server = spec.start(&[]);
    let mut client = server.connect();
    assert_eq!(
        client.request("before the end"),
        spec.reply("before the end")
    );
    super::cli::ends_by_sigterm(server);
    assert!(client.read_to_end().map_or(true, |rest| rest.is_empty()));
}

/// A broken listener ends the server with one `error:` line and exit 1
/// ([`cli::a_broken_listener_ends`](super::cli::a_broken_listener_ends)),
/// after it has served a client.
#[cfg(target_os = "linux")]
pub fn a_broken_listener_ends_the_server(spec: &EchoSpec) {
    let server = spec.start(&[]);
    assert_eq!(
        server.connect().request("before the break"),
        spec.reply("before the break")
    );
    super::cli::a_broken_listener_ends(server);
}

/// The outcome of [`crowd`]: the clients that were served, still connected,
/// and how many were told `ERR server full` and closed.
#[derive(Debug)]
pub struct Crowd {
    /// Connected clients whose request was answered correctly.
    pub served: Vec<super::LineClient>,
    /// Clients that got `ERR server full` followed by the end of the stream.
    pub refused: usize,
}

/// Opens `n` connections at once, then sends one request on each and reads
/// one line: either the right reply or `ERR server full` followed by the
/// close. Any other answer fails the test.
pub fn crowd(server: &TestServer, spec: &EchoSpec, n: usize) -> Crowd {
    let clients: Vec<_> = (0..n).map(|_| server.connect()).collect();
    let mut served = Vec::new();
    let mut refused = 0;
    for (i, mut client) in clients.into_iter().enumerate() {
        let line = format!("crowd member {i}");
        client.send(format!("{line}\n").as_bytes());
        let answer = client.read_line().expect("an answer");
        if answer == spec.reply(&line).as_bytes() {
            served.push(client);
        } else if answer == ERR_SERVER_FULL.as_bytes() {
            // Then the close: a clean end of stream, or a reset if our
            // request reached a socket the server had already closed.
            match client.read_to_end() {
                Ok(rest) => assert!(rest.is_empty(), "data after ERR server full"),
                Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
            }
            refused += 1;
        } else {
            panic!(
                "client {i} got {:?}",
                summary(&String::from_utf8_lossy(&answer))
            );
        }
    }
    Crowd { served, refused }
}

/// CPU time the server uses over two seconds while ten clients are
/// connected and silent. A server that waits in the kernel uses about none.
#[cfg(target_os = "linux")]
pub fn idle_cpu(server: &TestServer) -> Duration {
    use std::time::Duration;

    use super::proc;
    let clients: Vec<_> = (0..10).map(|_| server.connect()).collect();
    let before = proc::tree_cpu(server.pid());
    thread::sleep(Duration::from_secs(2));
    let used = proc::tree_cpu(server.pid()) - before;
    drop(clients);
    used
}

/// Descriptor exhaustion. With `RLIMIT_NOFILE` lowered to 64 once the
/// server has sized itself by the limit it started with (so its room sits
/// far above what it may open: as if something else in the process had
/// taken the descriptors), the server fills its table, and the clients past
/// it wait unaccepted while `accept` fails with EMFILE. It must not die, must not spin (under 0.5 s of CPU over 2 s while
/// more clients keep arriving), and must serve again once clients leave.
#[cfg(target_os = "linux")]
pub fn survives_descriptor_exhaustion(spec: &EchoSpec) {
    use std::time::Duration;

    use super::{eventually, lower_descriptor_limit, proc};

    const LIMIT: u64 = 64;
    let server = spec.start(&[]);
    lower_descriptor_limit(server.pid(), LIMIT);
    let room = LIMIT as usize - proc::fds_below(server.pid(), LIMIT);

    // Every client sends a line at once; those the server cannot take wait
    // in the listen queue.
    let mut clients: Vec<_> = (0..room + 10)
        .map(|i| {
            let mut c = server.connect();
            c.send(format!("early {i}\n").as_bytes());
            c
        })
        .collect();
    if spec.concurrent {
        assert!(
            eventually(|| proc::fds_below(server.pid(), LIMIT) == LIMIT as usize),
            "the server never filled its descriptor table: {} of {LIMIT} held, room {room}, \
             {} clients\n{}",
            proc::fds_below(server.pid(), LIMIT),
            clients.len(),
            server.log()
        );
    }
    let before = proc::tree_cpu(server.pid());
    let mut more = Vec::new();
    for _ in 0..20 {
        more.push(server.connect());
        thread::sleep(Duration::from_millis(100));
    }
    let used = proc::tree_cpu(server.pid()) - before;
    eprintln!(
        "{} {:?}: CPU while out of descriptors for 2 s: {used:?}",
        spec.bin, spec.args
    );
    if !spec.busy_polls {
        assert!(used < Duration::from_millis(500), "{used:?} of CPU in 2 s");
    }
    assert!(server_alive(&server), "the server died");

    // Clients leave; every one still connected gets its answer, and so
    // does a newcomer.
    drop(more);
    let keep = clients.split_off(room - 20);
    drop(clients);
    for (i, mut c) in keep.into_iter().enumerate() {
        let line = format!("early {}", room - 20 + i);
        assert_eq!(
            c.read_line().expect("an answer"),
            spec.reply(&line).as_bytes()
        );
    }
    assert!(eventually(|| {
        let mut newcomer = server.connect();
        newcomer.send(b"newcomer\n");
        newcomer
            .read_line()
            .is_ok_and(|l| l == spec.reply("newcomer").as_bytes())
    }));
}

/// Process exhaustion, the counterpart of descriptor exhaustion for a
/// server that forks a process per client. It meets its limit two ways:
/// `--max-conns` (3 here), and, where the test runs as root, the process
/// limit (`RLIMIT_NPROC`, room for 3 children, the server started as
/// `nobody` so that the limit applies). Either way the clients past it are
/// told `ERR server full`; the server must not die, must not spin (under
/// 0.5 s of CPU over 2 s while more clients keep arriving), and must serve
/// again once children exit.
#[cfg(target_os = "linux")]
pub fn survives_process_exhaustion(spec: &EchoSpec) {
    use super::start_as_nobody;

    const ROOM: usize = 3;
    eprintln!("{} {:?}: at --max-conns {ROOM}", spec.bin, spec.args);
    let server = spec.start(&["--max-conns", &ROOM.to_string()]);
    exhaust_processes(spec, &server, ROOM);
    says_it_refuses(&server, "(--max-conns)");

    if let Some(server) = start_as_nobody(spec.bin, spec.args, ROOM as u64) {
        eprintln!("{} {:?}: at RLIMIT_NPROC", spec.bin, spec.args);
        exhaust_processes(spec, &server, ROOM);
        // The refusals came from fork failing, not from some other limit.
        says_it_refuses(&server, "fork failed");
    } else {
        eprintln!("not root: the RLIMIT_NPROC half of this check needs root, and was not run");
    }
}

/// `room` clients are served, 20 more arriving over 2 s are refused, the
/// server stays up and idle, and serves again once the first ones leave.
#[cfg(target_os = "linux")]
fn exhaust_processes(spec: &EchoSpec, server: &TestServer, room: usize) {
    use std::time::Duration;

    use super::{eventually, proc};

    let mut served: Vec<_> = (0..room).map(|_| server.connect()).collect();
    for (i, c) in served.iter_mut().enumerate() {
        let line = format!("served {i}");
        assert_eq!(c.request(&line), spec.reply(&line));
    }
    let before = proc::tree_cpu(server.pid());
    for i in 0..20 {
        let mut c = server.connect();
        c.send(format!("one too many {i}\n").as_bytes());
        assert_eq!(
            c.read_line().expect("an answer"),
            ERR_SERVER_FULL.as_bytes(),
            "client {i} past the limit"
        );
        thread::sleep(Duration::from_millis(100));
    }
    let used = proc::tree_cpu(server.pid()) - before;
    eprintln!("CPU while at the limit for 2 s: {used:?}");
    assert!(used < Duration::from_millis(500), "{used:?} of CPU in 2 s");
    assert!(server_alive(server), "the server died");
    for (i, c) in served.iter_mut().enumerate() {
        let line = format!("still served {i}");
        assert_eq!(c.request(&line), spec.reply(&line));
    }
    drop(served);
    assert!(eventually(|| {
        let mut newcomer = server.connect();
        newcomer.send(b"newcomer\n");
        newcomer
            .read_line()
            .is_ok_and(|l| l == spec.reply("newcomer").as_bytes())
    }));
}

/// Memory per idle connection that has spoken: `conns` clients each make
/// one round trip and stay connected; the server's resident memory must grow
/// by less than `limit_bytes` per connection over a baseline taken after
/// start-up (and after one warm-up client, so that buffers a server sets up
/// once are in the baseline).
#[cfg(target_os = "linux")]
pub fn memory_per_spoken_connection(spec: &EchoSpec, conns: usize, limit_bytes: u64) {
    use std::time::Duration;

    use super::{eventually, proc, raise_nofile_limit};

    let limit = raise_nofile_limit(2 * conns as u64 + 1000);
    assert!(
        limit >= 2 * conns as u64 + 100,
        "RLIMIT_NOFILE is only {limit}"
    );
    let server = spec.start(&[]);
    let fds = proc::tree_fd_count(server.pid());
    let mut warm = server.connect();
    assert_eq!(warm.request("warm up"), spec.reply("warm up"));
    drop(warm);
    // The baseline once the warm-up client is gone from the server too.
    assert!(eventually(|| proc::tree_fd_count(server.pid()) == fds));
    let before = proc::tree_rss_kib(server.pid());
    let mut clients: Vec<_> = (0..conns).map(|_| server.connect()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let line = format!("round trip {i}");
        assert_eq!(c.request(&line), spec.reply(&line));
    }
    assert!(eventually(
        || proc::tree_fd_count(server.pid()) >= fds + conns
    ));
    thread::sleep(Duration::from_millis(100));
    let grown = proc::tree_rss_kib(server.pid()).saturating_sub(before);
    let per_conn = grown * 1024 / conns as u64;
    eprintln!(
        "{} {:?}: RSS grew {grown} KiB for {conns} connections that spoke, {per_conn} bytes each",
        spec.bin, spec.args
    );
    assert!(
        per_conn < limit_bytes,
        "{per_conn} bytes per idle connection (limit {limit_bytes})"
    );
    drop(clients);
}

/// `n` clients at once, for a server with no descriptor wall: every one is
/// served, every seventh again afterwards (from the last, so the newest
/// connections are asked first), and then a newcomer.
#[cfg(unix)]
pub fn all_served_at_once(spec: &EchoSpec, n: usize) {
    let want = 2 * n as u64 + 100;
    let limit = super::raise_nofile_limit(want + 2000);
    assert!(limit >= want, "RLIMIT_NOFILE is only {limit}");
    let server = spec.start(&[]);
    let mut c = crowd(&server, spec, n);
    eprintln!(
        "{} {:?}, {n} clients: {} served, {} refused",
        spec.bin,
        spec.args,
        c.served.len(),
        c.refused
    );
    assert_eq!((c.served.len(), c.refused), (n, 0));
    for (i, client) in c.served.iter_mut().enumerate().rev().step_by(7) {
        let line = format!("again {i}");
        assert_eq!(client.request(&line), spec.reply(&line));
    }
    let mut newcomer = server.connect();
    assert_eq!(newcomer.request("newcomer"), spec.reply("newcomer"));
}

/// A server that waits in the kernel uses next to no CPU with ten idle
/// clients: under 0.2 s over 2 s.
#[cfg(target_os = "linux")]
pub fn idle_costs_no_cpu(spec: &EchoSpec) {
    let server = spec.start(&[]);
    let used = idle_cpu(&server);
    assert!(used < Duration::from_millis(200), "{used:?} of CPU in 2 s");
}

/// `clients` clients connect, then all at once send `requests` lines in one
/// write each, read every reply in order, and send as many more one at a
/// time: a burst that makes many sockets ready in the same instant.
pub fn burst(server: &TestServer, spec: &EchoSpec, clients: usize, requests: usize) {
    use std::sync::Barrier;

    let start_together = Barrier::new(clients);
    thread::scope(|s| {
        for c in 0..clients {
            let start_together = &start_together;
            s.spawn(move || {
                let mut client = server.connect();
                start_together.wait();
                let batch: String = (0..requests)
                    .map(|r| format!("client {c} line {r}\n"))
                    .collect();
                client.send(batch.as_bytes());
                for r in 0..requests {
                    let want = spec.reply(&format!("client {c} line {r}"));
                    assert_eq!(client.read_line().unwrap(), want.as_bytes());
                }
                for r in 0..requests {
                    let line = format!("client {c} again {r}");
                    assert_eq!(client.request(&line), spec.reply(&line));
                }
            });
        }
    });
}

#[cfg(target_os = "linux")]
fn server_alive(server: &TestServer) -> bool {
    std::path::Path::new(&format!("/proc/{}", server.pid())).exists()
}

/// Descriptor hygiene: 10 000 connections that end every way a client can
/// end one (graceful close, reset, half-close, abandoned mid-line) leave the
/// server's descriptor count where it started and its memory within a few
/// MiB of it.
#[cfg(target_os = "linux")]
pub fn churn_leaves_no_trace(spec: &EchoSpec) {
    use super::{eventually, proc};

    let server = spec.start(&[]);
    // The baseline: before any client, then once a first one has come and gone.
    // The whole process tree, for a server that forks.
    let fds = proc::tree_fd_count(server.pid());
    let mut warm = server.connect();
    assert_eq!(warm.request("warm"), spec.reply("warm"));
    drop(warm);
    assert!(eventually(|| proc::tree_fd_count(server.pid()) == fds));
    let rss = proc::tree_rss_kib(server.pid());

    for i in 0..10_000 {
        let mut c = server.connect();
        match i % 4 {
            0 => {
                let line = format!("graceful {i}");
                assert_eq!(c.request(&line), spec.reply(&line));
            }
            1 => {
                c.send(b"reset in the middle of a li");
                c.reset();
            }
            2 => {
                c.send(b"half\nclosed");
                c.shutdown_write();
                let got = c.read_to_end().expect("replies, then a clean close");
                assert_eq!(got, (spec.reply("half") + &spec.reply("closed")).as_bytes());
            }
            _ => c.send(b"abandoned mid-li"),
        }
    }
    assert!(
        eventually(|| proc::tree_fd_count(server.pid()) == fds),
        "descriptors: {} before, {} after",
        fds,
        proc::tree_fd_count(server.pid())
    );
    let grown = proc::tree_rss_kib(server.pid()).saturating_sub(rss);
    eprintln!(
        "{} {:?}: RSS grew {grown} KiB over 10 000 connections",
        spec.bin, spec.args
    );
    assert!(grown < 4 * 1024, "RSS grew by {grown} KiB");
}

/// The scale the articles argue about. `n` connections (15 000 in the
/// tests), opened concurrently, each make one round trip and are held;
/// then `burst` of them (5000) send a line at the same instant, every
/// reply arrives right, and a newcomer is still served.
///
/// `extra` raises the server's `--max-conns` past `n`. Run it from a test
/// binary of its own: it holds `n` descriptors of this process's 20 000.
#[cfg(target_os = "linux")]
pub fn holds_a_crowd(spec: &EchoSpec, n: usize, burst: usize, extra: &[&str]) {
    use std::io::Write;

    use super::scale;

    let _alone = scale::one_at_a_time();
    let limit = super::raise_nofile_limit(n as u64 + 1000);
    assert!(limit >= n as u64 + 200, "RLIMIT_NOFILE is only {limit}");
    let server = spec.start(extra);
    let line_done = |b: &[u8]| b.ends_with(b"\n");
    let mut crowd = scale::open_crowd(server.addr(), n, |c, i| {
        let line = format!("crowd member {i}");
        c.write_all(format!("{line}\n").as_bytes())
            .map_err(|e| e.to_string())?;
        let got = scale::read_reply(c, line_done)?;
        if got != spec.reply(&line).as_bytes() {
            return Err(format!(
                "answered {:?}",
                summary(&String::from_utf8_lossy(&got))
            ));
        }
        Ok(())
    });
    eprintln!(
        "{} {:?}: holding {} connections",
        spec.bin,
        spec.args,
        crowd.len()
    );
    let answered = scale::burst(
        &mut crowd[..burst],
        |i| format!("burst {i}\n").into_bytes(),
        line_done,
        |got, i| {
            let want = spec.reply(&format!("burst {i}"));
            if got == want.as_bytes() {
                Ok(())
            } else {
                Err(format!(
                    "answered {:?}",
                    summary(&String::from_utf8_lossy(got))
                ))
            }
        },
    );
    assert_eq!(answered, burst);
    let mut newcomer = server.connect();
    assert_eq!(newcomer.request("newcomer"), spec.reply("newcomer"));
    assert!(server_alive(&server), "the server died");
    drop(crowd);
}
