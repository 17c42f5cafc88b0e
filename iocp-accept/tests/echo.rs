//! Black-box tests of iocp-accept on Linux, where it runs on io_uring.
//!
//! If this kernel refuses io_uring (a seccomp filter, a sysctl), the tests
//! say so and pass without running, unless IOCP_ACCEPT_REQUIRE_URING=1
//! (set by .ci/run) makes that a failure.
#![cfg(target_os = "linux")]

use testkit::raise_nofile_limit;
use testkit::suite::{EchoSpec, crowd};

const SPEC: EchoSpec = EchoSpec {
    bin: env!("CARGO_BIN_EXE_iocp-accept"),
    args: &[],
    suffix: "",
    concurrent: true,
    busy_polls: false,
};

/// Whether io_uring can be used here; panics instead of skipping when the
/// environment demands it.
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

/// The echo suite, each check behind the io_uring probe.
macro_rules! uring_suite {
    ($($check:ident),* $(,)?) => {
        mod protocol {
            $(#[test] fn $check() {
                if super::uring_available() {
                    testkit::suite::$check(&super::SPEC);
                }
            })*
        }
    };
}

uring_suite!(
    one_request,
    pipelined_1000,
    byte_by_byte,
    concurrent_50x100,
    over_long_line,
    half_close,
    reset_mid_stream,
    non_reading_client,
    survives_descriptor_exhaustion,
    churn_leaves_no_trace,
);

/// Past --max-conns, clients are told and closed; the rest are served.
#[test]
fn refuses_past_max_conns() {
    if uring_available() {
        testkit::suite::refuses_past_max_conns(&SPEC);
    }
}

/// A thousand clients at once, every one served.
#[test]
fn a_thousand_clients_at_once() {
    if !uring_available() {
        return;
    }
    assert!(raise_nofile_limit(4096) >= 2100);
    let server = SPEC.start(&[]);
    let mut c = crowd(&server, &SPEC, 1000);
    assert_eq!((c.served.len(), c.refused), (1000, 0));
    for (i, client) in c.served.iter_mut().enumerate().step_by(13) {
        let line = format!("again {i}");
        assert_eq!(client.request(&line), SPEC.reply(&line));
    }
}

/// `--help` is user documentation, with no developer notes in it.
#[test]
fn help_is_user_documentation() {
    testkit::check_help(env!("CARGO_BIN_EXE_iocp-accept"));
}
