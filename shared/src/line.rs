//! Line framing for the echo protocol.
//!
//! TCP is a byte stream: one `recv` may hold half a line, or a hundred. The
//! Python originals treat each `recv(1024)` as one message; every port here
//! frames by `\n` instead, with [`LineBuffer`].
//!
//! The buffer reads straight into its own storage and hands out complete lines
//! as slices of it, so a line is never copied on its way in. Its size is
//! bounded: a line longer than the limit is an error as soon as the buffered
//! part passes the limit, without waiting for a newline that may never come.

use crate::echo::LineTooLong;

/// The smallest free space [`LineBuffer::spare`] offers the kernel. Large
/// enough that a pipelined batch of short lines arrives in one read, small
/// enough that a connection that has spoken once costs only a few KiB.
const MIN_READ: usize = 8 * 1024;

/// Storage held by an empty buffer is given back past this size, so one long
/// line does not pin a large allocation to an idle connection.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Bytes received on one connection that have not yet formed a whole line.
///
/// `buf[start..end]` holds unconsumed input; `buf[start..scanned]` is known to
/// contain no newline, so each byte is searched once however it arrives.
#[derive(Debug)]
pub struct LineBuffer {
    buf: Vec<u8>,
    start: usize,
    scanned: usize,
    end: usize,
    max_line: usize,
}

impl LineBuffer {
    /// A buffer that accepts lines of up to `max_line` bytes (newline not
    /// counted). It allocates nothing until the first byte arrives.
    pub fn new(max_line: usize) -> Self {
        LineBuffer {
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            end: 0,
            max_line,
        }
    }

    /// The longest line this buffer accepts.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Bytes received and not yet taken as lines.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// True when every byte received has been taken as a line.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Bytes of storage currently held (for memory accounting).
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// The most storage a buffer that accepts lines of `max_line` bytes
    /// ever holds when it is read into through [`spare`](Self::spare), for
    /// a server that must budget its memory beforehand. Storage starts at
    /// `MIN_READ` and only doubles ([`make_room`](Self::make_room)), and it
    /// grows only while what is buffered leaves less than `MIN_READ` free.
    /// After the lines are taken, what is buffered is one partial line, at
    /// most `max_line` bytes; so storage stops at the first doubling that
    /// holds such a line and a read: 128 KiB at the default 64 KiB limit.
    pub fn most_storage(max_line: usize) -> usize {
        let mut storage = MIN_READ;
        while storage - MIN_READ < max_line {
            match storage.checked_mul(2) {
                Some(doubled) => storage = doubled,
                None => return usize::MAX,
            }
        }
        storage
    }

    /// Appends bytes that arrived some other way (a completion buffer, a test).
    pub fn extend(&mut self, data: &[u8]) {
        self.make_room(data.len());
        self.buf[self.end..self.end + data.len()].copy_from_slice(data);
        self.end += data.len();
    }

    /// The free space at the end of the buffer, at least `MIN_READ` bytes,
    /// for the caller's `read` to land in; report what it wrote with
    /// [`filled`](Self::filled). Call [`next_line`](Self::next_line) until
    /// it yields `None` between reads; the buffer then never holds more
    /// than one partial line and one read. (Inlined, as the read it serves
    /// is: a call per read shows in the instruction counts.)
    #[inline]
    pub fn spare(&mut self) -> &mut [u8] {
        self.make_room(MIN_READ);
        &mut self.buf[self.end..]
    }

    /// Records that the first `n` bytes of [`spare`](Self::spare) now hold data.
    #[inline]
    pub fn filled(&mut self, n: usize) {
        assert!(
            self.end + n <= self.buf.len(),
            "filled past the spare space"
        );
        self.end += n;
    }

    /// The next complete line, without its `\n` (a `\r` before it is data and
    /// is kept, so the reply to `abc\r\n` is `ABC\r\n`).
    ///
    /// `Ok(None)` means no complete line is buffered yet. `Err` means the
    /// line being received is longer than the limit; lines before it have
    /// all been returned first, so the error comes at the same point however
    /// the stream was cut into reads.
    pub fn next_line(&mut self) -> Result<Option<&[u8]>, LineTooLong> {
        match memchr::memchr(b'\n', &self.buf[self.scanned..self.end]) {
            Some(i) => {
                let newline = self.scanned + i;
                let line = self.take_through(newline, newline + 1)?;
                Ok(Some(&line[..line.len() - 1]))
            }
            None => self.no_newline(),
        }
    }

