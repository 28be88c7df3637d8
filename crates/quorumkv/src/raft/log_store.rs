//! Raft log storage on `raft-log` (segmented append-only files, one
//! `fdatasync` per batch of writes, on a flush thread of its own; see
//! [`crate::raft::wal`]). The committed log id is kept beside it, written
//! without a sync ([`crate::raft::committed`]).
//!
//! `append` hands the entries to the log's flush thread and returns: the
//! entries are readable at once, and openraft's `IOFlushed` callback fires
//! from that thread only after the `fdatasync` that covers them. Writes reach
//! the file in the order they were made, so callbacks fire in order too. A
//! vote, a truncation and a purge are durable before their call returns.
//!
//! openraft purges as soon as it has handed an installed snapshot to the state
//! machine, and does so inside its core. Here `purge` only moves the purge
//! point in memory (entries at or below it are no longer read or counted); a
//! background task waits until a snapshot on disk or the state machine covers
//! the point and only then records the purge in the log.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{EntryPayload, OptionalSend, RaftLogReader};
use raft_log::api::raft_log_writer::RaftLogWriter;
use raft_log::RaftLog;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{oneshot, watch};

use crate::raft::committed::CommittedFile;
use crate::raft::durable::Durable;
use crate::raft::snapshot::SnapshotFile;
use crate::raft::wal::{Flushed, Payload, WalLogId, WalTypes, WalVote};
use crate::raft::{decode, encode, storage_err, Entry, LogId, StorageError, TypeConfig, Vote};
use crate::sm::reader::SmReader;
use crate::sm::tree::SmTree;

/// After how long a purge still waiting for the snapshot that covers it to
/// reach the disk is logged (it keeps waiting: the entries stay until then).
const PURGE_WAIT: Duration = Duration::from_secs(120);
/// How long the flush thread gathers more writes before one `fdatasync`
/// (raft-log's default is 1 ms, which one client would pay on every write;
/// writes already queued behind a running sync are gathered within this).
const FLUSH_GATHER: Duration = Duration::from_micros(20);
/// Log files are closed at this size; a file is deleted once purged whole,
/// so a node keeps up to this much log on disk beyond what it needs.
const CHUNK_BYTES: usize = 16 << 20;
/// Entries kept in memory for followers that are behind (beyond it, read
/// back from the file). Entries of the file still being written stay cached
/// whatever this says, so the log holds up to about twice this in memory.
const CACHE_BYTES: usize = 16 << 20;

type Wal = RaftLog<WalTypes>;

