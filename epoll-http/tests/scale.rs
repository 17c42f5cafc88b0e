//! epoll-http at scale, level- and edge-triggered: 15 000 keep-alive
//! connections held at once, each having had one response, a burst of 5000
//! requests at the same instant, and a newcomer served. A test binary of its
//! own, since the crowd takes 15 000 of the 20 000 descriptors this process
//! may hold; the two tests take turns (testkit::scale).

#![cfg(target_os = "linux")]

use std::io::Write;

use testkit::TestServer;
use testkit::scale::{burst, one_at_a_time, open_crowd, read_reply};

const BIN: &str = env!("CARGO_BIN_EXE_epoll-http");
const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";
const BODY: &[u8] = b"Hello, world!";

/// A whole response: the server's is a head and the 13-byte body, and
/// nothing else arrives on a keep-alive connection until the next request.
fn whole(got: &[u8]) -> bool {
    got.ends_with(BODY)
}

fn right(got: &[u8]) -> Result<(), String> {
    if got.starts_with(b"HTTP/1.1 200 OK\r\n") && got.ends_with(BODY) {
        Ok(())
    } else {
        Err(format!("answered {:?}", String::from_utf8_lossy(got)))
    }
}

fn holds_15000(mode: &[&str]) {
    let _alone = one_at_a_time();
    assert!(testkit::raise_nofile_limit(16_000) >= 15_200);
    let args: Vec<&str> = mode
        .iter()
        .copied()
        .chain(["--max-conns", "19000"])
        .collect();
    let server = TestServer::start(BIN, &args);
    let mut crowd = open_crowd(server.addr(), 15_000, |c, _| {
        c.write_all(GET).map_err(|e| e.to_string())?;
        right(&read_reply(c, whole)?)
    });
    let answered = burst(
        &mut crowd[..5000],
        |_| GET.to_vec(),
        whole,
        |got, _| right(got),
    );
    assert_eq!(answered, 5000);
    let mut newcomer = std::net::TcpStream::connect(server.addr()).unwrap();
    newcomer.set_read_timeout(Some(testkit::TIMEOUT)).unwrap();
    newcomer.write_all(GET).unwrap();
    right(&read_reply(&mut newcomer, whole).unwrap()).unwrap();
    drop(crowd);
}

#[test]
fn level_triggered_holds_15000_connections_and_a_burst() {
    holds_15000(&[]);
}

#[test]
fn edge_triggered_holds_15000_connections_and_a_burst() {
    holds_15000(&["--edge"]);
}
