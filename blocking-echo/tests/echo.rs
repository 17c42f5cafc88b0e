//! Black-box tests of blocking-echo in each of its modes.

use std::time::Duration;

use testkit::TestServer;
use testkit::suite::EchoSpec;

const BIN: &str = env!("CARGO_BIN_EXE_blocking-echo");

mod serial {
    testkit::echo_suite!(testkit::suite::EchoSpec {
        bin: super::BIN,
        args: &["--mode", "serial"],
        suffix: "",
        concurrent: false,
        busy_polls: false,
    });
}

mod thread {
    testkit::echo_suite!(testkit::suite::EchoSpec {
        bin: super::BIN,
        args: &["--mode", "thread"],
        suffix: "",
        concurrent: true,
        busy_polls: false,
    });
}

mod pool {
    testkit::echo_suite!(testkit::suite::EchoSpec {
        bin: super::BIN,
        args: &["--mode", "pool", "--workers", "4"],
        suffix: "",
        concurrent: true,
        busy_polls: false,
    });
}

/// How long a client must go unanswered to count as "waiting".
const WAIT: Duration = Duration::from_millis(300);

/// The article's serial loop: a second client is not answered until the
/// first one leaves, and then it is.
#[test]
fn serial_second_client_waits_for_the_first() {
    let server = TestServer::start(BIN, &["--mode", "serial"]);
    let mut first = server.connect();
    assert_eq!(first.request("first"), "FIRST\n");

    let mut second = server.connect();
    second.send(b"second\n");
    assert!(
        second.is_silent_for(WAIT),
        "second client answered while the first was served"
    );
    assert_eq!(first.request("still first"), "STILL FIRST\n");

    drop(first);
    assert_eq!(second.read_line().unwrap(), b"SECOND\n");
}

/// Pool mode with one worker and a queue of one: the third client finds the
/// queue full and is told so; the queued one is served once the worker frees.
#[test]
fn pool_refuses_when_the_queue_is_full() {
    let server = TestServer::start(BIN, &["--mode", "pool", "--workers", "1", "--queue", "1"]);
    let mut busy = server.connect();
    assert_eq!(busy.request("in a worker"), "IN A WORKER\n");

    // Accepted in order, so `queued` takes the one place before `refused`.
    let mut queued = server.connect();
    queued.send(b"queued\n");
    let mut refused = server.connect();
    assert_eq!(refused.read_line().unwrap(), b"ERR server full\n");
    assert_eq!(refused.read_to_end().unwrap(), b"");

    assert!(
        queued.is_silent_for(WAIT),
        "queued client answered with the only worker busy"
    );
    drop(busy);
    assert_eq!(queued.read_line().unwrap(), b"QUEUED\n");
}

/// Thread mode stops at --max-conns threads: more clients are refused, and
/// places free when clients leave.
#[test]
fn thread_mode_caps_connections() {
    testkit::suite::refuses_past_max_conns(&thread::SPEC);
}

/// Thread mode's threads end with their connections.
#[cfg(target_os = "linux")]
#[test]
fn thread_mode_threads_end_with_their_clients() {
    use testkit::{eventually, proc};
    let server = TestServer::start(BIN, &["--mode", "thread"]);
    let baseline = proc::thread_count(server.pid());
    let mut clients: Vec<_> = (0..20).map(|_| server.connect()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.request(&format!("c{i}")), format!("C{i}\n"));
    }
    assert_eq!(proc::thread_count(server.pid()), baseline + 20);
    drop(clients);
    assert!(eventually(|| proc::thread_count(server.pid()) == baseline));
}

#[test]
fn suite_spec_reply_matches_protocol() {
    let spec = EchoSpec {
        bin: BIN,
        args: &[],
        suffix: "",
        concurrent: false,
        busy_polls: false,
    };
    assert_eq!(spec.reply("abc"), "ABC\n");
}

/// `--help` is user documentation, with no developer notes in it.
#[test]
fn help_is_user_documentation() {
    testkit::check_help(env!("CARGO_BIN_EXE_blocking-echo"));
}
