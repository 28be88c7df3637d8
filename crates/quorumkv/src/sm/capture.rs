//! Point-in-time reads of the state machine's tree while it keeps applying:
//! what a snapshot is built from, off the apply path and without copying the
//! tree into memory.
//!
//! sled has no snapshots of its own, so a capture keeps pre-images. It starts
//! between two applies, at index S. From then on, before an apply changes a
//! key the capture has not read yet, the key's value as of S (or its absence)
//! is saved once in the capture's own tree. The capture reads the tree in key
//! order, a chunk at a time; a key's value as of S is its pre-image if it has
//! one, else its current value. Keys already read need no pre-image.
//!
//! One lock orders the two sides: an apply holds it while it saves
//! pre-images and writes its changes. A capture reads a chunk of the tree (a
//! few hundred pairs) *without* it, then, holding it, reads the pre-images
//! of that key range and moves its cursor past the chunk. A pair read
//! unlocked is right unless its key changed since the capture began; but any
//! such change, before or after the unlocked read, came before the cursor
//! moved past the key, so it saved a pre-image, which the locked step finds
//! and which wins. The lock is thus held by the capture (whose thread runs at
//! low priority) only for a short scan of the pre-images. Memory: one chunk; the pre-images are on
//! disk (sled), at most one per key changed during the capture, and dropped
//! with it. Every write to the tree goes through [`Captures::write`]: applies,
//! and the history trim and idempotency garbage collection after them.

use std::ops::Bound;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::sm::Pairs;

/// Pairs read per chunk, at most.
const CHUNK_PAIRS: usize = 512;
const CHUNK_BYTES: usize = 1 << 20;

const ABSENT: u8 = 0;
const PRESENT: u8 = 1;

/// The captures of the state machine's tree.
pub struct Captures {
    db: sled::Db,
    state: Mutex<Vec<Slot>>,
    active: AtomicUsize,
    seq: AtomicU64,
    idle: tokio::sync::watch::Sender<usize>,
}

struct Slot {
    id: u64,
    /// The tree captured (an install, which switches trees, waits for
    /// every capture to end).
    tree: Arc<sled::Tree>,
    pre: sled::Tree,
    /// The last key read; keys up to it need no pre-image.
    cursor: Option<Vec<u8>>,
    done: bool,
}

fn tree_name(id: u64) -> String {
    format!("capture.{id}")
}

impl Captures {
    /// Drops the pre-image trees a crash left in `db`.
    pub fn open(db: sled::Db) -> Result<Arc<Captures>, sled::Error> {
        for name in db.tree_names() {
            if name.starts_with(b"capture.") {
                db.drop_tree(name)?;
            }
        }
        Ok(Arc::new(Captures {
            db,
            state: Mutex::new(Vec::new()),
            active: AtomicUsize::new(0),
            seq: AtomicU64::new(0),
            idle: tokio::sync::watch::Sender::new(0),
        }))
    }

