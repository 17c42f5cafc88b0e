//! Properties of line framing, over arbitrary streams cut arbitrarily: the
//! line buffer, and `answer_read`, which frames reads that land in a buffer
//! the event loop owns.

use proptest::prelude::*;
use shared::{LineBuffer, LineTooLong, answer_partial_at_end, answer_read};

/// What splitting the whole stream at once gives: the complete lines up to
/// the first one longer than `max`, and whether the stream fails there (or
/// in an unterminated tail longer than `max`).
fn reference(stream: &[u8], max: usize) -> (Vec<Vec<u8>>, bool) {
    let mut lines = Vec::new();
    let mut rest = stream;
    while let Some(i) = rest.iter().position(|&b| b == b'\n') {
        if i > max {
            return (lines, true);
        }
        lines.push(rest[..i].to_vec());
        rest = &rest[i + 1..];
    }
    (lines, rest.len() > max)
}

/// Feeds the chunks one at a time, taking lines after each, one by one or
/// (`batched`) all at once.
fn chunked(chunks: &[Vec<u8>], max: usize, batched: bool) -> (Vec<Vec<u8>>, bool) {
    let mut buf = LineBuffer::new(max);
    let mut lines = Vec::new();
    for chunk in chunks {
        buf.extend(chunk);
        loop {
            let next: Result<Option<Vec<Vec<u8>>>, LineTooLong> = if batched {
                buf.next_lines().map(|b| {
                    b.map(|b| {
                        b[..b.len() - 1]
                            .split(|&x| x == b'\n')
                            .map(<[u8]>::to_vec)
                            .collect()
                    })
                })
            } else {
                buf.next_line().map(|l| l.map(|l| vec![l.to_vec()]))
            };
            match next {
                Ok(Some(more)) => lines.extend(more),
                Ok(None) => break,
                Err(_) => return (lines, true),
            }
        }
    }
    (lines, false)
}

/// A stream rich in newlines, cut into pieces at arbitrary points.
fn stream_and_cuts() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    let byte = prop_oneof![3 => any::<u8>(), 1 => Just(b'\n'), 1 => Just(b'a')];
    (
        proptest::collection::vec(byte, 0..600),
        proptest::collection::vec(0usize..600, 0..12),
    )
}

fn cut(stream: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|&c| c.min(stream.len())).collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut from = 0;
    for p in points.into_iter().chain([stream.len()]) {
        chunks.push(stream[from..p].to_vec());
        from = p;
    }
    chunks
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn any_cutting_gives_the_same_lines_and_the_same_error(
        (stream, cuts) in stream_and_cuts(),
        max in 0usize..80,
    ) {
        let (want_lines, want_error) = reference(&stream, max);
        let chunks = cut(&stream, &cuts);
        for batched in [false, true] {
            let (lines, error) = chunked(&chunks, max, batched);
            prop_assert_eq!(&lines, &want_lines);
            // A tail longer than the limit is an error as soon as it is
            // buffered; the reference sees the same at end of stream.
            prop_assert_eq!(error, want_error);
        }
    }
}

/// The replies `answer_read` gives for the chunks, with the error flag and
/// (when there is no error) the unterminated tail answered at the end;
/// checks on the way that a connection holds no input buffer whenever it
/// has no unfinished line.
fn answered(chunks: &[Vec<u8>], max: usize, suffix: &[u8]) -> (Vec<u8>, bool) {
    let mut partial = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        if answer_read(&mut partial, chunk, max, suffix, &mut out).is_err() {
            assert!(out.ends_with(b"ERR line too long\n"));
            out.truncate(out.len() - b"ERR line too long\n".len());
            return (out, true);
        }
        assert!(
            partial.len() <= max,
            "kept {} bytes of a line",
            partial.len()
        );
        if partial.is_empty() {
            assert_eq!(partial.capacity(), 0, "an empty partial line holds memory");
        }
    }
    answer_partial_at_end(&mut partial, suffix, &mut out);
    (out, false)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn answer_read_gives_the_same_replies_however_the_reads_are_cut(
        (stream, cuts) in stream_and_cuts(),
        max in 0usize..80,
        with_suffix in any::<bool>(),
    ) {
        let suffix: &[u8] = if with_suffix { b"_SB" } else { b"" };
        let (want_lines, want_error) = reference(&stream, max);
        let mut want = Vec::new();
        for line in &want_lines {
            want.extend(line.to_ascii_uppercase());
            want.extend_from_slice(suffix);
            want.push(b'\n');
        }
        if !want_error {
            // At end of stream the tail, if any, is answered as a line.
            let tail = &stream[stream.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)..];
            if !tail.is_empty() {
                want.extend(tail.to_ascii_uppercase());
                want.extend_from_slice(suffix);
                want.push(b'\n');
            }
        }
        let (got, error) = answered(&cut(&stream, &cuts), max, suffix);
        prop_assert_eq!(error, want_error);
        prop_assert_eq!(got, want);
    }
}
