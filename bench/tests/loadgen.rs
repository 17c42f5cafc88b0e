//! Black-box tests of loadgen against small echo servers run on threads
//! of the test: one that answers correctly, one that answers wrongly, one
//! that stalls, and one that takes its time over every reply.

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
/// belong to the closed one, and no rate of 0; `--in-flight` is the open
/// loop's alone, and at least 1.
#[test]
fn the_open_loop_refuses_what_it_cannot_do() {
    for bad in [
        &["--rate", "100", "--depth", "4"][..],
        &["--rate", "100", "--requests", "10"],
        &["--rate", "0"],
        &["--rate", "soon"],
        &["--in-flight", "1"],
        &["--rate", "100", "--in-flight", "0"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(["--addr", "127.0.0.1:9"])
            .args(bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("cannot be used with")
                || err.contains("more than 0")
                || err.contains("required arguments were not provided:\n  --rate")
                || err.contains("0 is not in 1.."),
            "{bad:?}: {err}"
        );
    }
}

/// What [`slow_server`] saw: lines answered, and lines that came while one
/// before them on the same connection was still unanswered.
struct Seen {
    lines: std::sync::atomic::AtomicUsize,
    overlapped: std::sync::atomic::AtomicUsize,
}

/// Where [`slow_server`] holds one reply back: at the `at`-th line of all,
/// it says so on `said` and waits for `resume` before its delay.
struct Hold {
    at: usize,
    said: std::sync::mpsc::Sender<()>,
    resume: std::sync::mpsc::Receiver<()>,
}

/// An echo server, a thread per connection, that answers each line `delay`
/// after it came, as a slow back end would, and counts every line that came
/// before the reply to the one ahead of it had been written: a client with
/// one request in flight never sends one.
fn slow_server(
    delay: std::time::Duration,
    hold: Option<Hold>,
) -> (std::net::SocketAddr, std::sync::Arc<Seen>) {
    use std::io::{ErrorKind, Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::{Arc, Mutex};
    use std::thread;

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen {
        lines: 0.into(),
        overlapped: 0.into(),
    });
    let hold = Arc::new(Mutex::new(hold));
    let counts = Arc::clone(&seen);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let (seen, hold) = (Arc::clone(&counts), Arc::clone(&hold));
            thread::spawn(move || {
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    while !pending.contains(&b'\n') {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => pending.extend_from_slice(&buf[..n]),
                        }
                    }
                    let end = pending.iter().position(|&b| b == b'\n').unwrap() + 1;
                    let count = seen.lines.fetch_add(1, Relaxed) + 1;
                    let held = {
                        let mut h = hold.lock().unwrap();
                        if h.as_ref().is_some_and(|h| h.at == count) {
                            h.take()
                        } else {
                            None
                        }
                    };
                    if let Some(h) = held {
                        h.said.send(()).unwrap();
                        h.resume.recv_timeout(testkit::TIMEOUT).unwrap();
                    }
                    thread::sleep(delay);
                    // Whatever came meanwhile was sent before this reply.
                    stream.set_nonblocking(true).unwrap();
                    match stream.read(&mut buf) {
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(_) => return,
                    }
                    stream.set_nonblocking(false).unwrap();
                    if pending.len() > end {
                        seen.overlapped.fetch_add(1, Relaxed);
                    }
                    if stream
                        .write_all(&pending[..end].to_ascii_uppercase())
                        .is_err()
                    {
                        return;
                    }
                    pending.drain(..end);
                }
            });
        }
    });
    (addr, seen)
}

