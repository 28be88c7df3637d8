//! Raft log storage on its own sled database: the `log` tree (index,
//! big-endian -> entry) and the `raft_meta` tree (vote, last purged). The
//! committed index lives with the state machine, which need not be fsync'd.
//! `append` returns once the entries are in sled (readable, not yet durable)
//! and hands openraft's `IOFlushed` callback to the flusher, which fires it
//! only after a flush + fdatasync that began after the append (see
//! [`crate::raft::durable`]); a vote is durable before `save_vote` returns.
//!
//! openraft runs `purge` inside its core, so a purge that removes a million
//! entries and syncs two databases would stall every write meanwhile. Here
//! `purge` only moves the purge point in memory (entries at or below it are
//! no longer read or counted) and a background task does the rest.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{EntryPayload, OptionalSend, RaftLogReader};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, watch};

use crate::raft::durable::{Durable, Flusher};
use crate::raft::snapshot::SnapshotFile;
use crate::raft::{decode, encode, storage_err, Entry, LogId, StorageError, TypeConfig, Vote};
use crate::sm::reader::SmReader;
use crate::sm::tree::SmTree;

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const PURGED: &[u8] = b"purged";

/// After how long a purge still waiting for the snapshot that covers it to
/// reach the disk is logged (it keeps waiting: the entries stay until then).
const PURGE_WAIT: Duration = Duration::from_secs(120);
/// Entries removed per sled batch by the background purge, and the pause
/// between two batches: the removals reach the disk with the appends' next
/// flush, so a purge spread out keeps each of those flushes small.
const PURGE_STEP: usize = 1024;
const PURGE_PAUSE: Duration = Duration::from_millis(5);

#[derive(Clone)]
pub struct LogStore {
    durable: Durable,
    /// The state machine's database: flushed before the log is purged.
    sm: Durable,
    /// Entries are purged only once the snapshot file covers them (`None`
    /// only in openraft's storage suite, which purges without snapshots).
    snapshots: Option<SnapshotFile>,
    log: sled::Tree,
    meta: sled::Tree,
    /// In the state machine's database (losing it only means re-applying).
    committed: sled::Tree,
    /// How far the state machine has applied: entries it has are safe to purge.
    applied: SmReader,
    flusher: Flusher,
    appends: AppendWatch,
    /// The purge point openraft asked for; the background purge catches up.
    purge_to: Arc<watch::Sender<Option<LogId>>>,
}

/// Tells `eventual` writers the index their entry was appended at on the leader
/// (appended, not yet flushed or committed): entries carry a ticket.
#[derive(Clone, Default)]
pub struct AppendWatch {
    waiting: Arc<Mutex<HashMap<u64, oneshot::Sender<u64>>>>,
    next: Arc<AtomicU64>,
}

impl AppendWatch {
    /// A fresh ticket and the receiver of its index.
    pub fn register(&self) -> (u64, oneshot::Receiver<u64>) {
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.lock().insert(ticket, tx);
        (ticket, rx)
    }

    pub fn forget(&self, ticket: u64) {
        self.lock().remove(&ticket);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<u64>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn appended(&self, entries: &[Entry]) {
        let mut waiting = self.lock();
        if waiting.is_empty() {
            return;
        }
        for e in entries {
            if let EntryPayload::Normal(proposal) = &e.payload {
                for t in proposal.requests.iter().filter_map(|r| r.ticket) {
                    if let Some(tx) = waiting.remove(&t) {
                        let _ = tx.send(e.log_id.index);
                    }
                }
            }
        }
    }
}

impl LogStore {
    pub fn open(
        durable: Durable,
        sm: Durable,
        sm_tree: SmTree,
        snapshots: Option<SnapshotFile>,
    ) -> Result<Self, sled::Error> {
        let log = durable.db().open_tree("log")?;
        let meta = durable.db().open_tree("raft_meta")?;
        let committed = sm.db().open_tree("raft_committed")?;
        let applied = SmReader::unwatched(sm_tree);
        let flusher = durable.start_flusher();
        let purged: Option<LogId> =
            Self::read_meta(&meta, PURGED, "last purged log id").map_err(sled::Error::Io)?;
        let store = LogStore {
            durable,
            sm,
            snapshots,
            log,
            meta,
            committed,
            applied,
            flusher,
            appends: AppendWatch::default(),
            purge_to: Arc::new(watch::Sender::new(purged)),
        };
        tokio::spawn(store.purger().run(store.purge_to.subscribe(), purged));
        Ok(store)
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        tree: &sled::Tree,
        key: &[u8],
        what: &str,
    ) -> Result<Option<T>, StorageError> {
        let raw = tree
            .get(key)
            .map_err(|e| storage_err(format_args!("read {what}"), e))?;
        raw.map(|b| decode(&b))
            .transpose()
            .map_err(|e| storage_err(format_args!("decode {what}"), e))
    }

