//! Black-box tests of iocp-accept on Linux, where it runs on io_uring.
//!
//! If this kernel refuses io_uring (a seccomp filter, a sysctl), the tests
//! say so and pass without running, unless IOCP_ACCEPT_REQUIRE_URING=1
//! (set by .ci/run) makes that a failure.
#![cfg(target_os = "linux")]

use std::thread;
use std::time::Duration;

use testkit::raise_nofile_limit;
use testkit::suite::{EchoSpec, crowd};

mod common;

use common::{SPEC, uring_available};

/// The single-shot loop, IOCP's shape.
const SINGLE: EchoSpec = EchoSpec {
    args: &["--single-shot"],
    ..SPEC
};

/// The echo suite for one loop, each check behind the io_uring probe.
macro_rules! uring_suite {
    ($module:ident, $spec:ident: $($check:ident),* $(,)?) => {
        mod $module {
            $(#[test] fn $check() {
                if super::uring_available() {
                    testkit::suite::$check(&super::$spec);
                }
            })*
        }
    };
}

uring_suite!(protocol, SPEC:
    one_request,
    pipelined_1000,
    byte_by_byte,
    concurrent_50x100,
    over_long_line,
    half_close,
    reset_mid_stream,
    non_reading_client,
    survives_descriptor_exhaustion,
    churn_leaves_no_trace,
    start_up_from_outside,
    ends_by_sigterm,
    over_long_line_then_half_close,
    descriptor_limit_raised,
    replies_are_not_held_back,
    a_broken_listener_ends_the_server,
);

uring_suite!(single_shot_protocol, SINGLE:
    one_request,
    pipelined_1000,
    byte_by_byte,
    concurrent_50x100,
    over_long_line,
    half_close,
    reset_mid_stream,
    non_reading_client,
    survives_descriptor_exhaustion,
    churn_leaves_no_trace,
    start_up_from_outside,
    ends_by_sigterm,
    over_long_line_then_half_close,
    descriptor_limit_raised,
    replies_are_not_held_back,
    a_broken_listener_ends_the_server,
);

/// Many clients that never read, against the default ring, a ring of four
/// buffers (which runs dry at once, so receives end with `-ENOBUFS` and
/// are re-armed), and the single-shot loop.
#[test]
fn many_non_reading_clients() {
    if uring_available() {
        testkit::suite::many_non_reading_clients(&SPEC, &[]);
        testkit::suite::many_non_reading_clients(&SPEC, &["--buffers", "4"]);
        testkit::suite::many_non_reading_clients(&SINGLE, &[]);
    }
}

/// Past --max-conns, clients are told and closed; the rest are served.
#[test]
fn refuses_past_max_conns() {
    if uring_available() {
        testkit::suite::refuses_past_max_conns(&SPEC);
    }
}

/// A thousand clients at once, every one served.
#[test]
fn a_thousand_clients_at_once() {
    if !uring_available() {
        return;
    }
    assert!(raise_nofile_limit(4096) >= 2100);
    let server = SPEC.start(&[]);
    let mut c = crowd(&server, &SPEC, 1000);
    assert_eq!((c.served.len(), c.refused), (1000, 0));
    for (i, client) in c.served.iter_mut().enumerate().step_by(13) {
        let line = format!("again {i}");
        assert_eq!(client.request(&line), SPEC.reply(&line));
    }
}

/// Completions come back in the order they finished, an accept's among
/// the receives', and each receive completion brings one buffer: two
/// clients that pipeline without pause do not hold the loop, with no
/// budget needed.
#[test]
fn a_flooder_does_not_hold_the_loop() {
    if uring_available() {
        testkit::suite::a_flooder_does_not_hold_the_loop(&SPEC, false);
    }
}

/// The same with the single-shot loop, one receive armed per connection.
#[test]
fn single_shot_a_flooder_does_not_hold_the_loop() {
    if uring_available() {
        testkit::suite::a_flooder_does_not_hold_the_loop(&SINGLE, false);
    }
}

/// `--help` is user documentation, with no developer notes in it.
#[test]
fn help_is_user_documentation() {
    testkit::check_help(env!("CARGO_BIN_EXE_iocp-accept"));
}

/// The single-shot loop also serves a thousand clients at once.
#[test]
fn single_shot_a_thousand_clients_at_once() {
    if !uring_available() {
        return;
    }
    assert!(raise_nofile_limit(4096) >= 2100);
    let server = SINGLE.start(&[]);
    let c = crowd(&server, &SINGLE, 1000);
    assert_eq!((c.served.len(), c.refused), (1000, 0));
}

/// Multishot: an idle connection holds no buffer. 5000 connections that
/// each made a round trip add less than 1 KiB apiece; the ring's buffers
/// are touched at start-up, so they are in the baseline.
#[test]
fn an_idle_connection_holds_no_buffer() {
    if uring_available() {
        testkit::suite::memory_per_spoken_connection(&SPEC, 5000, 1024);
    }
}

