//! The echo protocol of CONVENTIONS.md: one reply per line, in order.
//!
//! [`answer_lines`] turns what a [`LineBuffer`] holds into replies appended to
//! an output buffer, so a batch of pipelined lines becomes one write.
//! [`Outbox`] keeps what a non-blocking socket has not taken yet: the Python
//! originals call `send(data)` once and drop whatever it did not write.

use std::io::{self, Write};

use crate::line::{LineBuffer, LineTooLong};

/// The reply to a line longer than `--max-line`; the connection closes after it.
pub const ERR_LINE_TOO_LONG: &[u8] = b"ERR line too long\n";

/// The reply to a connection over `--max-conns`, sent just before closing it.
pub const ERR_SERVER_FULL: &[u8] = b"ERR server full\n";

/// Output owed to one connection past which a server stops reading from it
/// until the client catches up, so a client that never reads cannot make the
/// server's memory grow without bound.
pub const MAX_OWED: usize = 1 << 20;

/// Appends the reply to `line`: ASCII `a-z` upper-cased, other bytes as they
/// are (Python's `bytes.upper()`), then `suffix` and `\n`.
#[inline]
pub fn reply_into(line: &[u8], suffix: &[u8], out: &mut Vec<u8>) {
    out.reserve(line.len() + suffix.len() + 1);
    upper_into(line, out);
    out.extend_from_slice(suffix);
    out.push(b'\n');
}

/// Appends `src` with ASCII `a-z` upper-cased.
///
/// The standard `make_ascii_uppercase` goes a byte at a time, and the
/// compiler's vector loop over a slice only starts at 64 bytes, past a
/// typical line: that made up most of a request's user-space instructions.
/// A loop over a fixed 16-byte block is one the compiler turns into a few
/// vector instructions (SSE2 on x86-64, NEON on ARM), so lines go 16 bytes
/// at a time.
#[inline]
fn upper_into(src: &[u8], out: &mut Vec<u8>) {
    out.reserve(src.len());
    let mut blocks = src.chunks_exact(16);
    for block in &mut blocks {
        out.extend_from_slice(&upper_16(block.try_into().expect("16 bytes")));
    }
    let tail = blocks.remainder();
    if tail.is_empty() {
        return;
    }
    if let Some(last) = src.len().checked_sub(16) {
        // The last 16 bytes as one more block; only its unwritten end is kept.
        let block = upper_16(src[last..].try_into().expect("16 bytes"));
        out.extend_from_slice(&block[16 - tail.len()..]);
    } else {
        out.extend(tail.iter().map(u8::to_ascii_uppercase));
    }
}

/// Upper-cases a 16-byte block, branch-free so that it vectorises.
#[inline(always)]
fn upper_16(mut block: [u8; 16]) -> [u8; 16] {
    for b in &mut block {
        *b -= u8::from(b.wrapping_sub(b'a') < 26) << 5;
    }
    block
}

/// Answers every complete line buffered in `input`, appending the replies to
/// `out`.
///
/// On an over-long line it appends `ERR line too long` and returns the error:
/// the caller sends what `out` holds and closes the connection.
pub fn answer_lines(
    input: &mut LineBuffer,
    suffix: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), LineTooLong> {
    loop {
        match input.next_lines() {
            // Without a suffix, the replies to a batch of lines are the batch
            // upper-cased (`\n` is left alone): one pass, however many lines.
            Ok(Some(lines)) if suffix.is_empty() => upper_into(lines, out),
            Ok(Some(lines)) => {
                for line in lines[..lines.len() - 1].split(|&b| b == b'\n') {
                    reply_into(line, suffix, out);
                }
            }
            Ok(None) => return Ok(()),
            Err(e) => {
                out.extend_from_slice(ERR_LINE_TOO_LONG);
                return Err(e);
            }
        }
    }
}

/// At end of input (the client half-closed): answers the complete lines and
/// then the unterminated last fragment, as a line.
pub fn answer_rest(
    input: &mut LineBuffer,
    suffix: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), LineTooLong> {
    answer_lines(input, suffix, out)?;
    match input.take_rest() {
        Ok(Some(line)) => reply_into(line, suffix, out),
        Ok(None) => {}
        Err(e) => {
            out.extend_from_slice(ERR_LINE_TOO_LONG);
            return Err(e);
        }
    }
    Ok(())
}

