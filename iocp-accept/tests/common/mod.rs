//! What iocp-accept's test binaries share.

use testkit::suite::EchoSpec;

/// The multishot loop, the default on Linux 6.0 and later.
pub const SPEC: EchoSpec = EchoSpec {
    bin: env!("CARGO_BIN_EXE_iocp-accept"),
    args: &[],
    suffix: "",
    concurrent: true,
    busy_polls: false,
};

/// Whether io_uring can be used here; panics instead of skipping when the
/// environment demands it (IOCP_ACCEPT_REQUIRE_URING=1, set by .ci/run).
pub fn uring_available() -> bool {
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