    fn write_meta<T: serde::Serialize>(
        tree: &sled::Tree,
        key: &[u8],
        value: &T,
        what: &str,
    ) -> Result<(), StorageError> {
        let bytes = encode(value).map_err(|e| storage_err(format_args!("encode {what}"), e))?;
        tree.insert(key, bytes)
            .map_err(|e| storage_err(format_args!("write {what}"), e))?;
        Ok(())
    }

    fn purger(&self) -> Purger {
        Purger {
            durable: self.durable.clone(),
            sm: self.sm.clone(),
            snapshots: self.snapshots.clone(),
            log: self.log.clone(),
            meta: self.meta.clone(),
            applied: self.applied.clone(),
        }
    }

    /// Completes a purge a crash interrupted: its point was recorded but some
    /// entries at or below it were not yet removed. Left there, they would make
    /// the log end before its own purge point, which openraft refuses at start
    /// ("inverted log order"); found by `scripts/torture.sh` (a follower killed
    /// again right after installing a snapshot). Run before openraft opens the log.
    pub async fn finish_interrupted_purge(&self) -> Result<(), StorageError> {
        let purged: Option<LogId> = Self::read_meta(&self.meta, PURGED, "last purged log id")?;
        let Some(purged) = purged else { return Ok(()) };
        crate::raft::raise(&self.purge_to, Some(purged));
        let first = self.log.first().map_err(|e| logs_err("read first", e))?;
        if first.is_some_and(|(k, _)| k.as_ref() <= index_key(purged.index).as_slice()) {
            tracing::info!(%purged, "finishing a purge interrupted by a crash");
            self.purger()
                .remove_up_to(purged.index, Duration::ZERO)
                .await?;
            self.sync("purge").await?;
        }
        Ok(())
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId>, StorageError> {
        let last = self.log.last().map_err(|e| logs_err("read", e))?;
        match last {
            None => Ok(None),
            Some((_, bytes)) => {
                let entry: Entry = decode(&bytes).map_err(|e| logs_err("read", e))?;
                Ok(Some(entry.log_id))
            }
        }
    }

    /// The id of the last entry in the log, or of the last purged one.
    pub fn last_log_id(&self) -> Result<Option<LogId>, crate::error::Error> {
        self.log_state()
            .map(|st| st.last_log_id)
            .map_err(|e| crate::error::Error::Storage(e.to_string()))
    }

    /// Entries at or below it are purged, whether or not they are still on disk.
    fn purge_point(&self) -> Option<LogId> {
        *self.purge_to.borrow()
    }

    fn log_state(&self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id = self.purge_point();
        let last_entry = self
            .last_entry_log_id()?
            .filter(|l| last_purged_log_id.is_none_or(|p| l.index > p.index));
        let last_log_id = last_entry.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    /// Where `eventual` writers learn the index their entry was appended at.
    pub fn appends(&self) -> &AppendWatch {
        &self.appends
    }

    async fn sync(&self, verb: &str) -> Result<(), StorageError> {
        self.durable.sync().await.map_err(|e| logs_err(verb, e))
    }

    /// The saved vote. openraft 0.9 stored it in another layout (the leader id
    /// held `Option<NodeId>`); bincode would read such bytes as a wrong vote
    /// rather than fail, so the bytes must be exactly one 0.10 vote.
    fn read_vote_now(&self) -> Result<Option<Vote>, StorageError> {
        use bincode::Options;
        let Some(raw) = self
            .meta
            .get(VOTE)
            .map_err(|e| storage_err("read vote", e))?
        else {
            return Ok(None);
        };
        bincode::DefaultOptions::new()
            .with_fixint_encoding()
            .reject_trailing_bytes()
            .deserialize(&raw)
            .map(Some)
            .map_err(|e| {
                storage_err(
                    "decode vote (a data dir written with openraft 0.9 is not readable)",
                    e,
                )
            })
    }
}

/// What the background purge needs of the log store (not the purge point's
/// sender: the task ends once every [`LogStore`] handle is dropped).
struct Purger {
    durable: Durable,
    sm: Durable,
    snapshots: Option<SnapshotFile>,
    log: sled::Tree,
    meta: sled::Tree,
    applied: SmReader,
}

impl Purger {
    /// Removes every entry at or below `index`, from the first on, a batch
    /// at a time with `pause` between (not synced): a crash leaves no hole,
    /// only a shorter prefix.
    async fn remove_up_to(&self, index: u64, pause: Duration) -> Result<(), StorageError> {
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for item in self.log.range(..=index_key(index)).take(PURGE_STEP) {
                let (k, _) = item.map_err(|e| logs_err("purge", e))?;
                batch.remove(k);
                n += 1;
            }
            self.log
                .apply_batch(batch)
                .map_err(|e| logs_err("purge", e))?;
            if n < PURGE_STEP {
                return Ok(());
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// The background purge: waits until a snapshot on disk or the state
    /// machine covers the point, makes the state machine durable, records the
    /// point, removes the entries, syncs. Ends when every handle is dropped.
    async fn run(self, mut asked: watch::Receiver<Option<LogId>>, mut done: Option<LogId>) {
        loop {
            let target = *asked.borrow_and_update();
            if target > done {
                let Some(log_id) = target else { continue };
                match self.purge_now(log_id).await {
                    Ok(()) => done = target,
                    Err(e) => {
                        tracing::error!(%log_id, "purging the log: {e}; retrying in 1 s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            if asked.changed().await.is_err() {
                return;
            }
        }
    }

    async fn purge_now(&self, log_id: LogId) -> Result<(), StorageError> {
        // openraft purges behind an installed snapshot as soon as it has handed
        // the snapshot to the state machine, before the state machine has it:
        // a crash in between would leave neither the entries nor the snapshot.
        // Wait until the snapshot on disk or the state machine covers them.
        // (At start openraft also purges the hole between a log that lost its
        // unflushed tail and a state machine that had applied it: covered.)
        if let Some(snapshots) = &self.snapshots {
            let covered = || {
                snapshots.covered() >= Some(log_id)
                    || self
                        .applied
                        .applied_index()
                        .is_ok_and(|a| a >= log_id.index)
            };
            let started = tokio::time::Instant::now();
            let mut warned = false;
            while !covered() {
                if !warned && started.elapsed() >= PURGE_WAIT {
                    tracing::warn!(%log_id, "purge logs: neither a snapshot on disk nor the state machine covers the point after {PURGE_WAIT:?}; still waiting");
                    warned = true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        // A restart must never find a gap between the applied state and the
        // log. Behind a snapshot on disk there is none: openraft installs that
        // snapshot at start when the state machine is behind it. Otherwise the
        // state machine alone covers the entries: make it durable first.
        let on_disk = self
            .snapshots
            .as_ref()
            .is_some_and(|s| s.covered() >= Some(log_id));
        if !on_disk {
            self.sm
                .sync()
                .await
                .map_err(|e| storage_err("sync state machine before purge", e))?;
        }
        // The point first, then the entries: a crash between the two leaves
        // entries at or below the point, which the next start removes
        // ([`LogStore::finish_interrupted_purge`]); the other order would
        // leave a log whose first entries are missing.
        LogStore::write_meta(&self.meta, PURGED, &log_id, "last purged log id")?;
        self.remove_up_to(log_id.index, PURGE_PAUSE).await?;
        self.durable.sync().await.map_err(|e| logs_err("purge", e))
    }
}

fn logs_err(verb: &str, e: impl std::error::Error + Send + Sync + 'static) -> StorageError {
    storage_err(format_args!("{verb} logs"), e)
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        // Entries at or below the purge point may still be on disk; they are gone.
        let first = self.purge_point().map_or(0, |p| p.index + 1);
        let start = match range.start_bound() {
            Bound::Included(&i) => i.max(first),
            Bound::Excluded(&i) => (i + 1).max(first),
            Bound::Unbounded => first,
        };
        let start = Bound::Included(index_key(start));
        let end = match range.end_bound() {
            Bound::Included(&i) => Bound::Included(index_key(i)),
            Bound::Excluded(&i) => Bound::Excluded(index_key(i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut entries = Vec::new();
        for item in self.log.range::<[u8; 8], _>((start, end)) {
            let (_, bytes) = item.map_err(|e| logs_err("read", e))?;
            entries.push(decode(&bytes).map_err(|e| logs_err("read", e))?);
        }
        Ok(entries)
    }

    /// Replication tasks read the vote through their reader to stop streaming
    /// once the leader changed.
    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_vote_now()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        self.log_state()
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        Self::write_meta(&self.meta, VOTE, vote, "vote")?;
        // Durable before returning, as openraft requires of a vote.
        self.durable
            .sync()
            .await
            .map_err(|e| storage_err("sync vote", e))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not flushed on its own: losing it only means re-applying from the log.
        Self::write_meta(&self.committed, COMMITTED, &committed, "committed log id")
    }

    /// The committed log id saved last, but never past this log's last entry:
    /// the leader may commit an entry (and a follower learn of it) before this
    /// node's copy is flushed, so after a crash the saved value can name
    /// entries the log no longer has. The entries this log has up to there
    /// matched the leader's, so they are committed; openraft learns the rest
    /// from the leader.
    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let committed: Option<Option<LogId>> =
            Self::read_meta(&self.committed, COMMITTED, "committed log id")?;
        let last = self.log_state()?.last_log_id;
        Ok(committed.flatten().min(last))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut batch = sled::Batch::default();
        for entry in &entries {
            let bytes = encode(entry).map_err(|e| logs_err("encode", e))?;
            batch.insert(&index_key(entry.log_id.index), bytes);
        }
        // Readable once in sled (openraft reads them back at once); durable
        // only once the flusher has fdatasync'd, and only then acknowledged.
        self.log
            .apply_batch(batch)
            .map_err(|e| logs_err("append", e))?;
        self.appends.appended(&entries);
        self.flusher
            .after_next_flush(callback)
            .map_err(|e| logs_err("append", e))
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), StorageError> {
        tracing::debug!(?last_log_id, "truncate log after");
        let from = last_log_id.map_or(0, |l| l.index + 1);
        let mut batch = sled::Batch::default();
        for item in self.log.range(index_key(from)..) {
            let (k, _) = item.map_err(|e| logs_err("truncate", e))?;
            batch.remove(k);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| logs_err("truncate", e))?;
        // Durable at once (truncation is rare): a snapshot installed next must
        // never meet the conflicting entries again after a crash.
        self.sync("truncate").await
    }

    /// Moves the purge point and returns: the background purge removes the
    /// entries (see the module doc).
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "purge log up to");
        crate::raft::raise(&self.purge_to, Some(log_id));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use openraft::storage::{IOFlushed, RaftLogStorage};
    use openraft::EntryPayload;

    use super::*;
    use crate::raft::durable::Durable;

    fn log_id(index: u64) -> LogId {
        openraft::testing::log_id::<TypeConfig>(1, 1, index)
    }

    fn open(dir: &std::path::Path) -> LogStore {
        let log = Durable::open(&dir.join("log")).expect("log db");
        let sm = Durable::open(&dir.join("sm")).expect("sm db");
        let file = SnapshotFile::open(dir.join("snapshot")).expect("snapshot file");
        let tree = SmTree::open(sm.db()).expect("sm tree");
        LogStore::open(log, sm, tree, Some(file)).expect("log store")
    }

    /// Appends blank entries 1..=last and makes them durable.
    async fn append_blank(store: &mut LogStore, last: u64) {
        let entries = (1..=last).map(|i| Entry {
            log_id: log_id(i),
            payload: EntryPayload::Blank,
        });
        store
            .append(entries, IOFlushed::noop())
            .await
            .expect("append");
        store.sync("test").await.expect("flush");
    }

    #[tokio::test]
    async fn a_saved_commit_beyond_the_log_reads_back_as_the_log_end() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = open(dir.path());
        append_blank(&mut store, 3).await;
        // The leader committed 5 before this node's copy of 4 and 5 was on
        // disk, and the node crashed: the log ends at 3.
        store.save_committed(Some(log_id(5))).await.expect("save");
        assert_eq!(store.read_committed().await.unwrap(), Some(log_id(3)));
        store.save_committed(Some(log_id(2))).await.expect("save");
        assert_eq!(store.read_committed().await.unwrap(), Some(log_id(2)));
    }

    #[tokio::test]
    async fn a_purge_cut_short_by_a_crash_is_finished_at_start() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = open(dir.path());
        append_blank(&mut store, 5).await;
        // A snapshot installed past the log's end: the purge recorded its point
        // (8) and the crash came before the entries were removed.
        LogStore::write_meta(&store.meta, PURGED, &log_id(8), "purged").unwrap();
        assert_eq!(store.log.len(), 5);

        store.finish_interrupted_purge().await.expect("finish");
        assert_eq!(store.log.len(), 0);
        let state = store.get_log_state().await.expect("state");
        assert_eq!(state.last_purged_log_id, Some(log_id(8)));
        assert_eq!(state.last_log_id, Some(log_id(8)));
        // Nothing left to do the second time.
        store.finish_interrupted_purge().await.expect("again");
    }

    #[tokio::test]
    async fn a_purge_hides_entries_at_once_and_removes_them_behind_a_snapshot() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = open(dir.path());
        append_blank(&mut store, 3000).await;
        store.purge(log_id(2500)).await.expect("purge");
        // Gone for openraft at once, on disk until a snapshot covers them.
        let state = store.get_log_state().await.expect("state");
        assert_eq!(state.last_purged_log_id, Some(log_id(2500)));
        assert_eq!(state.last_log_id, Some(log_id(3000)));
        let read = store.try_get_log_entries(0..3001).await.expect("read");
        assert_eq!(read.first().map(|e| e.log_id.index), Some(2501));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            store.log.len(),
            3000,
            "removed before a snapshot covered them"
        );

        let snapshots = store.snapshots.clone().expect("snapshot file");
        let temp = snapshots.temp_path();
        let meta = crate::raft::SnapshotMeta {
            last_log_id: Some(log_id(2600)),
            ..Default::default()
        };
        crate::raft::snapshot::Writer::create(&temp, &meta)
            .unwrap()
            .finish()
            .unwrap();
        snapshots.publish(&temp, &meta).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.log.len() != 500 {
            assert!(
                std::time::Instant::now() < deadline,
                "{} entries left",
                store.log.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(store);
        // The flusher and the purge end once their handles are gone.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let reopened = open(dir.path()).get_log_state().await.expect("state");
        assert_eq!(reopened.last_purged_log_id, Some(log_id(2500)));
    }
}
