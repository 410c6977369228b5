//! Seeded randomness: every generated value is a pure function of (seed, index, salt),
//! so any record can be rebuilt alone, in any order, on any thread.

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The splitmix64 finaliser: a strong 64-bit mix, cheap enough to call per field.
fn finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One well-mixed 64-bit value for (seed, index, salt).
pub(crate) fn hash(seed: u64, index: u64, salt: u64) -> u64 {
    let s = finalize(seed.wrapping_add(GOLDEN).wrapping_add(salt.wrapping_mul(0xD6E8_FEB8_6659_FD93)));
    finalize(s ^ index.wrapping_mul(GOLDEN).wrapping_add(GOLDEN))
}

/// A uniform float in [0, 1) from 64 random bits.
pub(crate) fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// A sequential splitmix64 generator, for the many fields of one record.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64, index: u64, salt: u64) -> Rng {
        Rng(hash(seed, index, salt))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        finalize(self.0)
    }

    /// Uniform in 0..n (n > 0), by multiply-shift: no modulo bias worth the name.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in lo..=hi.
    pub(crate) fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    pub(crate) fn unit(&mut self) -> f64 {
        unit(self.next_u64())
    }

    /// True with probability p.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_depends_on_every_input() {
        let h = hash(1, 2, 3);
        assert_eq!(h, hash(1, 2, 3));
        assert_ne!(h, hash(0, 2, 3));
        assert_ne!(h, hash(1, 0, 3));
        assert_ne!(h, hash(1, 2, 0));
    }

    #[test]
    fn below_is_roughly_uniform() {
        let mut rng = Rng::new(7, 0, 0);
        let mut counts = [0u32; 4];
        for _ in 0..40_000 {
            counts[rng.below(4) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }
}
