//! The client's side of a traced exchange: one request, its reply, then a
//! pipelined batch of 16 and their replies.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::strace::now;

/// Requests in the pipelined batch.
pub const BATCH: usize = 16;

/// How long the client waits after connecting, and after its first reply:
/// long enough for the server to be back in its wait, so that each step's
/// calls start from the same place on every run.
const PAUSE: Duration = Duration::from_millis(10);

/// The client's three steps, and when its last reply came, on strace's
/// clock (seconds since the epoch).
#[derive(Debug, Clone, Copy)]
pub struct Steps {
    pub connect: f64,
    pub line: f64,
    pub batch: f64,
    pub end: f64,
}

impl Steps {
    /// When step `i` (0 connect, 1 line, 2 batch) began, and when the
    /// next did (the last: when its replies were all in).
    pub fn span(&self, i: usize) -> (f64, f64) {
        let at = [self.connect, self.line, self.batch, self.end];
        (at[i], at[i + 1])
    }
}

/// The steps' names, as the README and timeline show them.
pub const STEP_NAMES: [&str; 3] = [
    "the client connects",
    "it sends one request",
    "it sends 16 at once",
];

/// Connects, pauses, sends one request and reads its reply, pauses, then
/// sends [`BATCH`] in one write and reads theirs. Returns the steps' times
/// and the connection, for the caller to close once the trace is over: its
/// close is not part of what is shown.
pub fn exchange(addr: SocketAddr, http: bool) -> anyhow::Result<(Steps, TcpStream)> {
    let request = |i: usize| -> Vec<u8> {
        if http {
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec()
        } else {
            format!("trace line {i:02}\n").into_bytes()
        }
    };
    let connect = now();
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    std::thread::sleep(PAUSE);
    let line = now();
    stream.write_all(&request(0))?;
    let mut got = Replies::new(http);
    got.read(&mut stream, 1)?;
    std::thread::sleep(PAUSE);
    let batch: Vec<u8> = (1..=BATCH).flat_map(request).collect();
    let batch_at = now();
    stream.write_all(&batch)?;
    got.read(&mut stream, 1 + BATCH)?;
    let steps = Steps {
        connect,
        line,
        batch: batch_at,
        end: now(),
    };
    Ok((steps, stream))
}

/// The bytes read so far, and how many complete replies they hold.
struct Replies {
    http: bool,
    bytes: Vec<u8>,
}

impl Replies {
    fn new(http: bool) -> Replies {
        Replies {
            http,
            bytes: Vec::new(),
        }
    }

    /// Reads until `want` replies in all have come.
    fn read(&mut self, stream: &mut TcpStream, want: usize) -> anyhow::Result<()> {
        let mut buf = [0u8; 4096];
        while self.count() < want {
            let n = stream.read(&mut buf).context("reading replies")?;
            if n == 0 {
                bail!("the server closed after {} replies", self.count());
            }
            self.bytes.extend_from_slice(&buf[..n]);
        }
        Ok(())
    }

    /// Complete replies in `bytes`: lines, or HTTP responses (headers and
    /// their `Content-Length` body).
    fn count(&self) -> usize {
        if !self.http {
            return self.bytes.iter().filter(|&&b| b == b'\n').count();
        }
        let mut rest = &self.bytes[..];
        let mut n = 0;
        // Responses that are not HTTP never complete: the read times out.
        while let Ok(Some(len)) = bench::http_response_len(rest) {
            rest = &rest[len..];
            n += 1;
        }
        n
    }
}