/// Output owed to a non-blocking socket: replies are appended at the back,
/// the socket takes what it can from the front.
#[derive(Debug, Default)]
pub struct Outbox {
    buf: Vec<u8>,
    sent: usize,
}

/// Storage an emptied [`Outbox`] keeps; a burst larger than this gives the
/// rest back once it has been written.
const KEEP_CAPACITY: usize = 64 * 1024;

impl Outbox {
    /// An empty outbox; it allocates on the first reply.
    pub fn new() -> Self {
        Self::default()
    }

    /// Where replies are appended ([`answer_lines`] writes here).
    pub fn buf_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Bytes owed and not yet written.
    pub fn len(&self) -> usize {
        self.buf.len() - self.sent
    }

    /// True when nothing is owed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when so much is owed that the server should stop reading from
    /// this client until it drains.
    pub fn is_full(&self) -> bool {
        self.len() >= MAX_OWED
    }

    /// The owed bytes, for a caller that writes them itself.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.sent..]
    }

    /// Records that the first `n` bytes of [`pending`](Self::pending) were
    /// written.
    pub fn consume(&mut self, n: usize) {
        self.sent += n;
        assert!(self.sent <= self.buf.len(), "consumed more than was owed");
        if self.sent == self.buf.len() {
            self.sent = 0;
            self.buf.clear();
            if self.buf.capacity() > KEEP_CAPACITY {
                self.buf = Vec::new();
            }
        }
    }

    /// Writes what is owed until it is all gone or the socket would block.
    ///
    /// `Ok(())` with [`is_empty`](Self::is_empty) false means the socket's
    /// send buffer is full: wait until it is writable and call again. A
    /// short write keeps the rest, where the Python `send` would lose it.
    pub fn write_to<W: Write + ?Sized>(&mut self, dst: &mut W) -> io::Result<()> {
        while !self.is_empty() {
            match dst.write(self.pending()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ascii_lowercase_changes() {
        let mut out = Vec::new();
        reply_into("héllo, World! 123 ß\r".as_bytes(), b"", &mut out);
        assert_eq!(out, "HéLLO, WORLD! 123 ß\r\n".as_bytes());
    }

    #[test]
    fn every_byte_value_upper_cases_like_the_standard_library() {
        let all: Vec<u8> = (0..=255u8).chain(b"abcxyz{`@[".iter().copied()).collect();
        for start in 0..8 {
            let mut out = Vec::new();
            upper_into(&all[start..], &mut out);
            assert_eq!(out, all[start..].to_ascii_uppercase());
        }
    }

    #[test]
    fn the_suffix_goes_before_the_newline() {
        let mut out = Vec::new();
        reply_into(b"abc", b"_SB", &mut out);
        assert_eq!(out, b"ABC_SB\n");
    }

    #[test]
    fn pipelined_lines_become_one_batch_of_replies() {
        let mut input = LineBuffer::new(100);
        input.extend(b"a\nb\nc");
        let mut out = Vec::new();
        assert_eq!(answer_lines(&mut input, b"", &mut out), Ok(()));
        assert_eq!(out, b"A\nB\n");
        assert_eq!(answer_rest(&mut input, b"", &mut out), Ok(()));
        assert_eq!(out, b"A\nB\nC\n");
    }

    #[test]
    fn an_over_long_line_is_answered_with_the_error() {
        let mut input = LineBuffer::new(3);
        input.extend(b"ok\ntoolong");
        let mut out = Vec::new();
        assert!(answer_lines(&mut input, b"", &mut out).is_err());
        assert_eq!(out, b"OK\nERR line too long\n");
    }

    /// A writer that takes at most `chunk` bytes a call, then would block.
    struct Trickle {
        taken: Vec<u8>,
        chunk: usize,
        calls_left: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.calls_left == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls_left -= 1;
            let n = buf.len().min(self.chunk);
            self.taken.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn short_writes_keep_the_rest() {
        let mut outbox = Outbox::new();
        outbox.buf_mut().extend_from_slice(b"0123456789");
        let mut w = Trickle {
            taken: Vec::new(),
            chunk: 3,
            calls_left: 2,
        };
        outbox.write_to(&mut w).unwrap();
        assert_eq!(w.taken, b"012345");
        assert_eq!(outbox.pending(), b"6789");
        w.calls_left = 10;
        outbox.write_to(&mut w).unwrap();
        assert_eq!(w.taken, b"0123456789");
        assert!(outbox.is_empty());
    }
}
