//! The HTTP side of the server: every complete request in a buffer gets its
//! response, whatever the readiness loop around it.
//!
//! The article looks for the end of a request with `b'\n\n' in request` and
//! answers anything with one fixed `HTTP/1.0 200 OK`. Here request heads are
//! parsed with `httparse`, keep-alive follows RFC 9112, pipelined requests
//! are answered in order, bodies are skipped, and every malformed or
//! oversized request gets a complete error response before the close.

use std::fmt::Write as _;
use std::mem::MaybeUninit;
use std::time::SystemTime;

/// A request head longer than this gets `431` as soon as it passes it.
pub const HEAD_LIMIT: usize = 8 * 1024;
/// A request body longer than this gets `413`; shorter ones are skipped.
pub const BODY_LIMIT: usize = 1 << 20;
/// More header lines than this get `431`.
const MAX_HEADERS: usize = 64;
/// The article's response body.
const BODY: &[u8] = b"Hello, world!";
/// The `Server` header.
const SERVER: &str = "epoll-http";

/// Whether the connection stays open after a response, and how the response
/// says so (RFC 9112 §9.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Persist {
    /// HTTP/1.1's default: open, nothing said.
    Open,
    /// HTTP/1.0 that asked for `Connection: keep-alive`: open, and the
    /// response says `Connection: keep-alive` too.
    OpenSaid,
    /// Closed after this response, which says `Connection: close`.
    Close,
}

impl Persist {
    fn header(self) -> &'static str {
        match self {
            Persist::Open => "",
            Persist::OpenSaid => "Connection: keep-alive\r\n",
            Persist::Close => "Connection: close\r\n",
        }
    }
}

/// The `200` responses, prebuilt to the last byte. They change only with
/// the `Date` header, so they are rebuilt once a second, not per request.
/// (Not the article's `responses`, which is what a connection is owed:
/// `Conn::responses` in `main.rs`.)
pub struct Prebuilt {
    second: u64,
    date: String,
    /// `[GET, HEAD]` × `[Persist::Open, OpenSaid, Close]`.
    ok: [[Vec<u8>; 3]; 2],
}

impl Prebuilt {
    pub fn new(now: SystemTime) -> Prebuilt {
        let mut prebuilt = Prebuilt {
            second: u64::MAX,
            date: String::new(),
            ok: Default::default(),
        };
        prebuilt.refresh(now);
        prebuilt
    }

    /// Rebuilds the responses if `now` is in a new second.
    pub fn refresh(&mut self, now: SystemTime) {
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if second == self.second {
            return;
        }
        self.second = second;
        self.date = httpdate::fmt_http_date(now);
        for (m, head_only) in [false, true].into_iter().enumerate() {
            for (p, persist) in [Persist::Open, Persist::OpenSaid, Persist::Close]
                .into_iter()
                .enumerate()
            {
                let mut r = Vec::new();
                self.write_head(&mut r, "200 OK", "", BODY.len(), persist);
                if !head_only {
                    r.extend_from_slice(BODY);
                }
                self.ok[m][p] = r;
            }
        }
    }

    /// Status line and headers, through the blank line.
    fn write_head(
        &self,
        out: &mut Vec<u8>,
        status: &str,
        extra: &str,
        content_length: usize,
        persist: Persist,
    ) {
        let mut head = String::with_capacity(160);
        let _ = write!(
            head,
            "HTTP/1.1 {status}\r\nServer: {SERVER}\r\nDate: {}\r\n\
             Content-Type: text/plain\r\nContent-Length: {content_length}\r\n{extra}{}\r\n",
            self.date,
            persist.header(),
        );
        out.extend_from_slice(head.as_bytes());
    }

    /// A complete response with a short text body: errors and `405`.
    fn write_status(&self, out: &mut Vec<u8>, status: &str, extra: &str, persist: Persist) {
        let body = format!("{status}\n");
        self.write_head(out, status, extra, body.len(), persist);
        out.extend_from_slice(body.as_bytes());
    }
}

/// What [`respond`] did with the buffered bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handled {
    /// Bytes used: complete request heads and the body bytes skipped. The
    /// rest is the start of a request still arriving.
    pub consumed: usize,
    /// Responses appended.
    pub responses: usize,
    /// The last response ends the connection: write what is owed, then close.
    pub close: bool,
}

