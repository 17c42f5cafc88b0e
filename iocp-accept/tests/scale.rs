//! io_uring at scale, multishot and single-shot: 15 000 connections held at
//! once, a burst of 5000, and a newcomer served. A test binary of its own,
//! since the crowd takes 15 000 of the 20 000 descriptors this process may
//! hold; the two tests take turns (testkit::scale).

#![cfg(target_os = "linux")]

use testkit::suite::holds_a_crowd;

mod common;

use common::{SPEC, uring_available};

#[test]
fn multishot_holds_15000_connections_and_a_burst() {
    if uring_available() {
        holds_a_crowd(&SPEC, 15_000, 5000, &["--max-conns", "19000"]);
    }
}

#[test]
fn single_shot_holds_15000_connections_and_a_burst() {
    if uring_available() {
        let args = ["--single-shot", "--max-conns", "19000"];
        holds_a_crowd(&SPEC, 15_000, 5000, &args);
    }
}
