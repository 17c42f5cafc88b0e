//! A server's command line and life seen from outside, the same for every
//! binary (docs/protocol.md, "Command line"): a flag that cannot apply is
//! refused, a failure to start is one `error:` line, `--addr` takes a host
//! name, SIGTERM ends the process by that signal, and a broken listener
//! ends it with one `error:` line. An article's one-file program starts up
//! alike: one `error:` line when it cannot listen, one `usage:` line for
//! any argument but `--addr`.

use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{TIMEOUT, TestServer};

/// Runs `command` to its end, at most [`TIMEOUT`] (then kills it and fails:
/// a binary that should have refused to start is serving instead).
pub fn run_to_exit(mut command: Command) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let deadline = Instant::now() + TIMEOUT;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} was still running after {TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().expect("output")
}

/// `bin args…` must not start: exit status 2, nothing on stdout, and one
/// `error:` line first on stderr (clap's usage may follow it) that
/// contains `why`.
pub fn refused(bin: &str, args: &[&str], why: &str) {
    let mut command = Command::new(bin);
    command.args(args).args(["--addr", "127.0.0.1:0"]);
    let out = run_to_exit(command);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{bin} {args:?}: {out:?}");
    assert!(out.stdout.is_empty(), "{bin} {args:?} started: {out:?}");
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("error: ") && first.contains(why),
        "{bin} {args:?}: expected an error line with {why:?}, got:\n{err}"
    );
}

/// Started on a port another socket holds, `bin args…` prints exactly one
/// line, `error: cannot listen on 127.0.0.1:PORT: Address already in use`,
/// even at log level `info`, prints nothing on stdout, and exits 1.
pub fn port_in_use_is_one_error_line(bin: &str, args: &[&str]) {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = holder.local_addr().expect("local_addr");
    let mut command = Command::new(bin);
    command
        .args(args)
        .args(["--addr", &addr.to_string()])
        .env("RUST_LOG", "info");
    let out = run_to_exit(command);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{bin} {args:?}: {out:?}");
    assert!(out.stdout.is_empty(), "{bin} {args:?}: {out:?}");
    let lines: Vec<&str> = err.lines().collect();
    let want = format!("error: cannot listen on {addr}: Address already in use");
    assert!(
        lines.len() == 1 && lines[0].starts_with(&want),
        "{bin} {args:?}: expected one line {want:?}, got:\n{err}"
    );
}

/// An article's one-file program starting up, seen from outside, the same
/// for every one. Started again on the address a first instance of it
/// listens on, `bin args…` prints nothing on stdout and exactly one line on
/// stderr, `error: cannot listen on 127.0.0.1:PORT: ` then the system's
/// reason, and exits 1. Given anything but `--addr HOST:PORT` (an unknown
/// flag before or after it, a misspelt `--adr`, `--addr` without its
/// value), it prints one line, `usage: …`, and exits 2, rather than start on
/// an address it was not asked for. Returns the first instance, still
/// running, for the caller to see that it serves.
pub fn article_start_up(bin: &str, args: &[&str]) -> TestServer {
    let first = TestServer::start(bin, args);
    let addr = first.addr().to_string();
    let mut second = Command::new(bin);
    second.args(args).args(["--addr", &addr]);
    one_line_then_exit(second, &format!("error: cannot listen on {addr}: "), 1);
    // Those that name port 0 first: a program that skipped the mistake
    // starts there, not on its article's port, until the time limit.
    let wrong: [&[&str]; 5] = [
        &["--addr", "127.0.0.1:0", "--bogus"],
        &["--bogus", "--addr", "127.0.0.1:0"],
        &["--adr", "127.0.0.1:0"],
        &["--addr"],
        &["--bogus"],
    ];
    for wrong in wrong {
        let mut command = Command::new(bin);
        command.args(args).args(wrong);
        one_line_then_exit(command, "usage: ", 2);
    }
    first
}

/// Runs `command` to its end: nothing on stdout, exactly one line on
/// stderr, starting with `start`, and exit status `code`.
fn one_line_then_exit(command: Command, start: &str, code: i32) {
    let shown = format!("{command:?}");
    let out = run_to_exit(command);
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        out.status.code() == Some(code)
            && out.stdout.is_empty()
            && lines.len() == 1
            && lines[0].starts_with(start),
        "{shown}: expected exit status {code} and one line {start:?}…, got {}, \
         stdout {:?}, stderr:\n{err}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `--addr localhost:0` is resolved, and IPv4 wins: the server listens on
/// 127.0.0.1, where the clients look by default.
pub fn listens_on_a_host_name(bin: &str, args: &[&str]) -> TestServer {
    let mut command = Command::new(bin);
    command.args(args).args(["--addr", "localhost:0"]);
    let server = TestServer::start_command(command);
    assert_eq!(
        server.addr().ip().to_string(),
        "127.0.0.1",
        "{bin} {args:?}"
    );
    server
}

/// SIGTERM ends `server` by that signal, as its default action does: no
/// server catches it to exit 0, so a shell sees status 143 from every one
/// (a server with children ends them first). Read the log afterwards: it
/// holds no error.
#[cfg(unix)]
pub fn ends_by_sigterm(mut server: TestServer) {
    use std::os::unix::process::ExitStatusExt;
    // SAFETY: kill takes no pointers; the caller's part is the pid: the
    // process this handle started and has not yet waited for.
    let sent = unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(sent, 0);
    assert!(
        super::eventually(|| server.try_exit_status().is_some()),
        "the server did not end on SIGTERM"
    );
    let status = server.try_exit_status().expect("exited");
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    let log = server.stop();
    assert!(!log.contains("error"), "{log}");
}

/// A broken listener ends `server`, as it ends every server: once its
/// listening socket is shut down from outside
/// ([`proc::break_listener`](super::proc::break_listener)), `accept` fails
/// with EINVAL, which is no shortage to wait out. The server must exit 1
/// within [`TIMEOUT`](super::TIMEOUT), its log ending in exactly one
/// `error:` line, `error: accept failed: Invalid argument (os error 22)`,
/// with no pause to retry before it. Skipped, saying why, where the kernel
/// refuses `pidfd_getfd` ([`proc::pidfd_refused`](super::proc::pidfd_refused)).
#[cfg(target_os = "linux")]
pub fn a_broken_listener_ends(mut server: TestServer) {
    use super::proc;
    const WANT: &str = "error: accept failed: Invalid argument (os error 22)";
    match proc::break_listener(server.pid()) {
        Ok(()) => {}
        Err(e) if proc::pidfd_refused(&e) => return,
        Err(e) => panic!("cannot break the server's listener: {e}"),
    }
    assert!(
        super::eventually(|| server.try_exit_status().is_some()),
        "the server goes on with a broken listener"
    );
    let status = server.try_exit_status().expect("exited");
    let log = server.stop();
    assert_eq!(status.code(), Some(1), "{status:?}, log:\n{log}");
    let errors = log.lines().filter(|l| l.starts_with("error:")).count();
    assert!(
        log.lines().last() == Some(WANT) && errors == 1,
        "expected the log to end in one line {WANT:?}, got:\n{log}"
    );
    assert!(!log.contains("pausing accepts"), "{log}");
}
