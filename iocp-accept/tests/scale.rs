//! io_uring at scale, multishot and single-shot: 15 000 connections held at
//! once, a burst of 5000, and a newcomer served. A test binary of its own,
//! since the crowd takes 15 000 of the 20 000 descriptors this process may
//! hold; the two tests take turns (testkit::scale).

#![cfg(target_os = "linux")]

use testkit::suite::{EchoSpec, holds_a_crowd};

const SPEC: EchoSpec = EchoSpec {
    bin: env!("CARGO_BIN_EXE_iocp-accept"),
    args: &[],
    suffix: "",
    concurrent: true,
    busy_polls: false,
};

/// As in tests/echo.rs: skipped where io_uring is not allowed (a
/// container's seccomp profile), unless IOCP_ACCEPT_REQUIRE_URING=1.
fn uring_available() -> bool {
    match io_uring::IoUring::new(8) {
        Ok(_) => true,
        Err(e) if std::env::var_os("IOCP_ACCEPT_REQUIRE_URING").is_some_and(|v| v == "1") => {
            panic!("io_uring is required (IOCP_ACCEPT_REQUIRE_URING=1) but unavailable: {e}")
        }
        Err(e) => {
            eprintln!("skipped: io_uring is not available here ({e})");
            false
        }
    }
}

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
