//! poll(2) at scale (select stops at FD_SETSIZE: see tests/echo.rs): 15 000
//! connections held at once, a burst of 5000, and a newcomer served. A test
//! binary of its own, since the crowd takes 15 000 of the 20 000 descriptors
//! this process may hold (testkit::scale).

#![cfg(target_os = "linux")]

use testkit::suite::{EchoSpec, holds_a_crowd};

const SPEC: EchoSpec = EchoSpec::concurrent(env!("CARGO_BIN_EXE_select-echo"), &["--poll"], "");

#[test]
fn holds_15000_connections_and_a_burst() {
    holds_a_crowd(&SPEC, 15_000, 5000, &["--max-conns", "19000"]);
}
