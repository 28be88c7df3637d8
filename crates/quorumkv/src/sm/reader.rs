//! Reading applied state from any task, each read consistent with the applied
//! index it reports.

use crate::kv::{answer_bytes, Pair, Versioned};
use crate::raft::{decode, LogId};
use crate::sm::history::{self, Read, Want};
use crate::sm::idempotency::Record;
use crate::sm::lease::{self, Lease};
use crate::sm::tree::SmTree;
use crate::sm::{data_key, idem_key, read_u64, APPLIED, DATA_BYTES};

/// Read access to applied state; cheap to clone.
#[derive(Clone)]
pub struct SmReader {
    tree: SmTree,
    applied: tokio::sync::watch::Receiver<u64>,
}

impl SmReader {
    pub fn new(tree: SmTree, applied: tokio::sync::watch::Receiver<u64>) -> Self {
        SmReader { tree, applied }
    }

    /// A reader for one-off reads: its [`Self::applied_changes`] never change.
    pub fn unwatched(tree: SmTree) -> Self {
        SmReader::new(tree, tokio::sync::watch::channel(0).1)
    }

    /// Changes whenever the state machine applies entries or installs a
    /// snapshot; holds the applied index.
    pub fn applied_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied.clone()
    }

    /// Matching changes from `want.from` on, as far as this node has applied.
    pub fn history(&self, want: &Want<'_>) -> Result<Read, sled::Error> {
        self.tree.read(|t| history::read(t, want, applied_in(t)?))
    }

    /// Every lease: id and record.
    pub fn leases(&self) -> Result<Vec<(u64, Lease)>, sled::Error> {
        self.tree.read(|t| {
            let mut out = Vec::new();
            for item in t.scan_prefix(lease::lease_prefix()) {
                let (k, v) = item?;
                if let (Some(id), Some(l)) = (lease::id_of(&k), lease::decode_lease(&v)) {
                    out.push((id, l));
                }
            }
            Ok(out)
        })
    }

    /// Lease `id`, and up to `max_keys` of its keys (in key order).
    pub fn lease(
        &self,
        id: u64,
        max_keys: usize,
    ) -> Result<Option<(Lease, Vec<String>)>, sled::Error> {
        self.tree.read(|tree| {
            let Some(raw) = tree.get(lease::lease_key(id))? else {
                return Ok(None);
            };
            let Some(l) = lease::decode_lease(&raw) else {
                return Ok(None);
            };
            let mut keys = Vec::new();
            for item in tree.scan_prefix(lease::attached_prefix(id)).take(max_keys) {
                let (k, _) = item?;
                keys.push(lease::key_of_attachment(&k));
            }
            Ok(Some((l, keys)))
        })
    }

    /// The last applied log index (0 before anything is applied).
    pub fn applied_index(&self) -> Result<u64, sled::Error> {
        applied_in(&self.tree.load())
    }

    /// Runs `read` so that it sees exactly the state at the returned applied
    /// index: no apply half-written ([`SmTree::read`]), and the applied index
    /// read with it. One tree for the whole read: an install switching trees
    /// meanwhile leaves it reading the old state, whole.
    fn consistent<T>(
        &self,
        read: impl Fn(&sled::Tree) -> Result<T, sled::Error>,
    ) -> Result<(u64, T), sled::Error> {
        self.tree.read(|t| Ok((applied_in(t)?, read(t)?)))
    }

    /// Whether a request with this idempotency key and fingerprint has a
    /// record (expired or not): a retry the state machine will most likely
    /// answer from it, without storing anything.
    pub fn has_idempotency_record(&self, key: &str, fingerprint: u64) -> Result<bool, sled::Error> {
        let Some(raw) = self.tree.load().get(idem_key(key))? else {
            return Ok(false);
        };
        Ok(decode::<Record>(&raw).is_ok_and(|r| r.fingerprint == fingerprint))
    }

    /// Bytes of user keys and values stored (`m:data_bytes`).
    pub fn data_bytes(&self) -> Result<u64, sled::Error> {
        Ok(read_u64(self.tree.load().get(DATA_BYTES)?))
    }

    /// The value of `key` and the applied index it was read at.
    pub fn get(&self, key: &str) -> Result<(u64, Option<Versioned>), sled::Error> {
        let k = data_key(key);
        self.consistent(|t| Ok(t.get(&k)?.and_then(|b| Versioned::decode(&b))))
    }

    /// One page of the pairs whose keys start with `page.prefix`, in key
    /// order from `page.start`: at most `page.limit` pairs and (but for the
    /// first) at most `page.max_bytes` of answer. Returns the key the next
    /// page starts at, if any.
    pub fn scan(&self, page: &Page) -> Result<(u64, Vec<Pair>, Option<String>), sled::Error> {
        let p = data_key(page.prefix);
        let from = data_key(page.start.unwrap_or(page.prefix));
        self.consistent(|t| {
            let mut pairs = Vec::new();
            let mut bytes = 0;
            for item in t.range(from.as_slice()..) {
                let (k, v) = item?;
                if !k.starts_with(&p) {
                    break;
                }
                let key = String::from_utf8_lossy(&k[1..]).into_owned();
                let Some(v) = Versioned::decode(&v) else {
                    continue;
                };
                let cost = answer_bytes(key.len(), v.value.len());
                if pairs.len() == page.limit || (!pairs.is_empty() && bytes + cost > page.max_bytes)
                {
                    return Ok((pairs, Some(key)));
                }
                bytes += cost;
                pairs.push(Pair {
                    key,
                    value: v.value,
                });
            }
            Ok((pairs, None))
        })
        .map(|(index, (pairs, next))| (index, pairs, next))
    }
}

/// The last applied log index in `tree` (0 before anything is applied).
fn applied_in(tree: &sled::Tree) -> Result<u64, sled::Error> {
    let raw = tree.get(APPLIED)?;
    Ok(raw
        .and_then(|b| decode::<Option<LogId>>(&b).ok().flatten())
        .map_or(0, |l| l.index))
}

/// What one scan asks for.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    pub prefix: &'a str,
    /// The first key to include (at or after `prefix`); `None`: from the start.
    pub start: Option<&'a str>,
    pub limit: usize,
    /// Bound on the answer's size, as counted by [`answer_bytes`].
    pub max_bytes: usize,
}
