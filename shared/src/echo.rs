//! The echo protocol (docs/protocol.md), as every echo server speaks it.
//!
//! - A reply is the line with ASCII `a-z` upper-cased (Python's
//!   `bytes.upper()`), then the server's suffix (`_SB` for selectors-echo,
//!   nothing for the others), then `\n`: [`reply_into`].
//! - Every line gets one reply, in order. A read's complete lines are
//!   answered together, so a batch of pipelined lines becomes one write:
//!   [`answer_lines`] for a connection's own [`LineBuffer`], [`answer_read`]
//!   for a read that landed in the event loop's buffer (the connection keeps
//!   only its unfinished line).
//! - A line longer than `--max-line` is answered `ERR line too long`, and
//!   nothing after it: the connection closes.
//! - At end of input the unfinished last line is answered as a line
//!   ([`answer_rest`], [`answer_partial_at_end`]).
//! - What a non-blocking socket does not take now is owed, and kept in
//!   order ([`Outbox`]): the Python originals call `send(data)` once and
//!   drop whatever it did not write. Past [`MAX_OWED`] a server stops
//!   reading from that client until it catches up.
//!
//! The upper-casing itself is done 16 bytes at a time in `fast.rs`, beside
//! its plain definition; nothing here depends on how.

use std::fmt;

use crate::fast::{replies_into, upper_into};
#[cfg(feature = "line")]
use crate::line::LineBuffer;

/// The reply to a line longer than `--max-line`; the connection closes after it.
pub const ERR_LINE_TOO_LONG: &[u8] = b"ERR line too long\n";

/// A line was longer than the limit. The connection cannot be framed any more:
/// the server answers `ERR line too long` and closes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTooLong {
    /// The limit that was passed, in bytes, newline not counted.
    pub limit: usize,
}

impl fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line longer than {} bytes", self.limit)
    }
}

impl std::error::Error for LineTooLong {}

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

/// Answers every complete line buffered in `input`, appending the replies to
/// `out`.
///
/// On an over-long line it appends `ERR line too long` and returns the error:
/// the caller sends what `out` holds and closes the connection.
#[cfg(feature = "line")]
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
            Ok(Some(lines)) => replies_into(lines, suffix, out),
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
#[cfg(feature = "line")]
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

/// Answers the lines of one read that landed in a buffer the event loop
/// owns (`data`), appending the replies to `out`; `partial` is the
/// connection's unfinished line, the only input it keeps between reads.
///
/// A server that reads each connection into its own [`LineBuffer`] keeps
/// that buffer (8 KiB and more) for as long as the connection lives. With
/// this, a connection keeps nothing between lines: complete lines are
/// answered straight from the loop's buffer, and only a line still
/// arriving is copied into `partial` (and given back once it is answered).
///
/// The rules are [`answer_lines`']: the lines are answered in order, and a
/// line longer than `max_line` appends `ERR line too long` and returns the
/// error as soon as the part received passes the limit, at the same point
/// however the stream was cut into reads.
pub fn answer_read(
    partial: &mut Vec<u8>,
    data: &[u8],
    max_line: usize,
    suffix: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), LineTooLong> {
    // The common case, a read of whole lines: no line can be too long when
    // the whole read is not, and the replies are the read upper-cased.
    if partial.is_empty()
        && suffix.is_empty()
        && data.last() == Some(&b'\n')
        && data.len() <= max_line
    {
        upper_into(data, out);
        return Ok(());
    }
    let mut rest = data;
    // The line that began in an earlier read ends in this one, or not.
    if !partial.is_empty() {
        let Some(newline) = memchr::memchr(b'\n', rest) else {
            if partial.len() + rest.len() > max_line {
                return too_long(partial, max_line, out);
            }
            partial.extend_from_slice(rest);
            return Ok(());
        };
        if partial.len() + newline > max_line {
            return too_long(partial, max_line, out);
        }
        partial.extend_from_slice(&rest[..newline]);
        reply_into(partial, suffix, out);
        // Given back: an idle connection holds no input buffer.
        *partial = Vec::new();
        rest = &rest[newline + 1..];
    }
    // The complete lines, as one batch: one search from the end, as
    // `LineBuffer::next_lines` does. A batch longer than one line could
    // hide a line that is too long, so then its lines are checked
    // one by one, each byte once; the lines before a bad one are answered
    // first. Framing stays linear in the bytes read, whatever the limit.
    let found = match rest.last() {
        Some(b'\n') => Some(rest.len() - 1),
        _ => memchr::memrchr(b'\n', rest),
    };
    if let Some(last) = found {
        let mut batch_end = last + 1;
        if last > max_line {
            if let Some(bad) = first_line_too_long(&rest[..=last], max_line) {
                batch_end = bad;
            }
        }
        let (lines, after) = rest.split_at(batch_end);
        if suffix.is_empty() {
            upper_into(lines, out);
        } else {
            replies_into(lines, suffix, out);
        }
        if batch_end <= last {
            return too_long(partial, max_line, out);
        }
        rest = after;
    }
    // What follows the last newline starts the next line.
    if rest.len() > max_line {
        return too_long(partial, max_line, out);
    }
    partial.extend_from_slice(rest);
    Ok(())
}