/// Answers every complete request at the start of `input`, appending the
/// responses to `out`, in order.
///
/// `body_left` carries the part of a request body not yet received from one
/// call to the next; it is skipped before the next request is parsed.
pub fn respond(
    input: &[u8],
    body_left: &mut usize,
    prebuilt: &Prebuilt,
    out: &mut Vec<u8>,
) -> Handled {
    let mut handled = Handled {
        consumed: 0,
        responses: 0,
        close: false,
    };
    loop {
        let skip = (*body_left).min(input.len() - handled.consumed);
        handled.consumed += skip;
        *body_left -= skip;
        let rest = &input[handled.consumed..];
        if *body_left > 0 || rest.is_empty() {
            return handled;
        }
        let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let verdict = match req.parse_with_uninit_headers(rest, &mut headers) {
            Ok(httparse::Status::Complete(len)) if len > HEAD_LIMIT => Err(TOO_LARGE),
            Ok(httparse::Status::Complete(len)) => check(&req).map(|r| (r, len)),
            // Not all here yet: fine unless it is already too long.
            Ok(httparse::Status::Partial) if rest.len() > HEAD_LIMIT => Err(TOO_LARGE),
            Ok(httparse::Status::Partial) => return handled,
            Err(httparse::Error::TooManyHeaders) => Err(TOO_LARGE),
            Err(_) => Err(BAD_REQUEST),
        };
        handled.responses += 1;
        match verdict {
            Ok((request, len)) => {
                handled.consumed += len;
                *body_left = request.content_length;
                match request.method {
                    Method::Get => out.extend_from_slice(&prebuilt.ok[0][request.persist as usize]),
                    Method::Head => {
                        out.extend_from_slice(&prebuilt.ok[1][request.persist as usize])
                    }
                    Method::Other => prebuilt.write_status(
                        out,
                        "405 Method Not Allowed",
                        "Allow: GET, HEAD\r\n",
                        request.persist,
                    ),
                }
                if request.persist == Persist::Close {
                    handled.close = true;
                    return handled;
                }
            }
            Err(status) => {
                prebuilt.write_status(out, status, "", Persist::Close);
                handled.close = true;
                return handled;
            }
        }
    }
}

const BAD_REQUEST: &str = "400 Bad Request";
const TOO_LARGE: &str = "431 Request Header Fields Too Large";
const PAYLOAD_TOO_LARGE: &str = "413 Content Too Large";
const NOT_IMPLEMENTED: &str = "501 Not Implemented";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Head,
    Other,
}

/// What the server needs to know about a parsed request.
#[derive(Debug)]
struct Request {
    method: Method,
    persist: Persist,
    content_length: usize,
}

/// Reads the request line and the headers that matter, or the error status.
fn check(req: &httparse::Request<'_, '_>) -> Result<Request, &'static str> {
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        _ => Method::Other,
    };
    let http11 = req.version == Some(1);
    let (mut close, mut keep_alive, mut host) = (false, false, false);
    let mut content_length = None;
    for header in req.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            let length = parse_length(header.value).ok_or(BAD_REQUEST)?;
            // Several Content-Length headers must agree (RFC 9112 §6.3).
            if content_length.is_some_and(|l| l != length) {
                return Err(BAD_REQUEST);
            }
            content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(NOT_IMPLEMENTED);
        } else if name.eq_ignore_ascii_case("host") {
            host = true;
        }
    }
    // RFC 9112 §3.2: an HTTP/1.1 request without Host gets 400.
    if http11 && !host {
        return Err(BAD_REQUEST);
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > BODY_LIMIT {
        return Err(PAYLOAD_TOO_LARGE);
    }
    let persist = match (http11, close, keep_alive) {
        (_, true, _) => Persist::Close,
        (true, false, _) => Persist::Open,
        (false, false, true) => Persist::OpenSaid,
        (false, false, false) => Persist::Close,
    };
    Ok(Request {
        method,
        persist,
        content_length,
    })
}

