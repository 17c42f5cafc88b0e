//! The signal queue overflowing, on purpose. A test binary of its own:
//! `RLIMIT_SIGPENDING` counts every pending signal of the user, so another
//! signal-driven server running at the same time would share the queue.
#![cfg(target_os = "linux")]

use std::process::Command;

use testkit::TestServer;

mod common;

use common::SPEC;

/// With room for 4 queued signals, 200 clients sending at once overflow the
/// queue. The kernel falls back to plain SIGIO, the server checks every
/// connection, and every reply still arrives, in order; the log shows that
/// the overflow happened, so the path this test is for really ran.
#[test]
fn every_reply_arrives_when_the_signal_queue_overflows() {
    const CLIENTS: usize = 200;
    const REQUESTS: usize = 20;
    let limit = testkit::raise_nofile_limit(4096);
    assert!(
        limit >= 2 * CLIENTS as u64 + 100,
        "RLIMIT_NOFILE is only {limit}"
    );
    let mut command = Command::new(SPEC.bin);
    command.env("RUST_LOG", "info");
    testkit::limit_pending_signals(&mut command, 4);
    let server = TestServer::start_command(command);
    testkit::suite::burst(&server, &SPEC, CLIENTS, REQUESTS);
    let log = server.stop();
    let overflow = log
        .lines()
        .find(|l| l.contains("overflowed"))
        .unwrap_or_else(|| panic!("no overflow in the log:\n{log}"));
    eprintln!("{overflow}");
    assert!(log.contains("real-time signal queue full"), "{log}");
}
