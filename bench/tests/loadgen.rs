//! Black-box tests of loadgen against a small echo server run on a thread
//! of the test: one that answers correctly, and one that answers wrongly.

use std::process::Command;

use testkit::thread_echo_server as echo_server;

fn upper(line: &[u8]) -> Vec<u8> {
    line.to_ascii_uppercase()
}

#[test]
fn loadgen_counts_a_fixed_number_of_checked_requests() {
    let addr = echo_server(upper);
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--addr", &addr.to_string(), "--conns", "4", "--depth", "8"])
        .args([
            "--requests",
            "2000",
            "--idle",
            "3",
            "--threads",
            "2",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = String::from_utf8(out.stdout).unwrap();
    assert!(json.contains("\"requests\":2000,\"errors\":0,"), "{json}");
}

#[test]
fn loadgen_reports_wrong_replies() {
    // Replies are not upper-cased: every one is wrong.
    let addr = echo_server(|line| line.to_vec());
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--addr", &addr.to_string(), "--requests", "100", "--json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("\"errors\":100,")
    );
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("100 replies did not match")
    );
}

/// `--help` is user documentation, with no developer notes in it.
#[test]
fn help_is_user_documentation() {
    testkit::check_help(env!("CARGO_BIN_EXE_loadgen"));
    testkit::check_help(env!("CARGO_BIN_EXE_bench-models"));
}