    /// Every complete line buffered, as one slice in which each line keeps
    /// its `\n`: one search from the end instead of one per line, so a
    /// pipelined batch is framed in a single step.
    ///
    /// When the batch is longer than the limit, one of its lines might be
    /// too, so its lines are checked one by one (each byte once: framing
    /// stays linear in the bytes read, whatever the limit), and the batch
    /// ends before the first line that is too long; the call after returns
    /// the error. `Ok(None)` and `Err` mean what they mean for
    /// [`next_line`](Self::next_line).
    #[inline]
    pub fn next_lines(&mut self) -> Result<Option<&[u8]>, LineTooLong> {
        if self.scanned == self.end {
            // Nothing new since the last search (the usual second call).
            return self.no_newline();
        }
        let unscanned = &self.buf[self.scanned..self.end];
        // A read usually ends where a line does: then no search at all.
        let found = match unscanned.last() {
            Some(b'\n') => Some(unscanned.len() - 1),
            _ => memchr::memrchr(b'\n', unscanned),
        };
        let Some(i) = found else {
            return self.no_newline();
        };
        let last = self.scanned + i;
        if last - self.start > self.max_line {
            return self.lines_up_to_a_long_one(last);
        }
        // Searched from the end: what follows `last` holds no newline.
        let end = self.end;
        self.take_through(last, end).map(Some)
    }

    /// The rare part of [`next_lines`](Self::next_lines): the lines up to
    /// `last`, checked one by one.
    #[cold]
    fn lines_up_to_a_long_one(&mut self, last: usize) -> Result<Option<&[u8]>, LineTooLong> {
        // `buf[start..scanned]` holds no newline, so the first line ends at
        // the first newline from `scanned`.
        let mut line_start = self.start;
        for newline in memchr::memchr_iter(b'\n', &self.buf[self.scanned..=last]) {
            let newline = self.scanned + newline;
            if newline - line_start > self.max_line {
                if line_start == self.start {
                    return Err(self.too_long());
                }
                // The good lines now; the long one at the next call.
                let from = self.start;
                self.start = line_start;
                self.scanned = line_start;
                return Ok(Some(&self.buf[from..line_start]));
            }
            line_start = newline + 1;
        }
        let (from, end) = (self.start, self.end);
        self.start = last + 1;
        self.scanned = end;
        if self.start == self.end {
            self.reset();
        }
        Ok(Some(&self.buf[from..=last]))
    }

    /// Takes `buf[start..=newline]`: one line, checked against the limit, or
    /// a batch no longer than the limit, whose lines therefore all fit.
    /// `scanned` is how far the rest is known to be free of newlines.
    #[inline]
    fn take_through(&mut self, newline: usize, scanned: usize) -> Result<&[u8], LineTooLong> {
        let from = self.start;
        if newline - from > self.max_line {
            return Err(self.too_long());
        }
        self.start = newline + 1;
        self.scanned = scanned;
        if self.start == self.end {
            self.reset();
        }
        Ok(&self.buf[from..=newline])
    }

    /// No newline in what is buffered: fine unless it is already too long.
    #[inline]
    fn no_newline(&mut self) -> Result<Option<&[u8]>, LineTooLong> {
        self.scanned = self.end;
        if self.end - self.start > self.max_line {
            return Err(self.too_long());
        }
        Ok(None)
    }

    /// At end of stream: the unterminated last fragment, answered as a line.
    /// Call after [`next_line`](Self::next_line) has returned `None`.
    pub fn take_rest(&mut self) -> Result<Option<&[u8]>, LineTooLong> {
        if self.start == self.end {
            return Ok(None);
        }
        if self.end - self.start > self.max_line {
            return Err(self.too_long());
        }
        let (from, to) = (self.start, self.end);
        self.start = to;
        self.scanned = to;
        Ok(Some(&self.buf[from..to]))
    }

    fn too_long(&self) -> LineTooLong {
        LineTooLong {
            limit: self.max_line,
        }
    }

    /// Everything consumed: rewind. The storage is kept (the line just
    /// returned still points into it); [`make_room`](Self::make_room) gives
    /// back what a long line grew.
    #[inline]
    fn reset(&mut self) {
        self.start = 0;
        self.scanned = 0;
        self.end = 0;
    }

    /// Ensures `want` free bytes after `end`. The usual case, room already
    /// there, is a comparison; the rest is kept out of line.
    #[inline]
    fn make_room(&mut self, want: usize) {
        if self.buf.len() - self.end < want || self.buf.len() > KEEP_CAPACITY {
            self.make_room_slow(want);
        }
    }

