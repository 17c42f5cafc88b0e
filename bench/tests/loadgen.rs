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

/// An echo server, a thread per connection, whose replies all wait on one
/// lock, and which holds that lock for `stall` once, when `after` has
/// passed since the first request came: every connection is kept waiting,
/// as if the server had been stopped. The receiver hears when the stall
/// begins (or, with a zero `stall`, when it would have).
fn stalling_server(
    after: std::time::Duration,
    stall: std::time::Duration,
) -> (std::net::SocketAddr, std::sync::mpsc::Receiver<()>) {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex, OnceLock, mpsc};
    use std::thread;
    use std::time::Instant;

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (said, hear) = mpsc::channel();
    let lock = Arc::new(Mutex::new(Some(said)));
    let first = Arc::new(OnceLock::<Instant>::new());
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let (lock, first) = (Arc::clone(&lock), Arc::clone(&first));
            thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                let mut line = Vec::new();
                while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                    let started = *first.get_or_init(Instant::now);
                    {
                        let mut once = lock.lock().unwrap();
                        if started.elapsed() >= after
                            && let Some(said) = once.take()
                        {
                            let _ = said.send(());
                            thread::sleep(stall);
                        }
                    }
                    if writer.write_all(&line.to_ascii_uppercase()).is_err() {
                        return;
                    }
                    line.clear();
                }
            });
        }
    });
    (addr, hear)
}

/// loadgen's open loop against `addr`, at 2000 requests a second over four
/// connections, for 3 s after 0.5 s of warm-up (or the closed loop, with
/// `rate` `None`); its JSON, once it has finished.
fn run_loadgen(addr: std::net::SocketAddr, rate: Option<&str>) -> std::process::Child {
    use std::process::Stdio;
    let mut command = Command::new(env!("CARGO_BIN_EXE_loadgen"));
    command
        .args(["--addr", &addr.to_string(), "--conns", "4", "--json"])
        .args(["--secs", "3", "--warmup-secs", "0.5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(rate) = rate {
        command.args(["--rate", rate]);
    }
    command.spawn().unwrap()
}

fn finish(child: std::process::Child) -> String {
    let out = child.wait_with_output().unwrap();
    let json = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{json}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json
}

fn number(json: &str, key: &str) -> f64 {
    let pat = format!("\"{key}\":");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + pat.len();
    json[at..]
        .split([',', '}'])
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Every request that fell due in the window was sent and answered, and
/// there were as many as the schedule says: 2000 a second for 3 s, to
/// within one per connection.
fn every_due_request_answered(json: &str) {
    let (due, requests) = (number(json, "due"), number(json, "requests"));
    assert_eq!(due, requests, "{json}");
    assert!((due - 6000.0).abs() <= 4.0, "{json}");
    assert_eq!(number(json, "errors"), 0.0, "{json}");
}

/// The server stalls for 300 ms in the middle of the window. The open
/// loop goes on sending on schedule, and each request due during the stall
/// is timed from its due time: about 600 of the 6000 wait, so its p99 is
/// at least half the stall. The closed loop of the same four connections
/// has only four requests in flight when the stall comes, and its p99
/// hides it: coordinated omission.
#[test]
fn the_open_loop_sees_a_server_stall_that_the_closed_loop_hides() {
    use std::time::Duration;
    let stall = Duration::from_millis(300);
    let (addr, _) = stalling_server(Duration::from_millis(1500), stall);
    let open = finish(run_loadgen(addr, Some("2000")));
    every_due_request_answered(&open);
    assert!(number(&open, "p99_us") >= 150_000.0, "{open}");
    assert!(number(&open, "max_us") >= 250_000.0, "{open}");

    let (addr, _) = stalling_server(Duration::from_millis(1500), stall);
    let closed = finish(run_loadgen(addr, None));
    assert!(number(&closed, "max_us") >= 250_000.0, "{closed}");
    assert!(number(&closed, "p99_us") < 150_000.0, "{closed}");
}

/// loadgen itself is stopped (SIGSTOP) for 300 ms in the middle of the
/// window. The requests that fell due meanwhile are sent when it resumes,
/// all at once, and each is reported late by as long as it waited: the
/// generator's lateness shows the stop, and so does the latency, since a
/// user would have waited too. None is lost.
#[cfg(unix)]
#[test]
fn requests_due_while_the_generator_is_held_up_are_reported_late() {
    use std::time::Duration;
    let (addr, stall_due) = stalling_server(Duration::from_millis(1500), Duration::ZERO);
    let child = run_loadgen(addr, Some("2000"));
    let pid = child.id() as libc::pid_t;
    stall_due
        .recv_timeout(testkit::TIMEOUT)
        .expect("the window under way");
    // SAFETY: kill only sends a signal, to the child this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let json = finish(child);
    every_due_request_answered(&json);
    assert!(number(&json, "late_max_us") >= 250_000.0, "{json}");
    assert!(number(&json, "p99_us") >= 150_000.0, "{json}");
}

/// `--rate` is an open loop: it takes no `--depth` or `--requests`, which
/// belong to the closed one, and no rate of 0.
#[test]
fn the_open_loop_refuses_what_it_cannot_do() {
    for bad in [
        &["--rate", "100", "--depth", "4"][..],
        &["--rate", "100", "--requests", "10"],
        &["--rate", "0"],
        &["--rate", "soon"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(["--addr", "127.0.0.1:9"])
            .args(bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("cannot be used with") || err.contains("more than 0"),
            "{bad:?}: {err}"
        );
    }
}