#[derive(Clone)]
pub struct LogStore {
    wal: Arc<Mutex<Wal>>,
    /// The state machine's database: made durable before the log is purged.
    sm: Durable,
    /// Entries are purged only once the snapshot file covers them (`None`
    /// only in openraft's storage suite, which purges without snapshots).
    snapshots: Option<SnapshotFile>,
    /// The committed log id, beside the log (`wal.committed`, not synced).
    committed: Arc<CommittedFile>,
    /// How far the state machine has applied: entries it has are safe to purge.
    applied: SmReader,
    appends: AppendWatch,
    /// The purge point openraft asked for; the background purge catches up.
    purge_to: Arc<watch::Sender<Option<LogId>>>,
    /// The purge point recorded in the log.
    purged: Arc<watch::Sender<Option<LogId>>>,
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
    /// Opens (or creates) the log in `dir`.
    pub fn open(
        dir: &Path,
        sm: Durable,
        sm_tree: SmTree,
        snapshots: Option<SnapshotFile>,
    ) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)?;
        if let Some(parent) = dir.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
        let mut config = raft_log::Config::new(dir.display());
        config.wal.chunk_max_size = Some(CHUNK_BYTES);
        config.wal.flush_batch_wait = Some(FLUSH_GATHER);
        config.log_cache_capacity = Some(CACHE_BYTES);
        let wal = RaftLog::<WalTypes>::open(Arc::new(config))
            .map_err(|e| storage_err(format_args!("open the Raft log in {}", dir.display()), e))?;
        let purged = wal.log_state().purged().map(|l| l.0);
        let committed = CommittedFile::open(&dir.with_extension("committed"))
            .map_err(|e| storage_err("open the committed log id's file", e))?;
        // Where the committed id was kept before (a sled tree, lost on kill -9).
        let _ = sm.db().drop_tree("raft_committed");
        let store = LogStore {
            wal: Arc::new(Mutex::new(wal)),
            sm,
            snapshots,
            committed: Arc::new(committed),
            applied: SmReader::unwatched(sm_tree),
            appends: AppendWatch::default(),
            purge_to: Arc::new(watch::Sender::new(purged)),
            purged: Arc::new(watch::Sender::new(purged)),
        };
        tokio::spawn(store.purger().run(store.purge_to.subscribe(), purged));
        Ok(store)
    }

    fn wal(&self) -> MutexGuard<'_, Wal> {
        self.wal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues everything written so far for an `fdatasync` and waits for it.
    async fn sync(&self, verb: &str) -> Result<(), StorageError> {
        let (tx, rx) = oneshot::channel();
        self.wal()
            .flush(true, Some(Flushed::Wait(tx)))
            .map_err(|e| logs_err(verb, e))?;
        rx.await
            .map_err(|_| logs_err(verb, std::io::Error::other("log flush thread stopped")))?
            .map_err(|e| logs_err(verb, e))
    }

    fn purger(&self) -> Purger {
        Purger {
            store: LogStore {
                // The task must not keep the purge point's sender alive: it
                // ends once every other handle is dropped.
                purge_to: Arc::new(watch::Sender::new(None)),
                ..self.clone()
            },
        }
    }

    /// The id of the last entry in the log, or of the last purged one.
    pub fn last_log_id(&self) -> Option<LogId> {
        self.log_state().last_log_id
    }

    /// Entries at or below it are purged, whether or not the log has recorded it.
    fn purge_point(&self) -> Option<LogId> {
        *self.purge_to.borrow()
    }

    fn log_state(&self) -> LogState<TypeConfig> {
        let last_purged_log_id = self.purge_point();
        let last = self.wal().log_state().last().map(|l| l.0);
        LogState {
            last_purged_log_id,
            last_log_id: last.max(last_purged_log_id),
        }
    }

    /// Where `eventual` writers learn the index their entry was appended at.
    pub fn appends(&self) -> &AppendWatch {
        &self.appends
    }

    /// The log continues from the end of what it holds. After a snapshot
    /// installed past that end, openraft sends entries that follow the
    /// snapshot while the purge that skips the gap may still wait for the
    /// snapshot to reach the disk: wait for it (the install is under way).
    async fn wait_for_gap(&self, first: u64) -> Result<(), StorageError> {
        // An empty log takes any first index.
        let Some(last) = self.wal().log_state().last().map(|l| l.0.index) else {
            return Ok(());
        };
        let Some(behind) = first.checked_sub(1).filter(|&b| b > last) else {
            return Ok(());
        };
        let next = last + 1;
        tracing::info!(
            first,
            next,
            "waiting for the purge behind an installed snapshot"
        );
        let mut purged = self.purged.subscribe();
        let recorded = purged.wait_for(|p| p.is_some_and(|p| p.index >= behind));
        // Bounded: a snapshot that never reaches the disk stops the Raft core
        // (and the node, non-zero) instead of hanging it.
        let outcome = tokio::time::timeout(PURGE_WAIT, recorded)
            .await
            .map(|r| r.map(|_| ()));
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(logs_err(
                "append",
                std::io::Error::other("log purge stopped"),
            )),
            Err(_) => Err(logs_err(
                "append",
                std::io::Error::other(format!(
                    "entries from {first} follow a snapshot whose purge was not recorded within {PURGE_WAIT:?}"
                )),
            )),
        }
    }
}

/// The background purge (holds a [`LogStore`] whose purge point is its own).
struct Purger {
    store: LogStore,
}