    /// Gives back storage a long line grew once the buffer is empty; then
    /// moves the partial line to the front (it is at most `max_line` bytes),
    /// and grows if that is not enough. Storage is zeroed only when it grows,
    /// never per read.
    #[cold]
    fn make_room_slow(&mut self, want: usize) {
        if self.end == 0 && self.buf.len() > KEEP_CAPACITY && want <= KEEP_CAPACITY {
            self.buf = Vec::new();
        }
        if self.buf.len() - self.end >= want {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.scanned -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < want {
            let needed = self.end + want;
            let grown = needed.max(self.buf.len() * 2).max(MIN_READ);
            self.buf.resize(grown, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` one by one, taking every line after each, as a server does.
    fn lines_of(max_line: usize, chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Option<LineTooLong>) {
        let mut buf = LineBuffer::new(max_line);
        let mut lines = Vec::new();
        for chunk in chunks {
            buf.extend(chunk);
            loop {
                match buf.next_line() {
                    Ok(Some(line)) => lines.push(line.to_vec()),
                    Ok(None) => break,
                    Err(e) => return (lines, Some(e)),
                }
            }
        }
        (lines, None)
    }

    fn owned(lines: &[&str]) -> Vec<Vec<u8>> {
        lines.iter().map(|l| l.as_bytes().to_vec()).collect()
    }

    #[test]
    fn a_line_split_across_reads_is_joined() {
        let (lines, err) = lines_of(100, &[b"hel", b"lo wo", b"rld\nnext"]);
        assert_eq!(lines, owned(&["hello world"]));
        assert_eq!(err, None);
    }

    #[test]
    fn many_lines_in_one_read_come_out_in_order() {
        let (lines, err) = lines_of(100, &[b"a\nbb\nccc\n"]);
        assert_eq!(lines, owned(&["a", "bb", "ccc"]));
        assert_eq!(err, None);
    }

    #[test]
    fn carriage_return_is_kept_as_data() {
        let (lines, _) = lines_of(100, &[b"abc\r\nxyz\r", b"\n"]);
        assert_eq!(lines, owned(&["abc\r", "xyz\r"]));
    }

    #[test]
    fn empty_lines_are_lines() {
        let (lines, _) = lines_of(100, &[b"\n\na\n", b"\n"]);
        assert_eq!(lines, owned(&["", "", "a", ""]));
    }

    #[test]
    fn a_line_exactly_at_the_limit_is_accepted() {
        let line = vec![b'x'; 10];
        let mut input = line.clone();
        input.push(b'\n');
        // Byte by byte too, so the "no newline yet" check sees every length.
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        let (lines, err) = lines_of(10, &bytes);
        assert_eq!(lines, vec![line.clone()]);
        assert_eq!(err, None);
        let (lines, err) = lines_of(10, &[&input]);
        assert_eq!(lines, vec![line]);
        assert_eq!(err, None);
    }

    #[test]
    fn a_line_over_the_limit_fails_before_its_newline() {
        // Eleven bytes and no newline yet: already known to be too long.
        let (lines, err) = lines_of(10, &[b"ok\n", b"xxxxxxxxxxx"]);
        assert_eq!(lines, owned(&["ok"]));
        assert_eq!(err, Some(LineTooLong { limit: 10 }));
    }

    #[test]
    fn a_line_over_the_limit_fails_when_it_arrives_whole() {
        let (lines, err) = lines_of(10, &[b"ok\nxxxxxxxxxxx\nlater\n"]);
        assert_eq!(lines, owned(&["ok"]));
        assert_eq!(err, Some(LineTooLong { limit: 10 }));
    }

    /// Like `lines_of`, through `next_lines`, split back into lines.
    fn batches_of(max_line: usize, chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Option<LineTooLong>) {
        let mut buf = LineBuffer::new(max_line);
        let mut lines = Vec::new();
        for chunk in chunks {
            buf.extend(chunk);
            loop {
                match buf.next_lines() {
                    Ok(Some(batch)) => {
                        assert_eq!(batch.last(), Some(&b'\n'));
                        let body = &batch[..batch.len() - 1];
                        lines.extend(body.split(|&b| b == b'\n').map(<[u8]>::to_vec));
                    }
                    Ok(None) => break,
                    Err(e) => return (lines, Some(e)),
                }
            }
        }
        (lines, None)
    }

    #[test]
    fn batches_hold_the_same_lines() {
        let chunks: &[&[u8]] = &[b"a\nbb\nc", b"cc\n\nddd", b"d\ne\n"];
        assert_eq!(batches_of(100, chunks), lines_of(100, chunks));
        assert_eq!(
            batches_of(100, chunks).0,
            owned(&["a", "bb", "ccc", "", "dddd", "e"])
        );
    }

    /// Thousands of short lines and a tail past the limit in one read, the
    /// shape that made framing quadratic: every line, then the error.
    #[test]
    fn many_lines_then_a_long_tail_give_every_line_then_the_error() {
        let mut read = b"ab\n".repeat(5000);
        read.extend(std::iter::repeat_n(b'x', 3000));
        let (lines, err) = batches_of(100, &[&read]);
        assert_eq!(lines, vec![b"ab".to_vec(); 5000]);
        assert_eq!(err, Some(LineTooLong { limit: 100 }));
        let mut read = b"cd\n".repeat(5000);
        read.extend(std::iter::repeat_n(b'y', 3000));
        read.extend_from_slice(b"\nafter\n");
        let (lines, err) = batches_of(100, &[&read]);
        assert_eq!(lines, vec![b"cd".to_vec(); 5000]);
        assert_eq!(err, Some(LineTooLong { limit: 100 }));
    }

    #[test]
    fn batches_longer_than_the_limit_are_checked_line_by_line() {
        // Each line fits in 4; the batch of them does not.
        let chunks: &[&[u8]] = &[b"abcd\nefgh\nijk\nlmnop\nq\n"];
        let (lines, err) = batches_of(4, chunks);
        assert_eq!(lines, owned(&["abcd", "efgh", "ijk"]));
        assert_eq!(err, Some(LineTooLong { limit: 4 }));
        assert_eq!(batches_of(4, chunks), lines_of(4, chunks));
    }

    #[test]
    fn batches_see_an_over_long_partial_line() {
        let chunks: &[&[u8]] = &[b"ok\nxxxxx", b"xxxxxx"];
        assert_eq!(
            batches_of(10, chunks),
            (owned(&["ok"]), Some(LineTooLong { limit: 10 }))
        );
    }

    #[test]
    fn the_rest_at_end_of_stream_is_a_line() {
        let mut buf = LineBuffer::new(10);
        buf.extend(b"a\nb");
        assert_eq!(buf.next_line(), Ok(Some(&b"a"[..])));
        assert_eq!(buf.next_line(), Ok(None));
        assert_eq!(buf.take_rest(), Ok(Some(&b"b"[..])));
        assert_eq!(buf.take_rest(), Ok(None));
        assert!(buf.is_empty());
    }

    #[test]
    fn reads_go_straight_into_the_buffer() {
        use std::io::Read;
        let mut src: &[u8] = b"one\ntwo\nthr";
        let mut buf = LineBuffer::new(100);
        let n = src.read(buf.spare()).unwrap();
        buf.filled(n);
        assert_eq!(n, 11);
        assert_eq!(buf.next_line(), Ok(Some(&b"one"[..])));
        assert_eq!(buf.next_line(), Ok(Some(&b"two"[..])));
        assert_eq!(buf.next_line(), Ok(None));
        assert_eq!(buf.buffered(), 3);
        assert_eq!(src.read(buf.spare()).unwrap(), 0);
    }

    #[test]
    fn storage_stays_bounded_by_one_line_and_one_read() {
        let mut buf = LineBuffer::new(1000);
        let line = [b'y'; 999];
        for _ in 0..10_000 {
            buf.extend(&line);
            buf.extend(b"\n");
            while let Ok(Some(_)) = buf.next_line() {}
        }
        assert!(buf.capacity() <= 1000 + 2 * MIN_READ, "{}", buf.capacity());
    }

    /// Reads sized to leave the partial line at every length up to the
    /// limit (the worst case for growth), then the newline: the storage
    /// allocated never passes `most_storage`, and reaches it.
    #[test]
    fn most_storage_bounds_what_a_read_loop_allocates() {
        for max_line in [1, 100, 8191, 8192, 8193, 60_000, 64 * 1024, 100_000] {
            let mut most = 0;
            for step in [1, 997, 8192, 100_000] {
                let mut buf = LineBuffer::new(max_line);
                let mut sent = 0;
                while sent < max_line {
                    let spare = buf.spare();
                    let n = spare.len().min(step).min(max_line - sent);
                    spare[..n].fill(b'x');
                    buf.filled(n);
                    sent += n;
                    assert_eq!(buf.next_lines(), Ok(None));
                    most = most.max(buf.buf.capacity());
                }
                let spare = buf.spare();
                spare[0] = b'\n';
                buf.filled(1);
                most = most.max(buf.buf.capacity());
                assert_eq!(
                    buf.next_lines().map(|l| l.map(<[u8]>::len)),
                    Ok(Some(max_line + 1))
                );
            }
            assert_eq!(
                most,
                LineBuffer::most_storage(max_line),
                "max_line {max_line}"
            );
        }
        assert_eq!(LineBuffer::most_storage(64 * 1024), 128 * 1024);
        assert_eq!(LineBuffer::most_storage(usize::MAX), usize::MAX);
    }

    #[test]
    fn a_long_line_gives_its_storage_back() {
        let mut buf = LineBuffer::new(1 << 20);
        buf.extend(&vec![b'z'; 500_000]);
        buf.extend(b"\n");
        assert_eq!(buf.next_line().unwrap().map(<[u8]>::len), Some(500_000));
        buf.extend(b"short\n");
        assert_eq!(buf.next_line(), Ok(Some(&b"short"[..])));
        assert!(buf.capacity() <= KEEP_CAPACITY, "{}", buf.capacity());
    }
}
