//! The line buffer against arbitrary input cut at arbitrary points: the
//! lines and the limit error are the same as when the whole input is split
//! at once, through both `next_line` and `next_lines`, and nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::LineBuffer;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let max = usize::from(data[0]);
    let step = usize::from(data[1]).max(1);
    let stream = &data[2..];

    // The whole stream at once.
    let mut want = Vec::new();
    let want_error;
    let mut rest = stream;
    loop {
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) if i > max => {
                want_error = true;
                break;
            }
            Some(i) => {
                want.push(rest[..i].to_vec());
                rest = &rest[i + 1..];
            }
            None => {
                want_error = rest.len() > max;
                break;
            }
        }
    }

    for batched in [false, true] {
        let mut buf = LineBuffer::new(max);
        let mut got = Vec::new();
        let mut error = false;
        'feed: for chunk in stream.chunks(step) {
            buf.extend(chunk);
            loop {
                let next = if batched {
                    buf.next_lines()
                } else {
                    buf.next_line()
                };
                match next {
                    Ok(Some(lines)) if batched => got.extend(
                        lines[..lines.len() - 1]
                            .split(|&b| b == b'\n')
                            .map(<[u8]>::to_vec),
                    ),
                    Ok(Some(line)) => got.push(line.to_vec()),
                    Ok(None) => break,
                    Err(_) => {
                        error = true;
                        break 'feed;
                    }
                }
            }
        }
        assert_eq!(got, want);
        assert_eq!(error, want_error);
    }
});
