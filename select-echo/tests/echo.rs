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

/// The same server on poll(2).
const POLL: EchoSpec = EchoSpec {
    args: &["--poll"],
    ..SPEC
};

mod poll_protocol {
    testkit::echo_suite!(super::POLL);
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
    suite::says_it_refuses(&server, "1000 connections (--max-conns)");
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
    suite::says_it_refuses(&server, "past select's FD_SETSIZE (1024)");
    newcomer_served_after_some_leave(&server, c);
}

/// Waiting in `select` costs nothing: ten idle clients, no CPU to speak of.
#[cfg(target_os = "linux")]
#[test]
fn idle_connections_cost_no_cpu() {
    suite::idle_costs_no_cpu(&SPEC);
}

/// `--help` is user documentation, with no developer notes in it.
#[test]
fn help_is_user_documentation() {
    testkit::check_help(env!("CARGO_BIN_EXE_select-echo"));
}

/// poll has no FD_SETSIZE wall: 5000 clients at once are all served, each
/// again afterwards, then a newcomer.
#[test]
fn poll_serves_five_thousand_clients_at_once() {
    suite::all_served_at_once(&POLL, 5000);
}

/// poll's --max-conns default is 10 000, not select's 1000: 1100 clients
/// are all served.
#[test]
fn poll_default_max_conns_is_past_select_s() {
    room_for_crowds();
    let server = POLL.start(&[]);
    let c = crowd(&server, &POLL, 1100);
    assert_eq!((c.served.len(), c.refused), (1100, 0));
}

/// Past --max-conns, a client is told and closed; the rest are served.
#[test]
fn poll_refuses_past_max_conns() {
    suite::refuses_past_max_conns(&POLL);
}

/// Waiting in poll costs nothing either.
#[cfg(target_os = "linux")]
#[test]
fn poll_idle_connections_cost_no_cpu() {
    suite::idle_costs_no_cpu(&POLL);
}

/// An idle connection holds no buffer: 900 connections (below the
/// FD_SETSIZE wall) that each made a round trip add less than 1 KiB apiece.
#[cfg(target_os = "linux")]
#[test]
fn an_idle_connection_holds_no_buffer() {
    suite::memory_per_spoken_connection(&SPEC, 900, 1024);
}

/// The same on poll, with 5000 connections.
#[cfg(target_os = "linux")]
#[test]
fn poll_an_idle_connection_holds_no_buffer() {
    suite::memory_per_spoken_connection(&POLL, 5000, 1024);
}

/// Level-triggered, one read per ready socket per turn: two clients that
/// pipeline without pause do not hold the loop, with no budget needed.
#[test]
fn a_flooder_does_not_hold_the_loop() {
    suite::a_flooder_does_not_hold_the_loop(&SPEC, false);
}

/// The same on poll: the same loop, so the same one read per ready socket.
#[test]
fn poll_a_flooder_does_not_hold_the_loop() {
    suite::a_flooder_does_not_hold_the_loop(&POLL, false);
}
