//! epoll-http's request handling against arbitrary bytes, cut at arbitrary
//! points as reads would cut them: it never panics, and everything it writes
//! is a complete HTTP response with the headers every response must carry.
#![no_main]

use std::time::SystemTime;

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../epoll-http/src/http.rs"]
mod http;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let step = usize::from(data[0]).max(1);
    let prebuilt = http::Prebuilt::new(SystemTime::now());
    let (mut pending, mut body_left, mut out) = (Vec::new(), 0, Vec::new());
    for chunk in data[1..].chunks(step) {
        pending.extend_from_slice(chunk);
        let handled = http::respond(&pending, &mut body_left, &prebuilt, &mut out);
        pending.drain(..handled.consumed);
        if handled.close {
            break;
        }
    }
    let mut rest = &out[..];
    while !rest.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut r = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(len)) = r.parse(rest) else {
            panic!("incomplete response");
        };
        let length: usize = r
            .headers
            .iter()
            .find(|h| h.name == "Content-Length")
            .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
            .expect("Content-Length");
        assert!(r.headers.iter().any(|h| h.name == "Date"));
        let body = if r.code == Some(200) && !rest[len..].starts_with(b"Hello, world!") {
            0
        } else {
            length
        };
        rest = &rest[len + body..];
    }
});
