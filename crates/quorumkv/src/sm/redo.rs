//! How an apply's changes reach the state machine's tree without a sled batch.
//!
//! sled 0.34 writes out its log buffer twice for every batch (`pin_log`: a
//! pwrite and a `sync_file_range` that waits for the disk, each), on every
//! node for every apply call; those writes competed with the Raft log's
//! fdatasync on the same disk. Plain inserts only fill sled's buffer, written
//! when full or by its flusher. What the batch gave, this module gives back:
//!
//! - **Atomic after a crash**: an apply first inserts one redo record holding
//!   every change (absolute values) in a tree of its own (`sm:redo`, so the
//!   state machine's tree never carries it), then the changes one by one, then
//!   removes the record. sled recovers a prefix of its operations (all trees
//!   share its one log, and recovery stops at the first torn message: sled
//!   0.34's `pagecache/iterator.rs`), so after a crash the record is there whenever some
//!   of the changes are, and [`Redo::recover`] writes them all again (an
//!   idempotent replay).
//! - **Atomic to readers**: a sequence number, odd while an apply writes
//!   ([`Redo::read`] retries a read that overlapped one; a seqlock).
//!
//! The state machine is not synced per apply either way: a crash may lose
//! the last applies, which openraft applies again from the log (the purge
//! syncs the state machine before it drops log entries).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::raft::{decode, encode};

/// The tree of the redo record, and its key (absent between applies).
const TREE: &str = "sm:redo";
const RECORD: &[u8] = b"apply";

/// One key's new value (`None`: removed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
}

/// The write side and the read side of the state machine's applies.
#[derive(Debug)]
pub struct Redo {
    /// Odd while an apply writes.
    seq: AtomicU64,
    /// Holds the record of the apply being written.
    log: sled::Tree,
}

fn to_io(e: bincode::Error) -> sled::Error {
    sled::Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

impl Redo {
    /// Opens `db`'s redo tree; [`Redo::recover`] before any apply.
    pub fn open(db: &sled::Db) -> Result<Redo, sled::Error> {
        Ok(Redo {
            seq: AtomicU64::new(0),
            log: db.open_tree(TREE)?,
        })
    }

    /// Writes `changes` to `tree`: the redo record, the changes, the record's
    /// removal; readers of [`Redo::read`] see none of it or all of it.
    pub fn write(&self, tree: &sled::Tree, changes: &[Change]) -> Result<(), sled::Error> {
        let record = encode(&changes).map_err(to_io)?;
        self.seq.fetch_add(1, Ordering::SeqCst);
        let written = write_all(&self.log, tree, &record, changes);
        self.seq.fetch_add(1, Ordering::SeqCst);
        written
    }

    /// Runs `read` on `tree` so that it sees no apply half-written: a read
    /// that overlapped an apply's writes is run again.
    pub fn read<T>(
        &self,
        tree: &sled::Tree,
        read: impl Fn(&sled::Tree) -> Result<T, sled::Error>,
    ) -> Result<T, sled::Error> {
        loop {
            let before = self.seq.load(Ordering::SeqCst);
            if before % 2 == 1 {
                std::thread::yield_now();
                continue;
            }
            let value = read(tree)?;
            if self.seq.load(Ordering::SeqCst) == before {
                return Ok(value);
            }
        }
    }

    /// Completes, on `tree` (the state machine's current one), the apply a
    /// crash cut short, if any: at open, before any read or apply. Returns
    /// whether there was one.
    pub fn recover(&self, tree: &sled::Tree) -> Result<bool, sled::Error> {
        let Some(record) = self.log.get(RECORD)? else {
            return Ok(false);
        };
        let changes: Vec<Change> = decode(&record).map_err(to_io)?;
        write_all(&self.log, tree, &record, &changes)?;
        tracing::warn!(
            changes = changes.len(),
            "completed a state-machine apply interrupted by a crash"
        );
        Ok(true)
    }
}

fn write_all(
    log: &sled::Tree,
    tree: &sled::Tree,
    record: &[u8],
    changes: &[Change],
) -> Result<(), sled::Error> {
    log.insert(RECORD, record)?;
    for c in changes {
        match &c.value {
            Some(v) => tree.insert(&c.key[..], &v[..])?,
            None => tree.remove(&c.key[..])?,
        };
    }
    log.remove(RECORD)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn change(k: &str, v: Option<&str>) -> Change {
        Change {
            key: k.as_bytes().to_vec(),
            value: v.map(|v| v.as_bytes().to_vec()),
        }
    }

    #[test]
    fn an_interrupted_apply_is_completed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let changes = vec![
            change("a", Some("1")),
            change("b", None),
            change("c", Some("3")),
        ];
        {
            let db = sled::open(dir.path()).unwrap();
            let t = db.open_tree("sm").unwrap();
            t.insert("b", "old").unwrap();
            // What a crash after the record and the first change leaves.
            let log = db.open_tree(TREE).unwrap();
            log.insert(RECORD, encode(&changes).unwrap()).unwrap();
            t.insert("a", "1").unwrap();
            db.flush().unwrap();
        }
        let db = sled::open(dir.path()).unwrap();
        let t = db.open_tree("sm").unwrap();
        let redo = Redo::open(&db).unwrap();
        assert!(redo.recover(&t).unwrap());
        assert_eq!(t.get("a").unwrap().unwrap(), "1");
        assert_eq!(t.get("b").unwrap(), None);
        assert_eq!(t.get("c").unwrap().unwrap(), "3");
        assert_eq!(db.open_tree(TREE).unwrap().get(RECORD).unwrap(), None);
        assert!(!redo.recover(&t).unwrap());
    }

    #[test]
    fn a_write_leaves_no_record_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            let t = db.open_tree("sm").unwrap();
            let redo = Redo::open(&db).unwrap();
            redo.write(&t, &[change("x", Some("1")), change("y", Some("2"))])
                .unwrap();
            redo.write(&t, &[change("x", None)]).unwrap();
            assert_eq!(db.open_tree(TREE).unwrap().get(RECORD).unwrap(), None);
            db.flush().unwrap();
        }
        let db = sled::open(dir.path()).unwrap();
        let t = db.open_tree("sm").unwrap();
        assert!(!Redo::open(&db).unwrap().recover(&t).unwrap());
        assert_eq!(t.get("x").unwrap(), None);
        assert_eq!(t.get("y").unwrap().unwrap(), "2");
    }

    /// Every apply moves one unit from `a` to `b` (two keys): a reader must
    /// always see a sum of 1000, never one key written and not the other.
    #[test]
    fn readers_never_see_half_an_apply() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let t = db.open_tree("sm").unwrap();
        let num = |v: Option<sled::IVec>| -> u64 {
            std::str::from_utf8(&v.unwrap()).unwrap().parse().unwrap()
        };
        t.insert("a", "1000").unwrap();
        t.insert("b", "0").unwrap();
        let redo = Arc::new(Redo::open(&db).unwrap());
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (t, redo, done) = (t.clone(), redo.clone(), done.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !done.load(Ordering::SeqCst) || reads == 0 {
                    let sum = redo
                        .read(&t, |t| Ok(num(t.get("a")?) + num(t.get("b")?)))
                        .unwrap();
                    assert_eq!(sum, 1000);
                    reads += 1;
                }
                reads
            })
        };
        for i in 1..=1000u64 {
            let changes = [
                change("a", Some(&(1000 - i).to_string())),
                change("b", Some(&i.to_string())),
            ];
            redo.write(&t, &changes).unwrap();
        }
        done.store(true, Ordering::SeqCst);
        assert!(reader.join().unwrap() > 0);
    }
}
