//! Black-box tests of select-echo.
#![cfg(unix)]

use testkit::suite::{self, EchoSpec, crowd};
use testkit::{eventually, raise_nofile_limit};

const SPEC: EchoSpec = EchoSpec {
    bin: env!("CARGO_BIN_EXE_select-echo"),
    args: &[],
    suffix: "",
    concurrent: true,
    busy_polls: false,
};

mod protocol {
    testkit::echo_suite!(super::SPEC);
}

/// Enough descriptors for 1100 clients here and 1100 sockets in the server.
fn room_for_crowds() {
    let limit = raise_nofile_limit(8192);
    assert!(limit >= 2400, "RLIMIT_NOFILE is only {limit}");
}

/// After some of the crowd leaves, a newcomer is served again.
fn newcomer_served_after_some_leave(server: &testkit::TestServer, mut c: suite::Crowd) {
    c.served.truncate(c.served.len() - 100);
    assert!(eventually(|| {
        let mut newcomer = server.connect();
        newcomer.send(b"newcomer\n");
        newcomer.read_line().unwrap() == b"NEWCOMER\n"
    }));
    for (i, client) in c.served.iter_mut().enumerate().step_by(97) {
        let line = format!("still served {i}");
        assert_eq!(client.request(&line), SPEC.reply(&line));
    }
}

/// 1100 clients against the default --max-conns (1000): exactly 1000 are
/// served, the other 100 are told `ERR server full` and closed.
#[test]
fn crowd_beyond_max_conns() {
    room_for_crowds();
    let server = SPEC.start(&[]);
    let c = crowd(&server, &SPEC, 1100);
    eprintln!(
        "--max-conns 1000: {} served, {} refused",
        c.served.len(),
        c.refused
    );
    assert_eq!((c.served.len(), c.refused), (1000, 100));
    newcomer_served_after_some_leave(&server, c);
}

/// With --max-conns out of the way, the FD_SETSIZE wall: clients whose
/// descriptor would be 1024 or more are refused, never put in an fd_set,
/// and everyone below it is served.
#[cfg(target_os = "linux")]
#[test]
fn crowd_at_the_fd_setsize_wall() {
    room_for_crowds();
    let server = SPEC.start(&["--max-conns", "5000"]);
    // Stdio, the listener, and whatever the test runner let it inherit: the
    // kernel hands out the lowest free numbers, so the rest of 0..1024 is
    // what clients can have.
    let held_at_start = testkit::proc::fds_below(server.pid(), 1024);
    let c = crowd(&server, &SPEC, 1100);
    eprintln!(
        "FD_SETSIZE wall: {} served, {} refused, {held_at_start} descriptors held before",
        c.served.len(),
        c.refused
    );
    assert_eq!(c.served.len(), 1024 - held_at_start);
    assert_eq!(c.refused, 1100 - c.served.len());
    newcomer_served_after_some_leave(&server, c);
}

/// Waiting in `select` costs nothing: ten idle clients, no CPU to speak of.
#[cfg(target_os = "linux")]
#[test]
fn idle_connections_cost_no_cpu() {
    let server = SPEC.start(&[]);
    let used = suite::idle_cpu(&server);
    assert!(
        used < std::time::Duration::from_millis(200),
        "{used:?} of CPU in 2 s"
    );
}

/// `--help` is user documentation, with no developer notes in it.
#[test]
fn help_is_user_documentation() {
    testkit::check_help(env!("CARGO_BIN_EXE_select-echo"));
}
