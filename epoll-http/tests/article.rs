//! Black-box tests of `src/bin/epoll-article.rs`, article 003's program in
//! one file: every request, however it arrives, gets the article's exact
//! HTTP/1.0 response and then the end of the stream.
#![cfg(target_os = "linux")]

use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use testkit::{LineClient, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_epoll-article");

/// The article's `response`, byte for byte.
const RESPONSE: &[u8] = b"HTTP/1.0 200 OK\r\nDate: Mon, 1 Jan 1996 01:01:01 GMT\r\n\
    Content-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world!";

const GET_1_0: &[u8] = b"GET / HTTP/1.0\r\n\r\n";
const GET_1_1: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/8.5.0\r\n\
    Accept: */*\r\n\r\n";

/// Sends `pieces`, one write each (Nagle off: a segment each). Before the
/// last, nothing may come back, neither a response nor the close: the
/// request is not whole yet. Returns everything read up to the end of the
/// stream, which must come.
fn exchange(server: &TestServer, pieces: &[&[u8]]) -> Vec<u8> {
    let mut client = server.connect();
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            assert!(
                client.is_silent_for(Duration::from_millis(100)),
                "an answer or a close after {i} of {} pieces",
                pieces.len()
            );
        }
        client.send(piece);
    }
    client
        .read_to_end()
        .expect("the response, then the end of the stream")
}

fn assert_response(got: &[u8]) {
    assert!(got == RESPONSE, "got {:?}", String::from_utf8_lossy(got));
}

/// `GET / HTTP/1.0`, on several fresh connections one after another: the
/// article's response each time, then the close. A bare `\n\n` (EOL1) ends
/// a request as well as `\r\n\r\n` (EOL2).
#[test]
fn http_1_0_get_gets_the_article_s_response_then_the_close() {
    let server = TestServer::start(BIN, &[]);
    for _ in 0..5 {
        assert_response(&exchange(&server, &[GET_1_0]));
    }
    assert_response(&exchange(&server, &[b"GET / HTTP/1.0\n\n"]));
}

/// An HTTP/1.1 GET, as curl sends it, gets the same HTTP/1.0 response and
/// the close.
#[test]
fn http_1_1_get_gets_the_same_response() {
    let server = TestServer::start(BIN, &[]);
    for _ in 0..3 {
        assert_response(&exchange(&server, &[GET_1_1]));
    }
}

/// A request split across several writes, its blank line included, is
/// gathered (the article's `requests[fileno] +=`) and answered once whole.
#[test]
fn a_request_split_across_writes() {
    let server = TestServer::start(BIN, &[]);
    let pieces: [&[u8]; 5] = [b"GET / HT", b"TP/1.1\r\nHo", b"st: x\r\n", b"\r", b"\n"];
    assert_response(&exchange(&server, &pieces));
    let bytes: Vec<&[u8]> = GET_1_0.chunks(1).collect();
    assert_response(&exchange(&server, &bytes));
}

/// Fifty clients at once, each sending its request in two pieces: every
/// one gets the response and the close.
#[test]
fn fifty_clients_at_once() {
    const CLIENTS: usize = 50;
    let server = TestServer::start(BIN, &[]);
    let start_together = Barrier::new(CLIENTS);
    thread::scope(|s| {
        for _ in 0..CLIENTS {
            let (server, start_together) = (&server, &start_together);
            s.spawn(move || {
                start_together.wait();
                assert_response(&exchange(server, &[b"GET / HTTP/1.0\r\n", b"\r\n"]));
            });
        }
    });
}

/// A client that stops sending before its request is whole is closed at
/// once, with nothing sent: the article's loop takes `recv`'s empty result
/// for nothing and spins on the socket. One that resets mid-request is
/// dropped. Neither stops the server serving the next client.
#[test]
fn a_client_that_leaves_mid_request_is_closed() {
    let server = TestServer::start(BIN, &[]);
    let mut half = server.connect();
    half.send(b"GET / HTTP/1.0\r\n");
    half.shutdown_write();
    assert_eq!(half.read_to_end().expect("a clean close"), b"");

    let mut reset: LineClient = server.connect();
    reset.send(b"GET / HTTP/1.0\r\n");
    reset.reset();
    assert_response(&exchange(&server, &[GET_1_0]));
}

/// Starting up as every article's program does: a second instance on the
/// address the first listens on is one `error: cannot listen on …` line and
/// exit 1, anything but `--addr HOST:PORT` one `usage:` line and exit 2
/// (`testkit::cli::article_start_up`); the first still answers.
#[test]
fn article_start_up() {
    let first = testkit::cli::article_start_up(BIN, &[]);
    assert_response(&exchange(&first, &[GET_1_0]));
}