/// loadgen's open loop against `addr` over `conns` connections at `rate`,
/// for `secs` after `warmup` seconds, with `extra` arguments.
fn open_loop(
    addr: std::net::SocketAddr,
    conns: u32,
    rate: u32,
    (warmup, secs): (f64, f64),
    extra: &[&str],
) -> std::process::Child {
    use std::process::Stdio;
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--addr", &addr.to_string(), "--json"])
        .args(["--conns", &conns.to_string(), "--rate", &rate.to_string()])
        .args(["--secs", &secs.to_string()])
        .args(["--warmup-secs", &warmup.to_string()])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `--in-flight 1` against a server that takes 20 ms for each reply, at
/// 250 requests a second over four connections, more than the 200 a second
/// they can carry one at a time. No connection ever has two requests
/// unanswered; the carried rate stays within four connections / 20 ms; the
/// requests that could not go out when due waited in the generator and are
/// counted, those still waiting at the window's end too; and the latency,
/// timed from each due time, holds that wait: its median is well past the
/// server's 20 ms. The run ends with these figures, not an error.
#[test]
fn one_in_flight_waits_in_the_generator_and_is_timed_from_its_due_time() {
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::Duration;
    let (addr, seen) = slow_server(Duration::from_millis(20), None);
    let json = finish(open_loop(addr, 4, 250, (0.2, 2.0), &["--in-flight", "1"]));
    assert!(
        json.contains("\"mode\":\"in-flight 1\",\"in_flight\":1,"),
        "{json}"
    );
    assert!(seen.lines.load(Relaxed) > 0, "{json}");
    assert_eq!(seen.overlapped.load(Relaxed), 0, "{json}");

    // Every connection's round trip is at least the delay: no more than
    // 101 replies each in a 2 s window.
    let (rps, bound) = (number(&json, "rps"), number(&json, "bound_rps"));
    assert!(rps <= 4.0 * 101.0 / 2.0, "{json}");
    assert!(rps >= 50.0, "{json}");
    assert!(bound > 0.0 && bound <= 200.0, "{json}");
    assert!(rps <= 1.1 * bound, "{json}");
    assert!(number(&json, "rtt_p50_us") >= 20_000.0, "{json}");

    let (due, requests) = (number(&json, "due"), number(&json, "requests"));
    let (waited, unsent) = (number(&json, "waited"), number(&json, "unsent"));
    assert!((due - 500.0).abs() <= 4.0, "{json}");
    assert_eq!(requests + unsent, due, "{json}");
    assert!(requests > 0.0, "{json}");
    assert!(waited >= due / 2.0, "{json}");
    assert!(unsent > 0.0 && unsent <= waited, "{json}");
    assert_eq!(number(&json, "errors"), 0.0, "{json}");
    assert!(number(&json, "p50_us") > 2.0 * 20_000.0, "{json}");
}

/// Without `--in-flight` the open loop pipelines, as before: the same slow
/// server, offered more than one connection's share of requests in each
/// 20 ms, sees lines arrive while earlier ones are unanswered, and nothing
/// waits in the generator. (The server's count is the check the test above
/// relies on, seen to work.)
#[test]
fn without_in_flight_the_open_loop_pipelines() {
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::Duration;
    let (addr, seen) = slow_server(Duration::from_millis(20), None);
    let json = finish(open_loop(addr, 2, 400, (0.0, 0.3), &[]));
    assert!(
        json.contains("\"mode\":\"pipelined\",\"in_flight\":0,"),
        "{json}"
    );
    assert!(seen.overlapped.load(Relaxed) > 0, "{json}");
    assert_eq!(number(&json, "waited"), 0.0, "{json}");
    assert_eq!(number(&json, "unsent"), 0.0, "{json}");
    every_request_answered(&json, 120.0);
}

/// A server far too slow for the schedule (one reply each 200 ms on two
/// connections, 10 a second, offered 2000): with one in flight the run
/// still ends with a figure, soon after its window. Nearly every request
/// was left unsent, each timed as waiting until the window's end, so the
/// p99 is most of the window.
#[test]
fn a_saturated_server_gives_a_figure_with_one_in_flight() {
    use std::time::{Duration, Instant};
    let (addr, _) = slow_server(Duration::from_millis(200), None);
    let started = Instant::now();
    let json = finish(open_loop(addr, 2, 2000, (0.2, 1.0), &["--in-flight", "1"]));
    // Well before the 10 s a drain would wait for replies never sent.
    assert!(started.elapsed() < Duration::from_secs(8), "{json}");
    let (due, unsent) = (number(&json, "due"), number(&json, "unsent"));
    assert!((due - 2000.0).abs() <= 2.0, "{json}");
    assert!(unsent >= 0.95 * due, "{json}");
    assert_eq!(number(&json, "requests") + unsent, due, "{json}");
    assert!(number(&json, "p99_us") >= 900_000.0, "{json}");
    assert!(number(&json, "rps") <= 2.0 * 6.0, "{json}");
}

/// The generator is stopped (SIGSTOP) for 300 ms while replies are on their
/// way to it: the server holds one reply until the stop has begun, then
/// sends it 20 ms later. The kernel's receive time of that reply, read with
/// it, shows the generator read it some 280 ms late: the read side of the
/// generator's lateness, which a latency alone would charge to the server.
#[cfg(target_os = "linux")]
#[test]
fn replies_the_generator_was_slow_to_read_are_reported_late() {
    use std::sync::mpsc;
    use std::time::Duration;
    let (said, heard) = mpsc::channel();
    let (resume, resumed) = mpsc::channel();
    let hold = Hold {
        at: 100,
        said,
        resume: resumed,
    };
    let (addr, _) = slow_server(Duration::from_millis(20), Some(hold));
    // 100 a second on four connections: each sends every 40 ms, its reply
    // back in 20, so none waits in the generator but by the stop.
    let child = open_loop(addr, 4, 100, (0.5, 2.0), &["--in-flight", "1"]);
    let pid = child.id() as libc::pid_t;
    heard
        .recv_timeout(testkit::TIMEOUT)
        .expect("the window under way");
    // SAFETY: kill only sends a signal, to the child this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    resume.send(()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let json = finish(child);
    assert!(number(&json, "read_late_max_us") >= 200_000.0, "{json}");
    assert!(number(&json, "late_max_us") >= 200_000.0, "{json}");
    assert_eq!(number(&json, "errors"), 0.0, "{json}");
}

/// Every request that fell due was answered, and there were `due` of them,
/// to within one per connection.
fn every_request_answered(json: &str, due: f64) {
    assert_eq!(number(json, "due"), number(json, "requests"), "{json}");
    assert!((number(json, "due") - due).abs() <= 2.0, "{json}");
    assert_eq!(number(json, "errors"), 0.0, "{json}");
}
