//! The random picker of the load loops.

/// xorshift64*: enough randomness to pick accounts, no dependency, no lock.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The stream of caller `c` in the window seeded `seed`: every caller of every window
    /// picks differently, and a rerun picks the same.
    pub fn for_caller(seed: u64, c: usize) -> Rng {
        Rng::new(seed * 1_000_003 + c as u64 + 1)
    }

    pub fn below(&mut self, n: usize) -> usize {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
    }
}