/// Where the first line of `lines` (whole lines, each ending in `\n`) that is
/// longer than `max_line` starts, if one is.
fn first_line_too_long(lines: &[u8], max_line: usize) -> Option<usize> {
    let mut start = 0;
    for newline in memchr::memchr_iter(b'\n', lines) {
        if newline - start > max_line {
            return Some(start);
        }
        start = newline + 1;
    }
    None
}

/// An over-long line: `ERR line too long`, and nothing more will be
/// answered, so the unfinished line is let go at once (it may be 64 KiB,
/// and nothing must ever send it).
fn too_long(partial: &mut Vec<u8>, max_line: usize, out: &mut Vec<u8>) -> Result<(), LineTooLong> {
    *partial = Vec::new();
    out.extend_from_slice(ERR_LINE_TOO_LONG);
    Err(LineTooLong { limit: max_line })
}

/// The replies to what one read returned, for a connection framed with
/// [`answer_read`]: `read` is the bytes read, empty at end of stream (then
/// the unfinished last line is answered as a line). Returns `true` when the
/// input is over, at end of stream or after an over-long line (`ERR line
/// too long` appended): the server writes what is owed, then closes.
#[inline]
pub fn answer_received(
    partial: &mut Vec<u8>,
    read: &[u8],
    max_line: usize,
    suffix: &[u8],
    out: &mut Vec<u8>,
) -> bool {
    if read.is_empty() {
        answer_partial_at_end(partial, suffix, out);
        return true;
    }
    answer_read(partial, read, max_line, suffix, out).is_err()
}

/// At end of input, for a connection framed with [`answer_read`]: the
/// unterminated last fragment, answered as a line.
pub fn answer_partial_at_end(partial: &mut Vec<u8>, suffix: &[u8], out: &mut Vec<u8>) {
    if !partial.is_empty() {
        reply_into(partial, suffix, out);
        *partial = Vec::new();
    }
}

/// The buffers an event loop owns and lends to each ready connection in
/// turn: every read lands in `input`, every batch of replies is built in
/// `output`. With these a connection keeps only an unfinished line (if any)
/// and what its socket would not take (rarely anything), so an idle
/// connection holds no buffer at all, where a [`LineBuffer`] per connection
/// would keep its 8 KiB for as long as the connection lives.
///
/// Only buffers: the read into `input`, and what a server does when it
/// would block, are the lesson, and stay in each server's own code.
#[derive(Debug)]
pub struct Scratch {
    /// Where one read lands: [`SCRATCH_READ`] bytes.
    pub input: Box<[u8]>,
    /// Where the replies to one read are built (cleared before each).
    pub output: Vec<u8>,
}

/// What [`Scratch`] reads at once: a few hundred pipelined lines.
pub const SCRATCH_READ: usize = 64 * 1024;

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Scratch {
    pub fn new() -> Self {
        Scratch {
            input: vec![0; SCRATCH_READ].into_boxed_slice(),
            output: Vec::with_capacity(SCRATCH_READ),
        }
    }
}

/// Output owed to a non-blocking socket: replies are appended at the back
/// ([`buf_mut`](Self::buf_mut)), and the server writes from the front
/// ([`pending`](Self::pending)) and says how much the socket took
/// ([`consume`](Self::consume)). Only the buffer: the write, and what a
/// server does when it would block, are each server's own.
#[derive(Debug)]
pub struct Outbox {
    buf: Vec<u8>,
    sent: usize,
    /// Storage kept once everything is written.
    keep: usize,
}

/// Storage an emptied [`Outbox::new`] keeps; a burst larger than this gives
/// the rest back once it has been written.
const KEEP_CAPACITY: usize = 64 * 1024;

