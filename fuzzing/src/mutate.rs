//! Byte-level mutations of an input (the classic set: bit flips, interesting values, inserted,
//! deleted, repeated and spliced ranges, dictionary words) and the minimization of a failing
//! input.

use std::time::Instant;

use crate::Rng;

/// Bytes that tend to matter to text and binary parsers.
const INTERESTING_BYTES: &[u8] = &[
    0x00, 0x01, 0x7f, 0x80, 0xff, 0xc0, 0xc1, 0xd4, 0xdc, 0xde, 0xef, b'"', b'\\', b'{', b'}',
    b'[', b']', b',', b':', b'.', b'-', b'/', b'%', b'~', b'*', b'=', b'\n', b' ',
];

/// Big-endian values that tend to matter as lengths and counts.
const INTERESTING_WORDS: &[u32] = &[
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
];

/// Applies one to four random mutations to `input`; `dictionary` and `pool` supply words and
/// other inputs to splice in. The result is at most `max_len` bytes.
pub fn mutate(
    rng: &mut Rng,
    input: &[u8],
    dictionary: &[Vec<u8>],
    pool: &[Vec<u8>],
    max_len: usize,
) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.between(1, 4) {
        mutate_once(rng, &mut out, dictionary, pool);
    }
    out.truncate(max_len);
    out
}

fn mutate_once(rng: &mut Rng, out: &mut Vec<u8>, dictionary: &[Vec<u8>], pool: &[Vec<u8>]) {
    let at = rng.below(out.len() + 1);
    match rng.below(11) {
        0 if !out.is_empty() => {
            let i = rng.below(out.len());
            out[i] ^= 1 << rng.below(8);
        }
        1 if !out.is_empty() => {
            let i = rng.below(out.len());
            out[i] = *rng.pick(INTERESTING_BYTES);
        }
        2 => {
            let len = rng.between(1, 8);
            let bytes = rng.bytes(len);
            out.splice(at..at, bytes);
        }
        3 if !out.is_empty() => {
            let start = rng.below(out.len());
            let end = (start + rng.short_len(out.len())).min(out.len());
            out.drain(start..end);
        }
        4 if !out.is_empty() => {
            // Repeat a range: builds nesting and long runs out of what is there.
            let start = rng.below(out.len());
            let end = (start + rng.between(1, 16)).min(out.len());
            let chunk = out[start..end].to_vec();
            for _ in 0..rng.between(1, 8) {
                out.splice(at..at, chunk.iter().copied());
            }
        }
        5 | 6 if !dictionary.is_empty() => {
            let word = rng.pick(dictionary).clone();
            if rng.one_in(2) || out.is_empty() {
                out.splice(at..at, word);
            } else {
                let end = (at + word.len()).min(out.len());
                out.splice(at..end, word);
            }
        }
        7 if !pool.is_empty() => {
            // Splice: this input's head, another input's tail.
            let other = rng.pick(pool);
            let from = rng.below(other.len() + 1);
            out.truncate(at);
            out.extend_from_slice(&other[from..]);
        }
        8 if out.len() >= 4 => {
            let word = rng.pick(INTERESTING_WORDS).to_be_bytes();
            let width = *rng.pick(&[1usize, 2, 4]);
            let i = rng.below(out.len() - width + 1);
            out[i..i + width].copy_from_slice(&word[4 - width..]);
        }
        9 => out.truncate(at),
        _ => {
            if let Some(i) = (!out.is_empty()).then(|| rng.below(out.len())) {
                out[i] = rng.byte();
            } else {
                out.push(rng.byte());
            }
        }
    }
}

/// Shrinks `input` while `fails` still holds, by removing ever smaller chunks, until `deadline`.
pub fn minimize(input: &[u8], fails: &mut dyn FnMut(&[u8]) -> bool, deadline: Instant) -> Vec<u8> {
    let mut best = input.to_vec();
    let mut chunk = best.len().div_ceil(2).max(1);
    loop {
        let mut start = 0;
        let mut removed_any = false;
        while start < best.len() {
            if Instant::now() > deadline {
                return best;
            }
            let end = (start + chunk).min(best.len());
            let mut candidate = best[..start].to_vec();
            candidate.extend_from_slice(&best[end..]);
            if fails(&candidate) {
                best = candidate;
                removed_any = true;
            } else {
                start += chunk;
            }
        }
        if chunk == 1 && !removed_any {
            return best;
        }
        if !removed_any {
            chunk = (chunk / 2).max(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn mutations_stay_within_the_limit() {
        let mut rng = Rng::new(3);
        let dictionary = vec![b"null".to_vec()];
        let pool = vec![b"{\"a\":1}".to_vec()];
        let mut input = b"[1,2,3]".to_vec();
        for _ in 0..10_000 {
            input = mutate(&mut rng, &input, &dictionary, &pool, 64);
            assert!(input.len() <= 64);
        }
    }

    #[test]
    fn minimize_keeps_only_what_fails() {
        let input = b"aaaaXbbbbYcccc".to_vec();
        let mut fails = |bytes: &[u8]| bytes.contains(&b'X') && bytes.contains(&b'Y');
        let small = minimize(&input, &mut fails, Instant::now() + Duration::from_secs(5));
        assert_eq!(small, b"XY");
    }
}
