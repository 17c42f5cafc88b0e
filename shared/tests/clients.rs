//! Black-box tests of shared's binaries, the articles' two clients, against
//! a small echo server run on a thread of the test.

use std::io::Write;
use std::process::{Command, Stdio};

use testkit::thread_echo_server as echo_server;

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

/// `--help` is user documentation, with no developer notes in it.
#[test]
fn help_is_user_documentation() {
    testkit::check_help(env!("CARGO_BIN_EXE_client"));
    testkit::check_help(env!("CARGO_BIN_EXE_hello-client"));
}

/// `--addr` takes a host name, as nc and curl do.
#[test]
fn client_reaches_a_server_by_host_name() {
    let addr = echo_server(upper);
    let mut child = Command::new(env!("CARGO_BIN_EXE_client"))
        .args(["--addr", &format!("localhost:{}", addr.port())])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"by name\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "BY NAME\n");
}

/// Where nothing listens, each client says where it tried, that nothing
/// listens there, and whose port its default is, in one `error:` line.
#[test]
fn a_client_with_no_server_says_which_port_it_tried() {
    // A port that was free a moment ago: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cases = [
        (env!("CARGO_BIN_EXE_client"), "select-echo's port"),
        (
            env!("CARGO_BIN_EXE_hello-client"),
            "nonblocking-echo's port",
        ),
    ];
    for (bin, whose) in cases {
        let out = testkit::cli::run_to_exit({
            let mut c = Command::new(bin);
            c.args(["--addr", &format!("127.0.0.1:{port}")]);
            c
        });
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(1), "{bin}: {err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{bin}: {err}");
        for part in [
            format!("error: cannot connect to 127.0.0.1:{port}: Connection refused"),
            format!("no server is listening on port {port}"),
            "--addr".to_string(),
            whose.to_string(),
        ] {
            assert!(lines[0].contains(&part), "{bin}: {part:?} not in {err}");
        }
    }
}
