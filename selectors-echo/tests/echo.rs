//! Black-box tests of selectors-echo.

use testkit::suite::EchoSpec;

const SPEC: EchoSpec = EchoSpec {
    bin: env!("CARGO_BIN_EXE_selectors-echo"),
    args: &[],
    suffix: "_SB",
    concurrent: true,
    busy_polls: false,
};

mod protocol {
    testkit::echo_suite!(super::SPEC);
}

/// No FD_SETSIZE here: 5000 clients at once are all served, then a newcomer.
#[cfg(unix)]
#[test]
fn five_thousand_clients_at_once() {
    testkit::suite::all_served_at_once(&SPEC, 5000);
}

/// Past --max-conns, a client is told and closed; the rest are served.
#[test]
fn refuses_past_max_conns() {
    testkit::suite::refuses_past_max_conns(&SPEC);
}

/// Level-triggered, one read per ready socket per turn: two clients that
/// pipeline without pause do not hold the loop, with no budget needed.
#[test]
fn a_flooder_does_not_hold_the_loop() {
    testkit::suite::a_flooder_does_not_hold_the_loop(&SPEC, false);
}

/// Waiting for readiness costs nothing: ten idle clients, no CPU to speak of.
#[cfg(target_os = "linux")]
#[test]
fn idle_connections_cost_no_cpu() {
    testkit::suite::idle_costs_no_cpu(&SPEC);
}

/// `--help` is user documentation, with no developer notes in it.
#[test]
fn help_is_user_documentation() {
    testkit::check_help(env!("CARGO_BIN_EXE_selectors-echo"));
}

/// An idle connection holds no buffer: 5000 connections that each made a
/// round trip add less than 1 KiB apiece.
#[cfg(target_os = "linux")]
#[test]
fn an_idle_connection_holds_no_buffer() {
    testkit::suite::memory_per_spoken_connection(&SPEC, 5000, 1024);
}
