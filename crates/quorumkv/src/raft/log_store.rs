//! Raft log storage on its own sled database: the `log` tree (index,
//! big-endian -> entry) and the `raft_meta` tree (vote, last purged). The
//! committed index lives with the state machine, which need not be fsync'd.
//! An append is acknowledged to openraft only after flush + fdatasync (see
//! [`crate::raft::durable`]); a vote is durable before `save_vote` returns.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

use crate::raft::durable::{Durable, Flusher};
use crate::raft::snapshot::SnapshotFile;
use crate::raft::{decode, encode, Entry, LogId, StorageError, TypeConfig, Vote};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const PURGED: &[u8] = b"purged";

/// How long a purge waits for the snapshot that covers it to reach the disk.
const PURGE_WAIT: Duration = Duration::from_secs(120);

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
    flusher: Flusher,
    appends: AppendWatch,
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
        snapshots: Option<SnapshotFile>,
    ) -> Result<Self, sled::Error> {
        let log = durable.db().open_tree("log")?;
        let meta = durable.db().open_tree("raft_meta")?;
        let committed = sm.db().open_tree("raft_committed")?;
        let flusher = durable.start_flusher();
        Ok(LogStore {
            durable,
            sm,
            snapshots,
            log,
            meta,
            committed,
            flusher,
            appends: AppendWatch::default(),
        })
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        tree: &sled::Tree,
        key: &[u8],
        subject: ErrorSubject<u64>,
    ) -> Result<Option<T>, StorageError> {
        let raw = tree
            .get(key)
            .map_err(|e| StorageError::from_io_error(subject.clone(), ErrorVerb::Read, io(e)))?;
        raw.map(|b| decode(&b))
            .transpose()
            .map_err(|e| StorageError::from_io_error(subject, ErrorVerb::Read, io(e)))
    }

    fn write_meta<T: serde::Serialize>(
        tree: &sled::Tree,
        key: &[u8],
        value: &T,
        subject: ErrorSubject<u64>,
    ) -> Result<(), StorageError> {
        let bytes = encode(value)
            .map_err(|e| StorageError::from_io_error(subject.clone(), ErrorVerb::Write, io(e)))?;
        tree.insert(key, bytes)
            .map_err(|e| StorageError::from_io_error(subject, ErrorVerb::Write, io(e)))?;
        Ok(())
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId>, StorageError> {
        let last = self.log.last().map_err(|e| logs_err(ErrorVerb::Read, e))?;
        match last {
            None => Ok(None),
            Some((_, bytes)) => {
                let entry: Entry = decode(&bytes).map_err(|e| logs_err(ErrorVerb::Read, e))?;
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

    fn log_state(&self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> =
            Self::read_meta(&self.meta, PURGED, ErrorSubject::Logs)?;
        let last_log_id = self.last_entry_log_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    /// Where `eventual` writers learn the index their entry was appended at.
    pub fn appends(&self) -> &AppendWatch {
        &self.appends
    }

    async fn sync(&self, verb: ErrorVerb) -> Result<(), StorageError> {
        self.durable
            .sync()
            .await
            .map_err(|e| StorageError::from_io_error(ErrorSubject::Logs, verb, e))
    }
}

fn io(e: impl std::error::Error + Send + Sync + 'static) -> std::io::Error {
    std::io::Error::other(e)
}

fn logs_err(verb: ErrorVerb, e: impl std::error::Error + Send + Sync + 'static) -> StorageError {
    StorageError::from_io_error(ErrorSubject::Logs, verb, io(e))
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&i) => Bound::Included(index_key(i)),
            Bound::Excluded(&i) => Bound::Excluded(index_key(i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => Bound::Included(index_key(i)),
            Bound::Excluded(&i) => Bound::Excluded(index_key(i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut entries = Vec::new();
        for item in self.log.range::<[u8; 8], _>((start, end)) {
            let (_, bytes) = item.map_err(|e| logs_err(ErrorVerb::Read, e))?;
            entries.push(decode(&bytes).map_err(|e| logs_err(ErrorVerb::Read, e))?);
        }
        Ok(entries)
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
        Self::write_meta(&self.meta, VOTE, vote, ErrorSubject::Vote)?;
        self.durable
            .sync()
            .await
            .map_err(|e| StorageError::from_io_error(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Self::read_meta(&self.meta, VOTE, ErrorSubject::Vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not flushed on its own: losing it only means re-applying from the log.
        Self::write_meta(&self.committed, COMMITTED, &committed, ErrorSubject::Store)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let committed: Option<Option<LogId>> =
            Self::read_meta(&self.committed, COMMITTED, ErrorSubject::Store)?;
        Ok(committed.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut batch = sled::Batch::default();
        for entry in &entries {
            let bytes = encode(entry).map_err(|e| logs_err(ErrorVerb::Write, e))?;
            batch.insert(&index_key(entry.log_id.index), bytes);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| logs_err(ErrorVerb::Write, e))?;
        self.appends.appended(&entries);
        self.flusher
            .after_next_flush(callback)
            .map_err(|e| StorageError::from_io_error(ErrorSubject::Logs, ErrorVerb::Write, e))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "truncate log from");
        let mut batch = sled::Batch::default();
        for item in self.log.range(index_key(log_id.index)..) {
            let (k, _) = item.map_err(|e| logs_err(ErrorVerb::Delete, e))?;
            batch.remove(k);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| logs_err(ErrorVerb::Delete, e))?;
        // Durable at once (truncation is rare): a snapshot installed next must
        // never meet the conflicting entries again after a crash.
        self.sync(ErrorVerb::Delete).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "purge log up to");
        // openraft purges behind an installed snapshot as soon as it has handed
        // the snapshot to the state machine, before that is on disk: a crash
        // in between would leave neither the entries nor the snapshot.
        if let Some(snapshots) = &self.snapshots {
            if !snapshots.wait_covers(log_id, PURGE_WAIT).await {
                let e = std::io::Error::other(format!(
                    "no snapshot on disk covers {log_id} after {PURGE_WAIT:?}"
                ));
                return Err(StorageError::from_io_error(
                    ErrorSubject::Logs,
                    ErrorVerb::Delete,
                    e,
                ));
            }
        }
        // Entries are purged only behind a snapshot, so the state machine has
        // applied them; make that durable before they can be gone, so a restart
        // never finds a gap between the applied state and the log.
        self.sm.sync().await.map_err(|e| {
            StorageError::from_io_error(ErrorSubject::StateMachine, ErrorVerb::Write, e)
        })?;
        Self::write_meta(&self.meta, PURGED, &log_id, ErrorSubject::Logs)?;
        let mut batch = sled::Batch::default();
        for item in self.log.range(..=index_key(log_id.index)) {
            let (k, _) = item.map_err(|e| logs_err(ErrorVerb::Delete, e))?;
            batch.remove(k);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| logs_err(ErrorVerb::Delete, e))?;
        self.sync(ErrorVerb::Delete).await
    }
}
