//! Helpers shared by the unit tests of several modules (compiled only for `cfg(test)`).

/// xorshift64 (shifts 13, 7, 17): a deterministic, dependency-free pseudo-random sequence for the
/// fuzz smoke tests. The seed must be non-zero.
pub(crate) struct XorShift64(u64);

impl XorShift64 {
    /// The seed the icon fuzz smoke tests use.
    pub(crate) const DEFAULT_SEED: u64 = 0x9E37_79B9_7F4A_7C15;

    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Deterministic xorshift mutations of a valid input (a poor man's fuzzer): `count` copies of
/// `seed_input`, each with 1 to 8 random byte overwrites, removals, insertions or truncations.
pub(crate) fn mutations(seed_input: &[u8], count: usize) -> Vec<Vec<u8>> {
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
}
