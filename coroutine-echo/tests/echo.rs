//! Black-box tests of coroutine-echo.

use testkit::suite::EchoSpec;

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
    testkit::suite::all_served_at_once(&SPEC, 5000);
}

/// Two clients that pipeline without pause do not hold the loop: a third
/// is answered meanwhile, and the log shows the per-turn budget at work.
#[test]
fn a_flooder_does_not_hold_the_loop() {
    testkit::suite::a_flooder_does_not_hold_the_loop(&SPEC, true);
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
    testkit::suite::idle_costs_no_cpu(&SPEC);
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
