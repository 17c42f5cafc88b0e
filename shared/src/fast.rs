//! The echo reply, fast: upper-casing and the newline search, 16 bytes at
//! a time. Not the lesson. The protocol is in `echo.rs`; [`reference`]
//! below is the plain definition these functions must match, and the
//! property test at the end holds them to it.
//!
//! Why it exists: `make_ascii_uppercase` goes a byte at a time, and the
//! compiler's own vector loop starts only at 64 bytes, past a typical line.
//! That was most of a request's user-space instructions, and every server
//! is held to a count of those (BENCHMARKS.md, "System calls and
//! instructions per request"). With SSE2, which every x86-64 CPU has, a
//! 62-byte request's reply costs a handful of 16-byte steps. Elsewhere the
//! plain loops serve.

use std::mem::MaybeUninit;

/// The definition: what every function of this module computes, written
/// the plain way. The tests hold the fast versions to it.
pub mod reference {
    /// Appends `src` with ASCII `a-z` upper-cased, other bytes as they are
    /// (Python's `bytes.upper()`).
    pub fn upper_into(src: &[u8], out: &mut Vec<u8>) {
        out.extend(src.iter().map(u8::to_ascii_uppercase));
    }

    /// Appends the reply to every line of `lines` (whole lines, each ending
    /// in `\n`): the line upper-cased, then `suffix`, then `\n`.
    pub fn replies_into(lines: &[u8], suffix: &[u8], out: &mut Vec<u8>) {
        for line in lines.split_inclusive(|&b| b == b'\n') {
            upper_into(&line[..line.len() - 1], out);
            out.extend_from_slice(suffix);
            out.push(b'\n');
        }
    }
}

/// Appends `src` with ASCII `a-z` upper-cased: [`reference::upper_into`].
///
/// Lines go through [`block16`] 16 bytes at a time, each stored straight
/// into `out`'s spare capacity: a line that is not a multiple of 16 ends
/// with one more block, its last 16 bytes, which overlaps the one before it
/// and rewrites those bytes with the same values. So every store is of 16
/// bytes, with no `memcpy` call for the remainder.
#[inline]
pub fn upper_into(src: &[u8], out: &mut Vec<u8>) {
    let len = src.len();
    if len < 16 {
        reference::upper_into(src, out);
        return;
    }
    out.reserve(len);
    let start = out.len();
    let dst = &mut out.spare_capacity_mut()[..len];
    let mut store = |at: usize| {
        let block = block16::upper(src[at..at + 16].try_into().expect("16 bytes"));
        let slot: &mut [MaybeUninit<u8>; 16] =
            (&mut dst[at..at + 16]).try_into().expect("16 bytes");
        *slot = block.map(MaybeUninit::new);
    };
    let mut at = 0;
    while at + 16 <= len {
        store(at);
        at += 16;
    }
    if at < len {
        store(len - 16);
    }
    // SAFETY: the caller's guarantee that set_len needs is that the `len`
    // bytes after `start` are initialised: they were all written above, by
    // the blocks at 0, 16, ... and, when `len` is not a multiple of 16, the
    // block at `len - 16`, which covers the rest.
    unsafe { out.set_len(start + len) }
}

/// Appends the replies to a batch of complete lines when each needs a
/// `suffix` (shorter than 16 bytes) before its `\n`:
/// [`reference::replies_into`].
///
/// Every line is copied as whole 16-byte blocks, each upper-cased and
/// searched for its newline in one step ([`block16`]), 64 bytes a step so
/// that a typical line takes one. A block may run past the end of its
/// line; the output is then cut back to where the line ends before the next
/// store. So every copy is a fixed-size store rather than a `memcpy` call
/// per line and per suffix, and nothing is zeroed first.
pub fn replies_into(lines: &[u8], suffix: &[u8], out: &mut Vec<u8>) {
    assert!(suffix.len() < 16, "a suffix shorter than 16 bytes");
    let mut ending = [b'\n'; 16];
    ending[..suffix.len()].copy_from_slice(suffix);
    // The most the replies can take (every byte a newline), plus the
    // overhang of the last stores: no reallocation inside the loop.
    out.reserve(lines.len() * (suffix.len() + 1) + STEP + 16);
    let mut read = 0;
    let mut written = out.len();
    while read < lines.len() {
        let block: [u8; STEP] = block_at(lines, read);
        let mut upper = [0u8; STEP];
        let mut newlines = 0u64;
        for i in 0..STEP / 16 {
            let from = i * 16;
            let (part, part_newlines) =
                block16::upper_and_newlines(block[from..from + 16].try_into().expect("16"));
            upper[from..from + 16].copy_from_slice(&part);
            newlines |= u64::from(part_newlines) << from;
        }
        out.truncate(written);
        out.extend_from_slice(&upper);
        if newlines == 0 {
            read += STEP;
            written += STEP;
        } else {
            let at = newlines.trailing_zeros() as usize;
            read += at + 1;
            written += at;
            out.truncate(written);
            out.extend_from_slice(&ending);
            written += suffix.len() + 1;
        }
    }
    out.truncate(written);
}

/// Bytes taken per step by [`replies_into`].
const STEP: usize = 64;

