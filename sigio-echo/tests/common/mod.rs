//! What both test binaries know of the server.

use testkit::suite::EchoSpec;

pub const SPEC: EchoSpec = EchoSpec {
    bin: env!("CARGO_BIN_EXE_sigio-echo"),
    args: &[],
    suffix: "",
    concurrent: true,
    busy_polls: false,
};