impl Purger {
    /// Waits until a snapshot on disk or the state machine covers the point,
    /// makes the state machine durable if only it does, records the purge.
    /// Ends when every other handle is dropped.
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
        let store = &self.store;
        // openraft purges behind an installed snapshot as soon as it has handed
        // the snapshot to the state machine, before the state machine has it:
        // a crash in between would leave neither the entries nor the snapshot.
        // Wait until the snapshot on disk or the state machine covers them.
        // (At start openraft also purges the hole between a log that lost its
        // unflushed tail and a state machine that had applied it: covered.)
        if let Some(snapshots) = &store.snapshots {
            let covered = || {
                snapshots.covered() >= Some(log_id)
                    || store
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
        let on_disk = store
            .snapshots
            .as_ref()
            .is_some_and(|s| s.covered() >= Some(log_id));
        if !on_disk {
            store
                .sm
                .sync()
                .await
                .map_err(|e| storage_err("sync state machine before purge", e))?;
        }
        // One record: the log drops the entries and deletes the files that
        // held only purged entries after the sync that makes it durable.
        store
            .wal()
            .purge(WalLogId(log_id))
            .map_err(|e| logs_err("purge", e))?;
        store.sync("purge").await?;
        crate::raft::raise(&store.purged, Some(log_id));
        Ok(())
    }
}

fn logs_err(verb: &str, e: impl std::error::Error + Send + Sync + 'static) -> StorageError {
    storage_err(format_args!("{verb} logs"), e)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        // Entries at or below the purge point may still be in the log; they are gone.
        let first = self.purge_point().map_or(0, |p| p.index + 1);
        let start = match range.start_bound() {
            Bound::Included(&i) => i.max(first),
            Bound::Excluded(&i) => (i + 1).max(first),
            Bound::Unbounded => first,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => i.saturating_add(1),
            Bound::Excluded(&i) => i,
            Bound::Unbounded => u64::MAX,
        };
        if start >= end {
            return Ok(Vec::new());
        }
        // Copies of the encoded entries under the lock; decoded after it.
        let payloads = self
            .wal()
            .read(start, end)
            .map(|r| r.map(|(_, payload)| payload.0))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| logs_err("read", e))?;
        payloads
            .iter()
            .map(|b| decode(b).map_err(|e| logs_err("read", e)))
            .collect()
    }

    /// Replication tasks read the vote through their reader to stop streaming
    /// once the leader changed.
    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.wal().log_state().vote().map(|v| v.0))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        Ok(self.log_state())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.wal()
            .save_vote(WalVote(*vote))
            .map_err(|e| storage_err("save vote", e))?;
        // Durable before returning, as openraft requires of a vote.
        self.sync("save vote").await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced: survives kill -9, and a power cut only means learning
        // it from the leader.
        self.committed
            .save(committed)
            .map_err(|e| storage_err("write committed log id", e))
    }

    /// The committed log id saved last, but never past this log's last entry:
    /// the leader may commit an entry (and a follower learn of it) before this
    /// node's copy is flushed, so after a crash the saved value can name
    /// entries the log no longer has. The entries this log has up to there
    /// matched the leader's, so they are committed; openraft learns the rest
    /// from the leader.
    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let committed = self
            .committed
            .load()
            .map_err(|e| storage_err("read committed log id", e))?;
        Ok(committed.min(self.log_state().last_log_id))
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
        if let Some(first) = entries.first() {
            self.wait_for_gap(first.log_id.index).await?;
        }
        let mut records = Vec::with_capacity(entries.len());
        for entry in &entries {
            let bytes = encode(entry).map_err(|e| logs_err("encode", e))?;
            records.push((WalLogId(entry.log_id), Payload(bytes.into())));
        }
        {
            // Readable once appended (openraft reads them back at once);
            // acknowledged only once the flush thread has fdatasync'd them.
            let mut wal = self.wal();
            wal.append(records).map_err(|e| logs_err("append", e))?;
            wal.flush(true, Some(Flushed::append(callback)))
                .map_err(|e| logs_err("append", e))?;
        }
        self.appends.appended(&entries);
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), StorageError> {
        tracing::debug!(?last_log_id, "truncate log after");
        let from = last_log_id.map_or(0, |l| l.index + 1);
        {
            let mut wal = self.wal();
            let next = <WalTypes as raft_log::Types>::next_log_index(wal.log_state().last());
            if from >= next {
                return Ok(());
            }
            wal.truncate(from).map_err(|e| logs_err("truncate", e))?;
        }
        // Durable at once (truncation is rare): a snapshot installed next must
        // never meet the conflicting entries again after a crash.
        self.sync("truncate").await
    }

    /// Moves the purge point and returns: the background purge records it
    /// (see the module doc).
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
        let sm = Durable::open(&dir.join("sm")).expect("sm db");
        let file = SnapshotFile::open(dir.join("snapshot")).expect("snapshot file");
        let tree = SmTree::open(sm.db()).expect("sm tree");
        LogStore::open(&dir.join("wal"), sm, tree, Some(file)).expect("log store")
    }

    fn blanks(from: u64, to: u64) -> impl Iterator<Item = Entry> {
        (from..=to).map(|i| Entry {
            log_id: log_id(i),
            payload: EntryPayload::Blank,
        })
    }

    /// Appends blank entries `from..=to` and waits until they are durable.
    async fn append_durable(store: &mut LogStore, from: u64, to: u64) {
        use openraft::type_config::TypeConfigExt;
        let (tx, rx) = TypeConfig::oneshot();
        store
            .append(blanks(from, to), IOFlushed::signal(tx))
            .await
            .expect("append");
        rx.await.expect("flushed").expect("flush ok");
    }

    fn indexes(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.log_id.index).collect()
    }

    /// Publishes an (empty) snapshot file that covers `index`.
    fn snapshot_covering(store: &LogStore, index: u64) {
        let snapshots = store.snapshots.clone().expect("snapshot file");
        let temp = snapshots.temp_path();
        let meta = crate::raft::SnapshotMeta {
            last_log_id: Some(log_id(index)),
            ..Default::default()
        };
        crate::raft::snapshot::Writer::create(&temp, &meta)
            .unwrap()
            .finish()
            .unwrap();
        snapshots.publish(&temp, &meta).unwrap();
    }

    async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn entries_and_vote_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = open(dir.path());
        append_durable(&mut store, 1, 5).await;
        let vote = Vote::new_committed(3, 2);
        store.save_vote(&vote).await.expect("vote");
        store
            .truncate_after(Some(log_id(3)))
            .await
            .expect("truncate");
        drop(store);
        tokio::time::sleep(Duration::from_millis(100)).await;

        let mut store = open(dir.path());
        assert_eq!(store.read_vote().await.unwrap(), Some(vote));
        let read = store.try_get_log_entries(0..10).await.expect("read");
        assert_eq!(indexes(&read), vec![1, 2, 3]);
        assert_eq!(store.last_log_id(), Some(log_id(3)));
    }

    #[tokio::test]
    async fn a_saved_commit_beyond_the_log_reads_back_as_the_log_end() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = open(dir.path());
        append_durable(&mut store, 1, 3).await;
        // The leader committed 5 before this node's copy of 4 and 5 was on
        // disk, and the node crashed: the log ends at 3.
        store.save_committed(Some(log_id(5))).await.expect("save");
        assert_eq!(store.read_committed().await.unwrap(), Some(log_id(3)));
        store.save_committed(Some(log_id(2))).await.expect("save");
        assert_eq!(store.read_committed().await.unwrap(), Some(log_id(2)));
    }

    #[tokio::test]
    async fn a_purge_hides_entries_at_once_and_records_them_behind_a_snapshot() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = open(dir.path());
        append_durable(&mut store, 1, 3000).await;
        store.purge(log_id(2500)).await.expect("purge");
        // Gone for openraft at once, in the log until a snapshot covers them.
        let state = store.get_log_state().await.expect("state");
        assert_eq!(state.last_purged_log_id, Some(log_id(2500)));
        assert_eq!(state.last_log_id, Some(log_id(3000)));
        let read = store.try_get_log_entries(0..3001).await.expect("read");
        assert_eq!(read.first().map(|e| e.log_id.index), Some(2501));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            *store.purged.borrow(),
            None,
            "purged before a snapshot covered it"
        );

        snapshot_covering(&store, 2600);
        let purged = store.purged.clone();
        wait_until("purge recorded", || *purged.borrow() == Some(log_id(2500))).await;
        drop(store);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut reopened = open(dir.path());
        let state = reopened.get_log_state().await.expect("state");
        assert_eq!(state.last_purged_log_id, Some(log_id(2500)));
        let read = reopened.try_get_log_entries(0..3001).await.expect("read");
        assert_eq!(read.len(), 500);
    }

    /// A snapshot installed past the log's end: openraft purges to its end and
    /// appends what follows; the append waits until the snapshot is on disk.
    #[tokio::test]
    async fn an_append_past_a_purge_beyond_the_log_waits_for_the_snapshot() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = open(dir.path());
        append_durable(&mut store, 1, 5).await;
        store.purge(log_id(100)).await.expect("purge");
        assert_eq!(store.last_log_id(), Some(log_id(100)));

        let mut appender = store.clone();
        let append = tokio::spawn(async move { append_durable(&mut appender, 101, 102).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !append.is_finished(),
            "appended before the snapshot was on disk"
        );

        snapshot_covering(&store, 100);
        tokio::time::timeout(Duration::from_secs(10), append)
            .await
            .expect("append done")
            .expect("append task");
        let read = store.try_get_log_entries(0..200).await.expect("read");
        assert_eq!(indexes(&read), vec![101, 102]);
        assert_eq!(store.last_log_id(), Some(log_id(102)));
    }
}
