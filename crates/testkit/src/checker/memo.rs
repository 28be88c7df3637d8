//! The memo of the linearizability search (Lowe): which (set of linearized
//! operations, register state) configurations were already explored. Holds
//! the bitset of operations and a fast non-cryptographic hasher for it.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

/// A fixed-width set of operation indices.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Bitset(Box<[u64]>);

impl Bitset {
    pub(crate) fn new(len: usize) -> Self {
        Bitset(vec![0; len.div_ceil(64)].into_boxed_slice())
    }

    pub(crate) fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    pub(crate) fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }

    pub(crate) fn contains(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
}

/// FxHash (rustc's): one multiply per word; plenty for bitsets.
#[derive(Default)]
pub(crate) struct FxHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Explored configurations: linearized set + the register state it left.
pub(crate) type Memo<S> = HashSet<(Bitset, S), BuildHasherDefault<FxHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitset_sets_and_clears_across_words() {
        let mut b = Bitset::new(130);
        for i in [0, 63, 64, 129] {
            b.set(i);
            assert!(b.contains(i));
        }
        b.clear(64);
        assert!(!b.contains(64) && b.contains(63) && b.contains(129));
    }

    #[test]
    fn memo_tells_configurations_apart() {
        let mut memo: Memo<Option<u32>> = Memo::default();
        let mut b = Bitset::new(10);
        b.set(3);
        assert!(memo.insert((b.clone(), Some(1))));
        assert!(!memo.insert((b.clone(), Some(1))));
        assert!(memo.insert((b.clone(), None)));
        b.set(4);
        assert!(memo.insert((b, Some(1))));
    }
}
