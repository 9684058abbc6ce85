//! The one deterministic generator of the cheap "fuzz smoke" unit tests of every crate (the
//! coverage-guided fuzzing lives in `fuzz/`). Not API: public only so that the other crates'
//! tests can share it instead of keeping copies.

/// xorshift64 (shifts 13, 7, 17): a deterministic, dependency-free pseudo-random sequence. The
/// seed must be non-zero.
#[derive(Debug, Clone)]
pub struct XorShift64(u64);

impl XorShift64 {
    /// The seed most smoke tests use.
    pub const DEFAULT_SEED: u64 = 0x9E37_79B9_7F4A_7C15;

    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `0..bound` (`bound` > 0; slightly biased, which these tests do not mind).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    /// `len` bytes drawn from `alphabet` (non-empty).
    pub fn bytes_from(&mut self, alphabet: &[u8], len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| alphabet[self.below(alphabet.len() as u64) as usize])
            .collect()
    }
}

/// Deterministic xorshift mutations of a valid input (a poor man's fuzzer): `count` copies of
/// `seed_input`, each with 1 to 8 random byte overwrites, removals, insertions or truncations.
pub fn mutations(seed_input: &[u8], count: usize) -> Vec<Vec<u8>> {
    let mut rng = XorShift64::new(XorShift64::DEFAULT_SEED);
    let mut next = move || rng.next_u64();
    (0..count)
        .map(|_| {
            let mut data = seed_input.to_vec();
            for _ in 0..(next() % 8 + 1) {
                let pos = (next() as usize) % data.len().max(1);
                match next() % 4 {
                    0 if !data.is_empty() => data[pos] = next() as u8,
                    1 if !data.is_empty() => {
                        data.remove(pos);
                    }
                    2 => data.insert(pos.min(data.len()), next() as u8),
                    _ => data.truncate(pos),
                }
            }
            data
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xorshift_matches_the_reference_sequence() {
        // Marsaglia's xorshift64 (13, 7, 17) from this seed, computed independently.
        let mut rng = XorShift64::new(1);
        assert_eq!(rng.next_u64(), 0x4082_2041);
        assert_eq!(rng.next_u64(), 0x1000_4106_0c01_1441);
    }

    #[test]
    fn mutations_are_deterministic_and_change_the_input() {
        let input = b"0123456789abcdef";
        let first = mutations(input, 50);
        assert_eq!(first, mutations(input, 50));
        assert_eq!(first.len(), 50);
        assert!(first.iter().filter(|m| m.as_slice() != input).count() > 40);
        assert!(mutations(b"", 20).iter().all(|m| m.len() <= 8));
    }

    #[test]
    fn bytes_come_from_the_alphabet() {
        let mut rng = XorShift64::new(XorShift64::DEFAULT_SEED);
        let bytes = rng.bytes_from(b"ab", 100);
        assert_eq!(bytes.len(), 100);
        assert!(bytes.iter().all(|b| *b == b'a' || *b == b'b'));
        assert!(bytes.contains(&b'a') && bytes.contains(&b'b'));
    }
}
