//! What each virtual client asks for next: the operation (by read ratio), the
//! key (uniform over `bench/<n>`, zero padded), and the value written.
//!
//! The generator is a per-connection SplitMix64: no locking, no `rand`
//! dependency, and a fixed seed per connection makes runs comparable.

use bytes::Bytes;

use crate::args::OpMix;

/// One request's operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Put,
    Get,
}

pub use quorumkv_testkit::rng::Rng;

/// Key names `bench/<n>` for `n` in `0..keys`, padded to the width of `keys - 1`
/// so they sort in numeric order.
#[derive(Debug, Clone, Copy)]
pub struct KeySpace {
    keys: u64,
    width: usize,
}

impl KeySpace {
    pub const PREFIX: &'static str = "bench/";

    pub fn new(keys: u64) -> KeySpace {
        let width = keys.saturating_sub(1).max(1).to_string().len();
        KeySpace { keys, width }
    }

    /// How many keys there are.
    pub fn count(&self) -> u64 {
        self.keys
    }

    pub fn name(&self, n: u64) -> String {
        format!("{}{n:0width$}", Self::PREFIX, width = self.width)
    }
}

/// The value every put writes: `size` printable bytes (a repeating alphabet,
/// so a `curl` of a bench key is readable).
pub fn value(size: usize) -> Bytes {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    ALPHABET.iter().copied().cycle().take(size).collect()
}

/// The workload of one connection.
#[derive(Debug, Clone)]
pub struct Workload {
    rng: Rng,
    read_ratio: f64,
    keys: KeySpace,
}

impl Workload {
    pub fn new(op: OpMix, keys: KeySpace, seed: u64) -> Workload {
        Workload {
            rng: Rng::new(seed),
            read_ratio: op.read_ratio(),
            keys,
        }
    }

    /// The next operation and key.
    pub fn next(&mut self) -> (Op, String) {
        let op = if self.read_ratio >= 1.0 || self.rng.unit() < self.read_ratio {
            Op::Get
        } else {
            Op::Put
        };
        let n = self.rng.below(self.keys.count());
        (op, self.keys.name(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_are_zero_padded() {
        let k = KeySpace::new(1000);
        assert_eq!(k.name(0), "bench/000");
        assert_eq!(k.name(7), "bench/007");
        assert_eq!(k.name(999), "bench/999");
        assert_eq!(KeySpace::new(1001).name(5), "bench/0005");
        assert_eq!(KeySpace::new(1).name(0), "bench/0");
        assert_eq!(KeySpace::new(10).name(9), "bench/9");
        assert_eq!(KeySpace::new(11).name(9), "bench/09");
    }

    #[test]
    fn keys_stay_in_range_and_cover_it() {
        let mut w = Workload::new(OpMix::Put, KeySpace::new(10), 1);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            let (_, key) = w.next();
            let n: usize = key.strip_prefix("bench/").unwrap().parse().unwrap();
            seen[n] += 1;
        }
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "{seen:?}");
    }

    #[test]
    fn read_ratio_is_respected() {
        let count_gets = |op: OpMix| {
            let mut w = Workload::new(op, KeySpace::new(100), 42);
            (0..10_000).filter(|_| w.next().0 == Op::Get).count()
        };
        assert_eq!(count_gets(OpMix::Put), 0);
        assert_eq!(count_gets(OpMix::Get), 10_000);
        assert_eq!(count_gets(OpMix::Mixed(0.0)), 0);
        assert_eq!(count_gets(OpMix::Mixed(1.0)), 10_000);
        let gets = count_gets(OpMix::Mixed(0.9));
        assert!((8_800..9_200).contains(&gets), "{gets}");
    }

    #[test]
    fn values_have_the_requested_size() {
        assert_eq!(value(0).len(), 0);
        assert_eq!(&value(5)[..], b"abcde");
        assert_eq!(value(1000).len(), 1000);
    }

    #[test]
    fn rng_unit_is_in_range() {
        let mut r = Rng::new(0);
        assert!((0..1000).map(|_| r.unit()).all(|x| (0.0..1.0).contains(&x)));
        assert!((0..1000).all(|_| r.below(3) < 3));
    }
}