/// A ring of 4 buffers and 200 clients sending at once: the ring runs dry
/// (`-ENOBUFS`) again and again, yet every reply arrives, in order, and the
/// log counts the receives re-armed after it (a line per burst), so the
/// path really ran.
#[test]
fn every_reply_arrives_when_the_buffer_ring_runs_dry() {
    use std::process::Command;

    if !uring_available() {
        return;
    }
    const CLIENTS: usize = 200;
    const REQUESTS: usize = 20;
    assert!(raise_nofile_limit(4096) >= 2 * CLIENTS as u64 + 100);
    let mut command = Command::new(SPEC.bin);
    command.args(["--buffers", "4"]);
    let server = testkit::TestServer::start_command(command);
    testkit::suite::burst(&server, &SPEC, CLIENTS, REQUESTS);
    // Past the second the burst's count is told by the next batch that
    // needs no re-arm: a newcomer's.
    thread::sleep(Duration::from_millis(1100));
    let mut newcomer = server.connect();
    assert_eq!(newcomer.request("newcomer"), SPEC.reply("newcomer"));
    let log = server.stop();
    assert!(log.contains("out of provided buffers: receives that find none are re-armed"));
    let rearmed: u64 = log
        .lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once("out of provided buffers for ")?;
            let (_, rest) = rest.split_once(" s: ")?;
            rest.split_once(" receives re-armed after ENOBUFS")?
                .0
                .parse::<u64>()
                .ok()
        })
        .sum();
    eprintln!("receives re-armed after ENOBUFS: {rearmed}");
    assert!(rearmed > 0, "the ring never ran dry");
}

/// `--buffers` must be a power of two the kernel accepts, and means
/// nothing to the single-shot loop, which has no ring of buffers.
#[test]
fn buffers_must_be_a_power_of_two_and_multishot() {
    let power = "must be a whole number, a power of two from 1 to 32768";
    for bad in ["0", "3", "65536", "-4", "many"] {
        testkit::cli::refused(SPEC.bin, &["--buffers", bad], power);
    }
    testkit::cli::refused(
        SPEC.bin,
        &["--single-shot", "--buffers", "8"],
        "cannot be used with",
    );
    let entries = "must be a whole number, a power of two from 1 to 4096";
    for bad in ["0", "3", "8192"] {
        testkit::cli::refused(SPEC.bin, &["--ring-entries", bad], entries);
    }
}

/// A burst bigger than the submission queue: with `--ring-entries 2` the
/// queue holds 2 entries, and 16 connections, each with lines waiting,
/// reach the loop together (the server is stopped while they are sent,
/// then continued), so their sends overflow it in the middle of a batch. The loop submits early and goes on (a count in its debug log
/// says so), and every reply arrives, in order.
#[test]
fn a_full_submission_queue_mid_batch_is_submitted_and_the_loop_goes_on() {
    if !uring_available() {
        return;
    }
    const CLIENTS: usize = 16;
    for spec in [SPEC, SINGLE] {
        let mut command = std::process::Command::new(spec.bin);
        command
            .args(spec.args)
            .args(["--ring-entries", "2"])
            .env("RUST_LOG", "warn,iocp_accept::submissions=debug");
        let server = testkit::TestServer::start_command(command);
        let mut clients: Vec<_> = (0..CLIENTS).map(|_| server.connect()).collect();
        for (i, c) in clients.iter_mut().enumerate() {
            assert_eq!(
                c.request(&format!("hello {i}")),
                spec.reply(&format!("hello {i}"))
            );
        }
        let signal = |sig| {
            // SAFETY: kill only sends a signal, to the server this test started.
            assert_eq!(unsafe { libc::kill(server.pid() as libc::pid_t, sig) }, 0);
        };
        let mut early = false;
        for round in 0..20 {
            signal(libc::SIGSTOP);
            for (i, c) in clients.iter_mut().enumerate() {
                for part in 0..3 {
                    c.send(format!("round {round} client {i} part {part}\n").as_bytes());
                }
            }
            signal(libc::SIGCONT);
            for (i, c) in clients.iter_mut().enumerate() {
                for part in 0..3 {
                    let line = format!("round {round} client {i} part {part}");
                    assert_eq!(c.read_line().unwrap(), spec.reply(&line).as_bytes());
                }
            }
            early = server
                .log()
                .contains("submission queue full mid-batch: submitted early");
            if early {
                break;
            }
        }
        // The last round's line may still be in the log's pipe.
        let early = early || server.logged_text("submission queue full mid-batch: submitted early");
        assert!(early, "{:?}: the queue never filled mid-batch", spec.args);
    }
}