/// A `Content-Length` value: ASCII digits only, no sign, no spaces inside.
/// Values past `usize` count as too large.
fn parse_length(value: &[u8]) -> Option<usize> {
    let value = value.trim_ascii();
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        value
            .iter()
            .try_fold(0usize, |n, &d| {
                n.checked_mul(10)?.checked_add(usize::from(d - b'0'))
            })
            .unwrap_or(usize::MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> (Handled, String, usize) {
        let prebuilt = Prebuilt::new(SystemTime::now());
        let mut body_left = 0;
        let mut out = Vec::new();
        let handled = respond(input, &mut body_left, &prebuilt, &mut out);
        (handled, String::from_utf8(out).unwrap(), body_left)
    }

    fn statuses(out: &str) -> Vec<&str> {
        out.split("HTTP/1.1 ").skip(1).map(|r| &r[..3]).collect()
    }

    #[test]
    fn a_get_gets_hello_world_and_stays_open() {
        let (h, out, _) = run(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!((h.responses, h.close, h.consumed), (1, false, 27));
        assert!(out.starts_with("HTTP/1.1 200 OK\r\nServer: epoll-http\r\nDate: "));
        assert!(out.contains("\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n"));
        assert!(out.ends_with("\r\n\r\nHello, world!"));
        assert!(!out.contains("Connection"));
    }

    #[test]
    fn head_has_no_body() {
        let (_, out, _) = run(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(out.ends_with("Content-Length: 13\r\n\r\n"));
    }

    #[test]
    fn pipelined_requests_are_answered_in_order() {
        let (h, out, _) = run(
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\nPUT / HTTP/1.1\r\nHost: x\r\n\r\nHEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTT",
        );
        assert_eq!((h.responses, h.close), (3, false));
        assert_eq!(statuses(&out), ["200", "405", "200"]);
        assert!(out.contains("Allow: GET, HEAD\r\n"));
    }

    #[test]
    fn keep_alive_follows_the_version_and_the_connection_header() {
        let (h, out, _) = run(b"GET / HTTP/1.0\r\n\r\n");
        assert!(h.close && out.contains("Connection: close\r\n"));
        let (h, out, _) = run(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(!h.close && out.contains("Connection: keep-alive\r\n"));
        let (h, out, _) = run(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade, close\r\n\r\n");
        assert!(h.close && out.contains("Connection: close\r\n"));
    }

    #[test]
    fn nothing_after_a_closing_request_is_answered() {
        let (h, _, _) = run(b"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!((h.responses, h.close, h.consumed), (1, true, 18));
    }

    #[test]
    fn bodies_are_skipped_even_across_reads() {
        let prebuilt = Prebuilt::new(SystemTime::now());
        let mut body_left = 0;
        let mut out = Vec::new();
        let h = respond(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123",
            &mut body_left,
            &prebuilt,
            &mut out,
        );
        assert_eq!((h.responses, body_left), (1, 6));
        let h = respond(
            b"456789GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            &mut body_left,
            &prebuilt,
            &mut out,
        );
        assert_eq!((h.responses, h.consumed, body_left), (1, 33, 0));
        assert_eq!(statuses(&String::from_utf8(out).unwrap()), ["405", "200"]);
    }

    #[test]
    fn errors_close_with_a_complete_response() {
        for (input, status) in [
            (&b"GET / FTP/1.1\r\n\r\n"[..], "400"),
            (b"GET /\r\n\r\n", "400"),
            (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", "400"),
            (b"GET / HTTP/1.1\r\n\r\n", "400"),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
                "400",
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                "400",
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n",
                "413",
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                "501",
            ),
        ] {
            let (h, out, _) = run(input);
            assert!(h.close, "{input:?}");
            assert_eq!(statuses(&out), [status], "{input:?}");
            assert!(out.contains("Connection: close\r\n"), "{input:?}");
            let body = out.split("\r\n\r\n").nth(1).unwrap();
            let length: usize = out
                .split("Content-Length: ")
                .nth(1)
                .unwrap()
                .split('\r')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(body.len(), length, "{input:?}");
        }
    }

    #[test]
    fn an_over_long_head_gets_431_before_it_ends() {
        let mut head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: ".to_vec();
        head.resize(HEAD_LIMIT, b'a');
        let (h, _, _) = run(&head);
        assert_eq!(
            (h.responses, h.close),
            (0, false),
            "at the limit: wait for more"
        );
        head.push(b'a');
        let (h, out, _) = run(&head);
        assert_eq!((h.responses, h.close), (1, true));
        assert_eq!(statuses(&out), ["431"]);
    }

    #[test]
    fn too_many_headers_get_431() {
        let mut head = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            head.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        let (h, out, _) = run(&head);
        assert!(h.close);
        assert_eq!(statuses(&out), ["431"]);
    }

    #[test]
    fn lengths_parse_strictly() {
        assert_eq!(parse_length(b" 42 "), Some(42));
        assert_eq!(parse_length(b"+1"), None);
        assert_eq!(parse_length(b"1 2"), None);
        assert_eq!(parse_length(b""), None);
        assert_eq!(parse_length(b"99999999999999999999999"), Some(usize::MAX));
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        /// Feeds `chunks` as the server does: what is not consumed waits for
        /// the next read; nothing is answered after a closing response.
        fn serve(chunks: &[Vec<u8>]) -> (Vec<u8>, bool) {
            let prebuilt = Prebuilt::new(SystemTime::now());
            let (mut pending, mut body_left, mut out) = (Vec::new(), 0, Vec::new());
            for chunk in chunks {
                pending.extend_from_slice(chunk);
                let handled = respond(&pending, &mut body_left, &prebuilt, &mut out);
                pending.drain(..handled.consumed);
                if handled.close {
                    return (out, true);
                }
            }
            (out, false)
        }

        /// Every response in `out`, which must be complete and well formed:
        /// (status, says `Connection: close`).
        fn parse_all(mut out: &[u8]) -> Vec<(u16, bool)> {
            let mut all = Vec::new();
            while !out.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; 16];
                let mut r = httparse::Response::new(&mut headers);
                let len = match r.parse(out) {
                    Ok(httparse::Status::Complete(len)) => len,
                    other => panic!("not a complete response: {other:?}"),
                };
                let header = |name: &str| {
                    r.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| std::str::from_utf8(h.value).unwrap())
                };
                for required in ["Server", "Date", "Content-Type", "Content-Length"] {
                    assert!(header(required).is_some(), "no {required}");
                }
                let length: usize = header("Content-Length").unwrap().parse().unwrap();
                let status = r.code.unwrap();
                // A 200 to HEAD has the length of the body it does not carry.
                let body = if status == 200 && !out[len..].starts_with(BODY) {
                    0
                } else {
                    length
                };
                all.push((status, header("Connection") == Some("close")));
                out = &out[len + body..];
            }
            all
        }

        fn cut(input: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
            let mut points: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
            points.sort_unstable();
            let mut from = 0;
            let mut chunks = Vec::new();
            for p in points.into_iter().chain([input.len()]) {
                chunks.push(input[from..p].to_vec());
                from = p;
            }
            chunks
        }

        /// One valid request, and what the server must answer: the status,
        /// and whether the connection then closes.
        fn request() -> impl Strategy<Value = (Vec<u8>, u16, bool)> {
            (
                prop::sample::select(vec!["GET", "HEAD", "POST", "PUT", "DELETE"]),
                any::<bool>(),
                prop::sample::select(vec![
                    None,
                    Some("close"),
                    Some("keep-alive"),
                    Some("Keep-Alive, Upgrade"),
                ]),
                prop::collection::vec(any::<u8>(), 0..40),
            )
                .prop_map(|(method, http11, connection, body)| {
                    let mut r = format!("{method} /p HTTP/1.{}\r\n", u8::from(http11));
                    if http11 {
                        r.push_str("Host: h\r\n");
                    }
                    if let Some(c) = connection {
                        r.push_str(&format!("Connection: {c}\r\n"));
                    }
                    if !body.is_empty() {
                        r.push_str(&format!("Content-Length: {}\r\n", body.len()));
                    }
                    r.push_str("\r\n");
                    let mut bytes = r.into_bytes();
                    bytes.extend_from_slice(&body);
                    let status = if matches!(method, "GET" | "HEAD") {
                        200
                    } else {
                        405
                    };
                    let keep_alive =
                        connection.is_some_and(|c| c.to_ascii_lowercase().contains("keep-alive"));
                    let close = connection == Some("close") || (!http11 && !keep_alive);
                    (bytes, status, close)
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn arbitrary_bytes_never_panic_and_every_response_is_complete(
                input in prop::collection::vec(
                    prop_oneof![4 => any::<u8>(), 1 => Just(b'\r'), 1 => Just(b'\n'),
                                1 => Just(b' '), 1 => Just(b':')],
                    0..3000,
                ),
                cuts in prop::collection::vec(0usize..3000, 0..8),
                prefix in prop::sample::select(vec!["", "GET / HTTP/1.1\r\n", "GET / HTTP/1.1\r\nHost: h\r\n\r\n"]),
            ) {
                let mut bytes = prefix.as_bytes().to_vec();
                bytes.extend_from_slice(&input);
                let (out, closed) = serve(&cut(&bytes, &cuts));
                let all = parse_all(&out);
                // Only the last response may close, and a close is said.
                for (i, &(status, close)) in all.iter().enumerate() {
                    prop_assert!([200, 400, 405, 413, 431, 501].contains(&status));
                    prop_assert_eq!(close, closed && i == all.len() - 1);
                    if status >= 400 && status != 405 {
                        prop_assert!(close, "an error that does not close");
                    }
                }
            }

            #[test]
            fn valid_requests_get_their_answers_however_they_are_cut(
                requests in prop::collection::vec(request(), 1..12),
                cuts in prop::collection::vec(0usize..2000, 0..10),
            ) {
                let mut input = Vec::new();
                let mut expected = Vec::new();
                for (bytes, status, close) in requests {
                    input.extend_from_slice(&bytes);
                    expected.push((status, close));
                    if close {
                        break;
                    }
                }
                let (out, closed) = serve(&cut(&input, &cuts));
                prop_assert_eq!(parse_all(&out), expected.clone());
                prop_assert_eq!(closed, expected.last().unwrap().1);
            }
        }
    }
}
