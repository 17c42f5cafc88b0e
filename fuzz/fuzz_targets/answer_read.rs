//! `answer_read`, which frames reads landing in an event loop's own buffer,
//! against arbitrary input cut at arbitrary points: the replies, the limit
//! error and the unterminated tail are what the whole input split at once
//! gives; the kept partial line never passes the limit, holds no memory
//! when empty, and nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::{answer_partial_at_end, answer_read};

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let max = usize::from(data[0]);
    let step = usize::from(data[1]).max(1);
    let suffix: &[u8] = if data[2] & 1 == 1 { b"_SB" } else { b"" };
    let stream = &data[3..];

    // The whole stream at once.
    let mut want = Vec::new();
    let mut want_error = false;
    let mut rest = stream;
    while let Some(i) = rest.iter().position(|&b| b == b'\n') {
        if i > max {
            want_error = true;
            break;
        }
        want.extend(rest[..i].to_ascii_uppercase());
        want.extend_from_slice(suffix);
        want.push(b'\n');
        rest = &rest[i + 1..];
    }
    if !want_error && rest.len() > max {
        want_error = true;
    }
    if !want_error && !rest.is_empty() {
        want.extend(rest.to_ascii_uppercase());
        want.extend_from_slice(suffix);
        want.push(b'\n');
    }

    // The same stream in reads of `step` bytes.
    let mut partial = Vec::new();
    let mut got = Vec::new();
    let mut error = false;
    for chunk in stream.chunks(step) {
        if answer_read(&mut partial, chunk, max, suffix, &mut got).is_err() {
            assert!(got.ends_with(b"ERR line too long\n"));
            got.truncate(got.len() - b"ERR line too long\n".len());
            error = true;
            break;
        }
        assert!(partial.len() <= max);
        assert!(!partial.is_empty() || partial.capacity() == 0);
    }
    if !error {
        answer_partial_at_end(&mut partial, suffix, &mut got);
    }
    assert_eq!(error, want_error);
    assert_eq!(got, want);
});
