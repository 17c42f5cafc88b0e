//! Black-box tests of coroutine-echo.

use testkit::suite::{EchoSpec, crowd};

const SPEC: EchoSpec = EchoSpec {
    bin: env!("CARGO_BIN_EXE_coroutine-echo"),
    args: &[],
    suffix: "",
    concurrent: true,
    busy_polls: false,
};

mod protocol {
    testkit::echo_suite!(super::SPEC);
}

/// One thread, 5000 tasks: 5000 clients at once are all served, each
/// again afterwards, then a newcomer.
#[cfg(unix)]
#[test]
fn five_thousand_clients_at_once() {
    let limit = testkit::raise_nofile_limit(12_000);
    assert!(limit >= 10_100, "RLIMIT_NOFILE is only {limit}");
    let server = SPEC.start(&[]);
    let mut c = crowd(&server, &SPEC, 5000);
    eprintln!(
        "5000 clients: {} served, {} refused",
        c.served.len(),
        c.refused
    );
    assert_eq!((c.served.len(), c.refused), (5000, 0));
    for (i, client) in c.served.iter_mut().enumerate().rev().step_by(7) {
        let line = format!("again {i}");
        assert_eq!(client.request(&line), SPEC.reply(&line));
    }
    let mut newcomer = server.connect();
    assert_eq!(newcomer.request("newcomer"), "NEWCOMER\n");
}

/// Past --max-conns, a client is told and closed; the rest are served.
#[test]
fn refuses_past_max_conns() {
    testkit::suite::refuses_past_max_conns(&SPEC);
}

/// Every task waits in the reactor: ten idle clients, no CPU to speak of.
#[cfg(target_os = "linux")]
#[test]
fn idle_connections_cost_no_cpu() {
    let server = SPEC.start(&[]);
    let used = testkit::suite::idle_cpu(&server);
    assert!(
        used < std::time::Duration::from_millis(200),
        "{used:?} of CPU in 2 s"
    );
}

/// An idle task holds no buffer: 5000 connections that each made a round
/// trip add less than 2 KiB of resident memory apiece, task included.
#[cfg(target_os = "linux")]
#[test]
fn an_idle_task_holds_no_buffer() {
    testkit::suite::memory_per_spoken_connection(&SPEC, 5000, 2048);
}

/// `--help` is user documentation, with no developer notes in it.
#[test]
fn help_is_user_documentation() {
    testkit::check_help(env!("CARGO_BIN_EXE_coroutine-echo"));
}
