//! The article's program in one file, run from outside: on Linux,
//! `uring-article` speaks the echo protocol to ordinary clients (the same
//! io_uring rule as the server's tests: skipped where this kernel refuses
//! io_uring, unless IOCP_ACCEPT_REQUIRE_URING=1); off Windows,
//! `iocp-article` says in one line that it needs IOCP, and exits 1. Under
//! Wine, `.ci/windows-check` runs `iocp-article.exe` against its client.

#[cfg(target_os = "linux")]
#[allow(dead_code)] // the server's SPEC: only its io_uring check is wanted here
mod common;

#[cfg(target_os = "linux")]
testkit::article_suite!(
    testkit::suite::EchoSpec::concurrent(env!("CARGO_BIN_EXE_uring-article"), &[], ""),
    if common::uring_available()
);

// The suite's `article_start_up` needs a first instance, so io_uring; these two
// do not: the program reads its arguments and binds before it makes its ring.

/// A port already taken is one `error: cannot listen on …` line and exit 1.
#[cfg(target_os = "linux")]
#[test]
fn uring_article_port_in_use_is_one_error_line() {
    testkit::cli::port_in_use_is_one_error_line(env!("CARGO_BIN_EXE_uring-article"), &[]);
}

/// Anything but `--addr HOST:PORT` is refused with the usage line, and exit 2.
#[cfg(target_os = "linux")]
#[test]
fn uring_article_refuses_other_arguments() {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_uring-article"));
    command.arg("--max-conns");
    let out = testkit::cli::run_to_exit(command);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "usage: uring-article [--addr HOST:PORT]\n"
    );
}

/// Off Windows the IOCP program does not start: one line on stderr, naming
/// what it needs, nothing on stdout, exit status 1.
#[cfg(not(windows))]
#[test]
fn iocp_article_off_windows_says_it_needs_iocp() {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_iocp-article"));
    command.args(["--addr", "127.0.0.1:0"]);
    let out = testkit::cli::run_to_exit(command);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: iocp-article needs Windows' IOCP; on Linux, run uring-article\n"
    );
}