impl Default for Outbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Outbox {
    /// An empty outbox, for a server that builds every reply in it; it
    /// allocates on the first reply and keeps up to 64 KiB once drained.
    pub fn new() -> Self {
        Outbox {
            buf: Vec::new(),
            sent: 0,
            keep: KEEP_CAPACITY,
        }
    }

    /// An empty outbox that gives all its storage back each time it
    /// drains: for a server that writes replies from a buffer of its loop
    /// ([`Scratch`]) and keeps here only what a socket would not take,
    /// which is rare. An idle connection then holds no output buffer.
    pub fn spill() -> Self {
        Outbox {
            keep: 0,
            ..Self::new()
        }
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

    /// The owed bytes, oldest first: what the server writes next.
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
            if self.buf.capacity() > self.keep {
                self.buf = Vec::new();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many short lines and a tail past the limit in one read: every line
    /// answered, then the error, and the tail let go. (Each line is checked
    /// once; before, each searched the tail again, lines × tail in all.)
    #[test]
    fn many_lines_then_a_long_tail_in_one_read() {
        let mut data = b"ab\n".repeat(5000);
        data.extend(std::iter::repeat_n(b'x', 3000));
        let mut partial = Vec::new();
        let mut out = Vec::new();
        let verdict = answer_read(&mut partial, &data, 100, b"", &mut out);
        assert_eq!(verdict, Err(LineTooLong { limit: 100 }));
        let mut want = b"AB\n".repeat(5000);
        want.extend_from_slice(ERR_LINE_TOO_LONG);
        assert_eq!(out, want);
        assert_eq!(partial.capacity(), 0, "the rejected line is kept");
    }

    /// A line over the limit in the middle of a batch: the lines before it
    /// are answered, the error follows, nothing after it is.
    #[test]
    fn a_long_line_inside_a_batch_stops_it_there() {
        let mut data = b"ok\n".repeat(50);
        data.extend(std::iter::repeat_n(b'y', 150));
        data.extend_from_slice(b"\nnever\n");
        let mut partial = b"x".to_vec();
        let mut out = Vec::new();
        let verdict = answer_read(&mut partial, &data[..], 100, b"_SB", &mut out);
        assert_eq!(verdict, Err(LineTooLong { limit: 100 }));
        let mut want = b"XOK_SB\n".to_vec();
        want.extend(b"OK_SB\n".repeat(49));
        want.extend_from_slice(ERR_LINE_TOO_LONG);
        assert_eq!(out, want);
        assert!(partial.is_empty());
    }

    /// A partial line that grows past the limit is let go with its error.
    #[test]
    fn a_partial_line_past_the_limit_is_let_go() {
        let mut partial = b"z".repeat(90);
        let mut out = Vec::new();
        let verdict = answer_read(&mut partial, &[b'z'; 20], 100, b"", &mut out);
        assert_eq!(verdict, Err(LineTooLong { limit: 100 }));
        assert_eq!(out, ERR_LINE_TOO_LONG);
        assert_eq!(partial.capacity(), 0);
    }

    #[test]
    fn only_ascii_lowercase_changes() {
        let mut out = Vec::new();
        reply_into("héllo, World! 123 ß\r".as_bytes(), b"", &mut out);
        assert_eq!(out, "HéLLO, WORLD! 123 ß\r\n".as_bytes());
    }

    #[test]
    fn the_suffix_goes_before_the_newline() {
        let mut out = Vec::new();
        reply_into(b"abc", b"_SB", &mut out);
        assert_eq!(out, b"ABC_SB\n");
    }

    #[cfg(feature = "line")]
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

    /// What a short write did not take stays owed, in order, with what is
    /// appended later behind it; once drained, a spill outbox gives its
    /// storage back, so an idle connection holds none.
    #[test]
    fn the_rest_of_a_short_write_stays_owed() {
        let mut owed = Outbox::spill();
        owed.buf_mut().extend_from_slice(b"0123456789");
        owed.consume(6);
        assert_eq!(owed.pending(), b"6789");
        owed.buf_mut().extend_from_slice(b"ab");
        assert_eq!(owed.pending(), b"6789ab");
        owed.consume(6);
        assert!(owed.is_empty());
        assert_eq!(owed.buf_mut().capacity(), 0);
    }

    #[cfg(feature = "line")]
    #[test]
    fn an_over_long_line_is_answered_with_the_error() {
        let mut input = LineBuffer::new(3);
        input.extend(b"ok\ntoolong");
        let mut out = Vec::new();
        assert!(answer_lines(&mut input, b"", &mut out).is_err());
        assert_eq!(out, b"OK\nERR line too long\n");
    }
}
