//! Properties of the line buffer, over arbitrary streams cut arbitrarily.

use proptest::prelude::*;
use shared::{LineBuffer, LineTooLong};

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