    /// Starts a capture of `tree` as it is now. Call only between applies.
    pub fn start(self: &Arc<Self>, tree: Arc<sled::Tree>) -> Result<Capture, sled::Error> {
        let id = self.seq.fetch_add(1, Ordering::Relaxed);
        let pre = self.db.open_tree(tree_name(id))?;
        pre.clear()?;
        let mut state = self.lock();
        state.push(Slot {
            id,
            tree,
            pre,
            cursor: None,
            done: false,
        });
        self.active.store(state.len(), Ordering::Release);
        self.idle.send_replace(state.len());
        Ok(Capture {
            id,
            captures: self.clone(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether any capture is running (the trims wait while one is).
    pub fn running(&self) -> bool {
        self.active.load(Ordering::Acquire) > 0
    }

    /// Runs `write`, which changes `keys` of the captured tree, after saving
    /// the pre-images any running capture needs.
    pub fn write<'k>(
        &self,
        keys: impl Iterator<Item = &'k [u8]>,
        write: impl FnOnce() -> Result<(), sled::Error>,
    ) -> Result<(), sled::Error> {
        if !self.running() {
            return write();
        }
        let state = self.lock();
        let keys: Vec<&[u8]> = keys.collect();
        // Plain inserts, not a sled batch (which writes sled's buffer out
        // twice, [`redo`](crate::sm::redo)): the capture reads its pre-images
        // under this lock, and a crash drops the capture whole.
        for slot in state.iter().filter(|s| !s.done) {
            for &k in &keys {
                if slot.cursor.as_deref().is_some_and(|c| k <= c) || slot.pre.contains_key(k)? {
                    continue;
                }
                let image = match slot.tree.get(k)? {
                    Some(v) => [&[PRESENT][..], &v].concat(),
                    None => vec![ABSENT],
                };
                slot.pre.insert(k, image)?;
            }
        }
        write()
    }

    /// Resolves once no capture runs.
    pub async fn idle(&self) {
        let mut rx = self.idle.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    fn end(&self, id: u64) {
        let mut state = self.lock();
        state.retain(|s| s.id != id);
        self.active.store(state.len(), Ordering::Release);
        self.idle.send_replace(state.len());
        drop(state);
        if let Err(e) = self.db.drop_tree(tree_name(id)) {
            tracing::warn!(error = %e, "dropping a capture's pre-images");
        }
    }
}

/// One running capture; ends (and drops its pre-images) when dropped.
pub struct Capture {
    id: u64,
    captures: Arc<Captures>,
}

impl Capture {
    /// The next pairs in key order as of the capture's start; empty at the end.
    pub fn next_chunk(&self) -> Result<Pairs, sled::Error> {
        let c = &self.captures;
        // Only this capture moves its cursor: it stays put between the two steps.
        let (tree, from) = {
            let state = c.lock();
            let Some(slot) = state.iter().find(|s| s.id == self.id && !s.done) else {
                return Ok(Vec::new());
            };
            let from = match &slot.cursor {
                Some(k) => Bound::Excluded(k.clone()),
                None => Bound::Unbounded,
            };
            (slot.tree.clone(), from)
        };
        let current = read_chunk(tree.range((from.clone(), Bound::Unbounded)))?;
        let mut state = c.lock();
        let Some(slot) = state.iter_mut().find(|s| s.id == self.id) else {
            return Ok(Vec::new());
        };
        let saved = read_chunk(slot.pre.range((from, Bound::Unbounded)))?;
        // Both lists are complete up to the smaller of their last keys when
        // either was cut short; beyond it, the next chunk carries on.
        let limit = [&current, &saved]
            .into_iter()
            .filter(|(_, cut)| *cut)
            .filter_map(|(pairs, _)| pairs.last().map(|(k, _)| k.clone()))
            .min();
        let within = |k: &Vec<u8>| limit.as_ref().is_none_or(|l| k <= l);
        let mut out = Vec::new();
        let mut current = current.0.into_iter().filter(|(k, _)| within(k)).peekable();
        let mut saved = saved.0.into_iter().filter(|(k, _)| within(k)).peekable();
        loop {
            let take_saved = match (current.peek(), saved.peek()) {
                (None, None) => break,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some((a, _)), Some((b, _))) => b <= a,
            };
            if take_saved {
                let (k, image) = saved.next().unwrap_or_default();
                if current.peek().is_some_and(|(a, _)| *a == k) {
                    current.next();
                }
                if image.first() == Some(&PRESENT) {
                    out.push((k, image[1..].to_vec()));
                }
            } else if let Some(pair) = current.next() {
                out.push(pair);
            }
        }
        match limit {
            Some(l) => slot.cursor = Some(l),
            None => slot.done = true,
        }
        Ok(out)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.captures.end(self.id);
    }
}

/// Up to a chunk of pairs from `iter`, and whether it was cut short.
fn read_chunk(iter: sled::Iter) -> Result<(Pairs, bool), sled::Error> {
    let mut out = Vec::new();
    let mut bytes = 0;
    for item in iter {
        let (k, v) = item?;
        bytes += k.len() + v.len();
        out.push((k.to_vec(), v.to_vec()));
        if out.len() >= CHUNK_PAIRS || bytes >= CHUNK_BYTES {
            return Ok((out, true));
        }
    }
    Ok((out, false))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn open() -> (tempfile::TempDir, Arc<Captures>, Arc<sled::Tree>) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = Arc::new(db.open_tree("sm").unwrap());
        let c = Captures::open(db).unwrap();
        (dir, c, tree)
    }

    fn write(c: &Captures, tree: &sled::Tree, k: &[u8], v: Option<&[u8]>) {
        let write = || {
            match v {
                Some(v) => tree.insert(k, v)?,
                None => tree.remove(k)?,
            };
            Ok(())
        };
        c.write([k].into_iter(), write).unwrap();
    }

    proptest! {
        /// Whatever is written while a capture reads, it returns the tree as
        /// it was at its start.
        #[test]
        fn a_capture_reads_the_tree_as_of_its_start(
            before in proptest::collection::vec((0u16..600, proptest::option::of(0u8..4)), 0..1500),
            during in proptest::collection::vec((0u16..600, proptest::option::of(0u8..4)), 0..1500),
            step in 1usize..200,
        ) {
            let (_d, c, tree) = open();
            let mut model = BTreeMap::new();
            let key = |k: u16| format!("k{k:05}").into_bytes();
            let value = |v: u8| vec![v; 1 + v as usize * 700];
            for (k, v) in before {
                write(&c, &tree, &key(k), v.map(value).as_deref());
                match v { Some(v) => { model.insert(key(k), value(v)); } None => { model.remove(&key(k)); } }
            }
            let capture = c.start(tree.clone()).unwrap();
            let mut got = Vec::new();
            let mut writes = during.into_iter();
            loop {
                for (k, v) in writes.by_ref().take(step) {
                    write(&c, &tree, &key(k), v.map(value).as_deref());
                }
                let chunk = capture.next_chunk().unwrap();
                if chunk.is_empty() { break; }
                got.extend(chunk);
            }
            let want: Vec<_> = model.into_iter().collect();
            prop_assert_eq!(got, want);
            drop(capture);
            prop_assert!(!c.running());
        }
    }

    #[test]
    fn pre_images_go_with_the_capture() {
        let (_d, c, tree) = open();
        let capture = c.start(tree.clone()).unwrap();
        write(&c, &tree, b"a", Some(b"1"));
        assert!(c.db.tree_names().iter().any(|n| n.starts_with(b"capture.")));
        drop(capture);
        assert!(!c.db.tree_names().iter().any(|n| n.starts_with(b"capture.")));
    }
}
