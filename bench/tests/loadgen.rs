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

/// `--sources 4`: the idle crowd comes from 127.0.0.1 to 127.0.0.4, each
/// connection having made its round trip, and the burst answers all of them.
/// The server here records its peers' addresses, as a server's log names
/// them (`127.0.0.3:41234 connected`).
#[cfg(target_os = "linux")]
#[test]
fn idle_connections_come_from_several_source_addresses() {
    use std::collections::BTreeSet;
    use std::net::{IpAddr, TcpListener};
    use std::sync::{Arc, Mutex};
    use std::thread;

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peers = Arc::new(Mutex::new(BTreeSet::<IpAddr>::new()));
    let seen = Arc::clone(&peers);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            seen.lock()
                .unwrap()
                .insert(stream.peer_addr().unwrap().ip());
            serve_upper(stream);
        }
    });
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--addr", &addr.to_string(), "--conns", "2", "--idle", "200"])
        .args(["--sources", "4", "--requests", "100", "--burst", "--json"])
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{json}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(json.contains("\"idle_held\":200,"), "{json}");
    assert!(json.contains("\"idle_stopped\":\"\""), "{json}");
    assert!(
        json.contains("\"burst_replies\":200,\"burst_wrong\":0,"),
        "{json}"
    );
    let peers = peers.lock().unwrap().clone();
    let want: BTreeSet<IpAddr> = (1..=4).map(|k| IpAddr::from([127, 0, 0, k])).collect();
    assert_eq!(peers, want);
}

/// A server that refuses part of the crowd: loadgen holds what it was
/// given, says where it stopped and why, and still measures the rest.
#[test]
fn an_idle_crowd_cut_short_says_why() {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::thread;

    // Answers the first 12 connections (2 active, 10 idle); refuses the rest.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for (i, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { return };
            if i >= 12 {
                // As the servers refuse: the answer, then FIN after it, the
                // request read first so that the close sends no reset.
                let mut request = Vec::new();
                let _ = BufReader::new(&stream).read_until(b'\n', &mut request);
                let _ = stream.write_all(b"ERR server full\n");
                let _ = stream.shutdown(std::net::Shutdown::Write);
                continue;
            }
            serve_upper(stream);
        }
    });
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--addr", &addr.to_string(), "--conns", "2", "--idle", "50"])
        .args(["--requests", "100", "--json"])
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{json}");
    assert!(json.contains("\"requests\":100,\"errors\":0,"), "{json}");
    assert!(json.contains("\"idle_held\":10,"), "{json}");
    assert!(
        json.contains(r#": the server closed it after \"ERR server full\\n\"""#)
            && json.contains(r#""idle_stopped":"connection "#),
        "{json}"
    );
}

/// Answers each line of `stream` upper-cased, on a thread of its own, as
/// the echo servers do (without a suffix), until the client leaves.
fn serve_upper(stream: std::net::TcpStream) {
    use std::io::{BufRead, BufReader, Write};
    std::thread::spawn(move || {
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            if writer.write_all(&line.to_ascii_uppercase()).is_err() {
                return;
            }
            line.clear();
        }
    });
}
