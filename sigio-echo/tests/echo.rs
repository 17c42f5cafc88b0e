//! Black-box tests of sigio-echo: the echo suite, and a crowd.
#![cfg(target_os = "linux")]

mod common;

use common::SPEC;

mod protocol {
    testkit::echo_suite!(super::SPEC);
}

/// 2000 clients at once: every one served, each again afterwards, then a
/// newcomer. Their signals queue (or overflow; either way nobody is lost).
#[test]
fn two_thousand_clients_at_once() {
    testkit::suite::all_served_at_once(&SPEC, 2000);
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

/// Waiting for a signal costs nothing: ten idle clients, no CPU to speak of.
#[test]
fn idle_connections_cost_no_cpu() {
    testkit::suite::idle_costs_no_cpu(&SPEC);
}

/// An idle connection holds no buffer: 2000 connections that each made a
/// round trip add less than 1 KiB apiece.
#[test]
fn an_idle_connection_holds_no_buffer() {
    testkit::suite::memory_per_spoken_connection(&SPEC, 2000, 1024);
}

/// `--help` is user documentation, with no developer notes in it.
#[test]
fn help_is_user_documentation() {
    testkit::check_help(env!("CARGO_BIN_EXE_sigio-echo"));
}
