//! Reading applied state from any task, each read consistent with the applied
//! index it reports.

use crate::kv::{Pair, Versioned};
use crate::raft::{decode, LogId};
use crate::sm::{data_key, APPLIED};

/// Read access to applied state; cheap to clone.
#[derive(Clone)]
pub struct SmReader {
    tree: sled::Tree,
}

impl SmReader {
    pub fn new(tree: sled::Tree) -> Self {
        SmReader { tree }
    }

    /// The last applied log index (0 before anything is applied).
    pub fn applied_index(&self) -> Result<u64, sled::Error> {
        let raw = self.tree.get(APPLIED)?;
        Ok(raw
            .and_then(|b| decode::<Option<LogId>>(&b).ok().flatten())
            .map_or(0, |l| l.index))
    }

    /// Runs `read` so that it sees exactly the state at the returned applied
    /// index: an apply is one atomic sled batch that also moves the applied
    /// index, so equal indexes before and after mean no apply landed between.
    fn consistent<T>(
        &self,
        read: impl Fn(&sled::Tree) -> Result<T, sled::Error>,
    ) -> Result<(u64, T), sled::Error> {
        loop {
            let before = self.applied_index()?;
            let value = read(&self.tree)?;
            if self.applied_index()? == before {
                return Ok((before, value));
            }
        }
    }

    /// The value of `key` and the applied index it was read at.
    pub fn get(&self, key: &str) -> Result<(u64, Option<Versioned>), sled::Error> {
        let k = data_key(key);
        self.consistent(|t| Ok(t.get(&k)?.and_then(|b| Versioned::decode(&b))))
    }

    /// Up to `limit` pairs whose keys start with `prefix`, in key order, and
    /// whether more exist.
    pub fn scan(&self, prefix: &str, limit: usize) -> Result<(u64, Vec<Pair>, bool), sled::Error> {
        let p = data_key(prefix);
        let (index, (pairs, more)) = self.consistent(|t| {
            let mut pairs = Vec::new();
            for item in t.scan_prefix(&p) {
                let (k, v) = item?;
                if pairs.len() == limit {
                    return Ok((pairs, true));
                }
                let key = String::from_utf8_lossy(&k[1..]).into_owned();
                if let Some(v) = Versioned::decode(&v) {
                    pairs.push(Pair {
                        key,
                        value: v.value,
                    });
                }
            }
            Ok((pairs, false))
        })?;
        Ok((index, pairs, more))
    }
}
