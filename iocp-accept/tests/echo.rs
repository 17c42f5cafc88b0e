//! Black-box tests of iocp-accept on Linux, where it runs on io_uring.
//!
//! If this kernel refuses io_uring (a seccomp filter, a sysctl), the tests
//! say so and pass without running, unless IOCP_ACCEPT_REQUIRE_URING=1
//! (set by .ci/run) makes that a failure.
#![cfg(target_os = "linux")]

use std::process::Command;
use std::time::Duration;

use shared::testing::suite::{EchoSpec, crowd};
use shared::testing::{TestServer, eventually, proc, raise_nofile_limit};

const SPEC: EchoSpec = EchoSpec {
    bin: env!("CARGO_BIN_EXE_iocp-accept"),
    args: &[],
    suffix: "",
    concurrent: true,
};

/// Whether io_uring can be used here; panics instead of skipping when the
/// environment demands it.
fn uring_available() -> bool {
    match io_uring::IoUring::new(8) {
        Ok(_) => true,
        Err(e) if std::env::var_os("IOCP_ACCEPT_REQUIRE_URING").is_some_and(|v| v == "1") => {
            panic!("io_uring is required (IOCP_ACCEPT_REQUIRE_URING=1) but unavailable: {e}")
        }
        Err(e) => {
            eprintln!("skipped: io_uring is not available here ({e})");
            false
        }
    }
}

/// The echo suite, each check behind the io_uring probe.
macro_rules! uring_suite {
    ($($check:ident),* $(,)?) => {
        mod protocol {
            $(#[test] fn $check() {
                if super::uring_available() {
                    shared::testing::suite::$check(&super::SPEC);
                }
            })*
        }
    };
}

uring_suite!(
    one_request,
    pipelined_1000,
    byte_by_byte,
    concurrent_50x100,
    over_long_line,
    half_close,
    reset_mid_stream,
    non_reading_client,
);

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

/// Out of descriptors: accepts fail with EMFILE while the table is full,
/// the server neither dies nor spins, and it serves again once clients leave.
#[test]
fn accept_failing_with_emfile_is_survived() {
    if !uring_available() {
        return;
    }
    // Low enough to run out with a few dozen clients.
    let limit = 64;
    let mut command = Command::new(SPEC.bin);
    shared::testing::limit_descriptors(&mut command, limit);
    let server = TestServer::start_command(command);
    let room = limit as usize - proc::fds_below(server.pid(), limit);

    // Fill the table; the rest wait in the listen queue, unaccepted.
    let mut clients: Vec<_> = (0..room + 10).map(|_| server.connect()).collect();
    for (i, client) in clients.iter_mut().take(room).enumerate() {
        let line = format!("fits {i}");
        assert_eq!(client.request(&line), SPEC.reply(&line));
    }
    let mut waiting = clients.split_off(room);
    for client in &mut waiting {
        client.send(b"queued\n");
    }
    assert!(waiting[0].is_silent_for(Duration::from_millis(300)));

    // While full, more clients keep arriving; the server must not spin.
    let before = proc::total_cpu(server.pid());
    let mut more = Vec::new();
    for _ in 0..20 {
        more.push(server.connect());
        std::thread::sleep(Duration::from_millis(100));
    }
    let used = proc::total_cpu(server.pid()) - before;
    eprintln!("CPU while out of descriptors for 2 s: {used:?}");
    assert!(used < Duration::from_millis(500), "{used:?} of CPU in 2 s");

    // Descriptors free up: the queued clients are accepted and answered,
    // and so is a newcomer.
    clients.truncate(room - 40);
    for client in waiting.iter_mut() {
        assert_eq!(client.read_line().unwrap(), b"QUEUED\n");
    }
    drop(more);
    assert!(eventually(|| {
        let mut newcomer = server.connect();
        newcomer.send(b"newcomer\n");
        newcomer.read_line().unwrap() == b"NEWCOMER\n"
    }));
}
