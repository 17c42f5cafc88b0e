//! Black-box tests of shared's binaries: the two clients and the load
//! generator, against a small echo server run on a thread of the test.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::thread;

/// A thread-per-connection echo server; `transform` makes each reply.
fn echo_server(transform: fn(&[u8]) -> Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                let mut line = Vec::new();
                while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                    if writer.write_all(&transform(&line)).is_err() {
                        return;
                    }
                    line.clear();
                }
            });
        }
    });
    addr
}

fn upper(line: &[u8]) -> Vec<u8> {
    line.to_ascii_uppercase()
}

#[test]
fn client_sends_piped_lines_and_prints_replies() {
    let addr = echo_server(upper);
    let mut child = Command::new(env!("CARGO_BIN_EXE_client"))
        .args(["--addr", &addr.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Blank lines are skipped, surrounding blanks trimmed, as in the article.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello\n\n  two words  \n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "HELLO\nTWO WORDS\n");
}

#[test]
fn hello_client_sends_its_pid_hello() {
    let addr = echo_server(upper);
    let out = Command::new(env!("CARGO_BIN_EXE_hello-client"))
        .args([
            "--addr",
            &addr.to_string(),
            "--count",
            "3",
            "--interval-ms",
            "0",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(
        lines
            .iter()
            .all(|l| l.ends_with(" HELLO") && l.split(' ').next().unwrap().parse::<u32>().is_ok())
    );
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