/// The `N` bytes of `bytes` from `at`, padded with zeros past its end.
#[inline]
fn block_at<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    match bytes.get(at..at + N) {
        Some(block) => block.try_into().expect("N bytes"),
        None => {
            let mut block = [0u8; N];
            let rest = bytes.get(at..).unwrap_or_default();
            block[..rest.len()].copy_from_slice(rest);
            block
        }
    }
}

/// The two operations on 16-byte blocks: SSE2 on x86-64, where the
/// compiler vectorises the plain loops only sometimes; the plain loops
/// elsewhere.
mod block16 {
    /// The block with ASCII `a-z` upper-cased.
    #[inline]
    pub fn upper(block: [u8; 16]) -> [u8; 16] {
        upper_and_newlines(block).0
    }

    /// The block upper-cased, and a mask with bit `i` set where byte `i` is `\n`.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    pub fn upper_and_newlines(block: [u8; 16]) -> ([u8; 16], u32) {
        // SAFETY: `sse2` needs the CPU to have SSE2, and every x86-64 CPU
        // has it: it is part of the architecture's baseline.
        unsafe { sse2(block) }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "sse2")]
    fn sse2(block: [u8; 16]) -> ([u8; 16], u32) {
        use std::arch::x86_64::*;
        // SAFETY: transmute needs the two types to be the same size and
        // every bit pattern of the source to be a valid value of the
        // target: both are 16 plain bytes.
        let v: __m128i = unsafe { std::mem::transmute::<[u8; 16], __m128i>(block) };
        let newlines = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'\n' as i8))) as u32;
        // `b - 'a'` below 26, as an unsigned test: shift the range to the
        // bottom of the signed bytes and compare signed.
        let shifted = _mm_sub_epi8(v, _mm_set1_epi8((b'a' as i8).wrapping_add(i8::MIN)));
        let lower = _mm_cmplt_epi8(shifted, _mm_set1_epi8(i8::MIN + 26));
        let upper = _mm_sub_epi8(v, _mm_and_si128(lower, _mm_set1_epi8(0x20)));
        // SAFETY: as above.
        let upper = unsafe { std::mem::transmute::<__m128i, [u8; 16]>(upper) };
        (upper, newlines)
    }

    #[cfg(not(target_arch = "x86_64"))]
    #[inline]
    pub fn upper_and_newlines(mut block: [u8; 16]) -> ([u8; 16], u32) {
        let mut newlines = 0;
        for (i, b) in block.iter_mut().enumerate() {
            newlines |= u32::from(*b == b'\n') << i;
            b.make_ascii_uppercase();
        }
        (block, newlines)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Bytes that matter to the reply: letters either side of the case
    /// boundary, newlines, carriage returns, high bytes, and any byte.
    fn byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            prop::sample::select(b"aAzZ@[`{\n\r\xe9\x00\xff09 ".to_vec()),
            any::<u8>(),
        ]
    }

    /// Whole lines: arbitrary bytes, then a final newline.
    fn lines(len: usize) -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(byte(), len).prop_map(|mut v| {
            v.push(b'\n');
            v
        })
    }

    fn agree(lines: &[u8], kept: &[u8]) {
        let mut fast = kept.to_vec();
        upper_into(lines, &mut fast);
        let mut plain = kept.to_vec();
        reference::upper_into(lines, &mut plain);
        assert_eq!(fast, plain, "upper_into");
        for suffix in [&b""[..], b"_SB", b"fifteen bytes!!"] {
            let mut fast = kept.to_vec();
            replies_into(lines, suffix, &mut fast);
            let mut plain = kept.to_vec();
            reference::replies_into(lines, suffix, &mut plain);
            assert_eq!(fast, plain, "replies_into, suffix {suffix:?}");
        }
    }

    proptest! {
        /// Lengths from 0 to 200, where the block and step boundaries are,
        /// with and without output already in the buffer.
        #[test]
        fn agrees_with_the_definition_at_short_lengths(
            input in (0usize..=200).prop_flat_map(lines),
            kept in prop::collection::vec(any::<u8>(), 0..3),
        ) {
            agree(&input, &kept);
        }

        /// Random lengths beyond, up to a few thousand bytes.
        #[test]
        fn agrees_with_the_definition_at_random_lengths(
            input in (201usize..5000).prop_flat_map(lines),
        ) {
            agree(&input, b"");
        }
    }

    /// Each length from 0 to 200 once, deterministically, on top of the
    /// random cases above.
    #[test]
    fn every_length_to_200() {
        for len in 0..=200usize {
            let line: Vec<u8> = (0..len)
                .map(|i| b"aZ9\xe9\r{q\n`"[(i * 7 + len) % 9])
                .collect();
            let mut input = line.clone();
            input.push(b'\n');
            agree(&input, b"kept");
        }
    }

    #[test]
    fn blocks_of_every_byte_value_match_the_standard_library() {
        for start in 0..=255u8 {
            let block: [u8; 16] = std::array::from_fn(|i| start.wrapping_add(i as u8));
            let (upper, newlines) = block16::upper_and_newlines(block);
            assert_eq!(upper, block.map(|b| b.to_ascii_uppercase()));
            let expected: u32 = (0..16).filter(|&i| block[i] == b'\n').map(|i| 1 << i).sum();
            assert_eq!(newlines, expected);
        }
    }
}