/// Single-shot: the bound on owed output (1 MiB) counts the send in flight.
///
/// 48 clients each write lines until the server stops reading them, read
/// 64 KiB of the replies (checked byte for byte), then write again until
/// the server stops reading them again. The reading lets the send stuck in
/// flight finish, and the next send take everything owed, a megabyte, of
/// which the kernel takes only part: the clients' small receive buffers and
/// segments (`slow_reader`) keep the server's send buffer, which the kernel
/// sizes from them, small. A loop that counted only the replies not yet in
/// a send would then read another megabyte from each client, holding two;
/// the server's memory may grow by one a client, plus one read's replies,
/// plus a margin.
#[test]
fn single_shot_counts_the_send_in_flight_as_owed() {
    use std::io::Read;
    use testkit::{flood, proc};

    if !uring_available() {
        return;
    }
    const CLIENTS: usize = 48;
    const READ: usize = 64 << 10;
    const CEILING: usize = 32 << 20;
    const ONE_READ: u64 = 64 << 10;
    const MARGIN: u64 = 16 << 20;
    raise_nofile_limit(4 * CLIENTS as u64 + 100);
    let server = SINGLE.start(&[]);
    let mut probe = server.connect();
    assert_eq!(probe.request("warm up"), SINGLE.reply("warm up"));
    let before = proc::tree_pss_kib(server.pid()) * 1024;
    let line = "a reply read slowly, and a send that holds it while in flight..\n";
    assert_eq!(line.len(), 64);
    let lines = line.repeat(1024);
    let replies = line.to_ascii_uppercase().repeat(READ / line.len());
    let addr = server.addr();
    // Each client's stream (kept open until the memory is read), and what
    // it wrote before and after reading.
    let clients: Vec<_> = thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (lines, replies) = (&lines, &replies);
                s.spawn(move || {
                    let mut stream = slow_reader(addr);
                    let first = flood(&mut stream, lines.as_bytes(), CEILING);
                    let mut got = vec![0u8; READ];
                    stream.read_exact(&mut got).expect("replies");
                    assert!(got == replies.as_bytes(), "the replies differ");
                    let second = flood(&mut stream, lines.as_bytes(), CEILING);
                    (stream, first, second)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client"))
            .collect()
    });
    let grown = (proc::tree_pss_kib(server.pid()) * 1024).saturating_sub(before);
    let bound = CLIENTS as u64 * ((1 << 20) + ONE_READ) + MARGIN;
    let written: usize = clients.iter().map(|(_, a, b)| a + b).sum();
    eprintln!(
        "{CLIENTS} clients wrote {} MiB, read {} KiB each; memory grew {} MiB (bound {} MiB)",
        written >> 20,
        READ >> 10,
        grown >> 20,
        bound >> 20
    );
    assert!(grown <= bound, "memory grew {grown} bytes, past {bound}");
    assert_eq!(probe.request("anyone there"), SINGLE.reply("anyone there"));
}

/// A client socket that takes replies in small pieces: a 4 KiB receive
/// buffer and 536-byte segments, so the kernel keeps the server's send
/// buffer for it small too (it sizes one from the peer's segment size and
/// window). Writes time out after 2 s, as testkit's flooder's do.
fn slow_reader(addr: std::net::SocketAddr) -> std::net::TcpStream {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    socket.set_recv_buffer_size(4 << 10).expect("SO_RCVBUF");
    socket.set_send_buffer_size(64 << 10).expect("SO_SNDBUF");
    socket.set_tcp_mss(536).expect("TCP_MAXSEG");
    socket
        .connect_timeout(&addr.into(), testkit::TIMEOUT)
        .expect("connect");
    let stream: std::net::TcpStream = socket.into();
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    stream
        .set_read_timeout(Some(testkit::TIMEOUT))
        .expect("timeout");
    stream
}

/// Multishot: an over-long line that arrives in a receive's last
/// completion ends the connection like any other (`ERR line too long`,
/// then a clean close), and the server goes on serving. A completion queue
/// of 4 entries (`--max-conns 4 --ring-entries 1`) makes the receive end
/// there: 64 KiB sent at once fill 16 buffers, the kernel posts four
/// completions, and the fifth, which finds the queue full, is the last
/// one, with data (`IORING_CQE_F_MORE` clear); the limit of 17 000 bytes is
/// passed in that fifth buffer. (That the ended receive is not cancelled
/// is the multishot module's unit test; on the wire the two look alike.)
#[test]
fn an_over_long_line_in_a_receives_last_completion() {
    use testkit::suite::ERR_LINE_TOO_LONG;

    if !uring_available() {
        return;
    }
    let args = [
        "--max-conns",
        "4",
        "--ring-entries",
        "1",
        "--max-line",
        "17000",
    ];
    let server = SPEC.start(&args);
    for round in 0..3 {
        let mut over = server.connect();
        // Accepted and its receive armed, with the completion queue empty.
        let hello = format!("hello {round}");
        assert_eq!(over.request(&hello), SPEC.reply(&hello));
        over.send(&[b'x'; 64 << 10]);
        assert_eq!(over.read_line().unwrap(), ERR_LINE_TOO_LONG.as_bytes());
        assert_eq!(over.read_to_end().expect("a clean close, not a reset"), b"");
    }
    let mut after = server.connect();
    assert_eq!(after.request("after"), SPEC.reply("after"));
}
