//! openraft's `RaftStateMachine` over the [`sm`](crate::sm) tree. Every apply
//! call is written as one unit (whole to readers and after a crash:
//! [`redo`](crate::sm::redo)) holding the data changes and the new
//! last-applied log id. A snapshot is built from a [`capture`] of the tree
//! started between two applies: written to a file frame by frame on a
//! blocking thread while applies go on, never held in memory whole.

use std::sync::Arc;

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};

use crate::command::CommandResult;
use crate::metrics::METRICS;
use crate::raft::durable::Durable;
use crate::raft::snapshot::{snap_err, SnapshotData, SnapshotFile, Writer};
use crate::raft::{
    decode, encode, storage_err, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig,
};
use crate::sm::apply::Changes;
use crate::sm::capture::{self, Captures};
use crate::sm::history;
use crate::sm::idempotency::{self, Policy};
use crate::sm::reader::SmReader;
use crate::sm::tree::SmTree;
use crate::sm::{APPLIED, MEMBERSHIP};

/// What the state machine keeps and for how long. Idempotency must be the
/// same on every node. History is trimmed by each node's own setting (a
/// snapshot installed from the leader brings the leader's history with it).
#[derive(Debug, Clone, Copy, Default)]
pub struct Retention {
    pub idempotency: Policy,
    pub history: history::Limit,
}

pub struct StateMachine {
    durable: Durable,
    tree: SmTree,
    /// Every write to `tree` goes through it, so captures see a fixed tree.
    captures: Arc<Captures>,
    snapshot_file: SnapshotFile,
    retention: Retention,
    /// The applied index, for watchers and blocking reads to wait on.
    applied: tokio::sync::watch::Sender<u64>,
}

fn sm_err<E: std::error::Error + Send + Sync + 'static>(
    what: &'static str,
) -> impl FnOnce(E) -> StorageError {
    move |e| storage_err(format_args!("state machine {what}"), e)
}

impl StateMachine {
    pub fn open(
        durable: Durable,
        tree: SmTree,
        snapshot_file: SnapshotFile,
        retention: Retention,
    ) -> Result<Self, sled::Error> {
        let reader = SmReader::unwatched(tree.clone());
        let applied = reader.applied_index()?;
        history::mark_floor(&tree.load(), applied)?;
        let captures = Captures::open(durable.db().clone())?;
        Ok(StateMachine {
            durable,
            tree,
            captures,
            snapshot_file,
            retention,
            applied: tokio::sync::watch::Sender::new(applied),
        })
    }

    /// Finishes a snapshot install that a crash interrupted. An install writes
    /// the state machine, then the snapshot file; the log behind it is purged
    /// only once the file covers it. A crash between the two leaves the state
    /// machine ahead of the whole log and of the file, and openraft, on start,
    /// would purge the log up to the state machine and find no snapshot that
    /// reaches as far. The state machine then holds exactly the installed
    /// snapshot, so writing the file from it completes the install.
    pub async fn finish_interrupted_install(
        &mut self,
        log_last: Option<LogId>,
    ) -> Result<(), StorageError> {
        let (applied, _) = self.applied_state().await?;
        if applied <= log_last || applied <= self.snapshot_file.covered() {
            return Ok(());
        }
        tracing::warn!(
            applied = %applied.map(|l| l.to_string()).unwrap_or_default(),
            "a snapshot install was interrupted; writing the snapshot file again"
        );
        self.get_snapshot_builder().await.build_snapshot().await?;
        Ok(())
    }

    pub fn reader(&self) -> SmReader {
        SmReader::new(self.tree.clone(), self.applied.subscribe())
    }
}

/// Last-applied log id and membership, from raw pairs (the tree or a copy).
fn applied_from(
    get: impl Fn(&[u8]) -> Result<Option<Vec<u8>>, StorageError>,
) -> Result<(Option<LogId>, StoredMembership), StorageError> {
    let applied = match get(APPLIED)? {
        Some(b) => decode(&b).map_err(sm_err("read"))?,
        None => None,
    };
    let membership = match get(MEMBERSHIP)? {
        Some(b) => decode(&b).map_err(sm_err("read"))?,
        None => StoredMembership::default(),
    };
    Ok((applied, membership))
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        applied_from(|k| {
            Ok(self
                .tree
                .load()
                .get(k)
                .map_err(sm_err("read"))?
                .map(|v| v.to_vec()))
        })
    }

    /// Applies every entry the stream holds as one write, then answers each
    /// entry's responder: a client learns its result only once the write
    /// (with the new last-applied id) is in the tree.
    async fn apply<Strm>(&mut self, entries: Strm) -> Result<(), StorageError>
    where
        Strm:
            Stream<Item = Result<EntryResponder<TypeConfig>, StorageError>> + Unpin + OptionalSend,
    {
        let entries: Vec<EntryResponder<TypeConfig>> = entries.try_collect().await?;
        let started = std::time::Instant::now();
        METRICS.apply_entries.observe(entries.len() as f64);
        let tree = self.tree.load();
        let mut changes = Changes::new(&tree, self.retention.idempotency);
        let mut results: Vec<Vec<CommandResult>> = Vec::with_capacity(entries.len());
        let mut last = None;
        for (entry, _) in &entries {
            last = Some(entry.log_id);
            let result = match &entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(proposal) => proposal
                    .requests
                    .iter()
                    .map(|req| changes.apply(entry.log_id.index, req))
                    .collect::<Result<_, _>>()
                    .map_err(sm_err("apply"))?,
                EntryPayload::Membership(m) => {
                    let stored = StoredMembership::new(Some(entry.log_id), m.clone());
                    let bytes = encode(&stored).map_err(sm_err("apply"))?;
                    changes.set_raw(MEMBERSHIP.to_vec(), bytes);
                    Vec::new()
                }
            };
            results.push(result);
        }
        if let Some(last) = last {
            let bytes = encode(&Some(last)).map_err(sm_err("apply"))?;
            changes.set_raw(APPLIED.to_vec(), bytes);
        }
        // Housekeeping in the same write: one redo record per apply call.
        idempotency::collect_garbage(&mut changes, self.retention.idempotency)
            .map_err(sm_err("apply"))?;
        history::trim(&mut changes, self.retention.history).map_err(sm_err("apply"))?;
        changes
            .commit(&self.tree, &self.captures)
            .map_err(sm_err("apply"))?;
        crate::metrics::observe(&METRICS.apply_seconds, started.elapsed());
        if let Some(last) = last {
            self.applied.send_replace(last.index);
        }
        for ((_, responder), result) in entries.into_iter().zip(results) {
            if let Some(responder) = responder {
                responder.send(result);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        // Called between applies: the capture sees the tree as of this index.
        let started = async {
            let (last_log_id, last_membership) = self.applied_state().await?;
            let capture = self
                .captures
                .start(self.tree.load())
                .map_err(sm_err("capture"))?;
            let meta = SnapshotMeta {
                last_log_id,
                last_membership,
            };
            Ok((capture, meta))
        };
        SnapshotBuilder {
            started: Some(started.await),
            snapshot_file: self.snapshot_file.clone(),
        }
    }

    /// Loads the snapshot into a new tree a frame at a time, makes it
    /// durable, then switches to it ([`SmTree`]: readers see the old state
    /// or the new), and keeps the file in the slot. The switch happens only
    /// once the file's checksum checked out.
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), StorageError> {
        tracing::info!(%meta, "installing snapshot");
        let started = std::time::Instant::now();
        // A running build reads the tree this replaces; let it finish.
        self.captures.idle().await;
        let staged = self.tree.stage().map_err(sm_err("install snapshot"))?;
        let slot = self.snapshot_file.clone();
        let install_meta = meta.clone();
        let filled = staged.clone();
        let (temp, bytes) = tokio::task::spawn_blocking(move || {
            let temp = slot.temp_path();
            let loaded = load(&filled, &install_meta, &snapshot, &temp);
            if loaded.is_err() {
                let _ = std::fs::remove_file(&temp);
            }
            loaded.map(|bytes| (temp, bytes))
        })
        .await
        .map_err(snap_err("install"))??;
        METRICS.snapshot_bytes.set(bytes as i64);
        let sync = |e| sm_err("install snapshot")(e);
        self.durable.sync().await.map_err(sync)?;
        self.tree
            .switch(staged)
            .map_err(sm_err("install snapshot"))?;
        self.durable.sync().await.map_err(sync)?;
        if let Some(last) = meta.last_log_id {
            self.applied.send_replace(last.index);
        }
        let file = self.snapshot_file.clone();
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || file.publish(&temp, &meta))
            .await
            .map_err(snap_err("save"))??;
        crate::metrics::observe(&METRICS.snapshot_install_seconds, started.elapsed());
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let file = self.snapshot_file.clone();
        let current = tokio::task::spawn_blocking(move || file.current())
            .await
            .map_err(snap_err("read"))??;
        Ok(current.map(|(meta, snapshot)| Snapshot { meta, snapshot }))
    }
}

/// Fills the empty `tree` with the snapshot's pairs a frame at a time (the
/// metadata's applied id and membership win over the pairs'), copying the
/// snapshot to `temp` with `meta` on the way. Blocking. Returns the bytes of
/// pairs loaded.
fn load(
    tree: &sled::Tree,
    meta: &SnapshotMeta,
    snapshot: &SnapshotData,
    temp: &std::path::Path,
) -> Result<u64, StorageError> {
    let mut reader = snapshot.reader().map_err(snap_err("read"))?;
    let mut copy = Writer::create(temp, meta).map_err(snap_err("write"))?;
    let applied = encode(&meta.last_log_id).map_err(sm_err("install snapshot"))?;
    let membership = encode(&meta.last_membership).map_err(sm_err("install snapshot"))?;
    let mut bytes = 0u64;
    while let Some(frame) = reader.next_frame().map_err(snap_err("read"))? {
        let mut batch = sled::Batch::default();
        for (k, v) in frame {
            bytes += (k.len() + v.len()) as u64;
            let v = match &k[..] {
                APPLIED => applied.clone(),
                MEMBERSHIP => membership.clone(),
                _ => v,
            };
            batch.insert(&k[..], &v[..]);
            copy.push(k, v).map_err(snap_err("write"))?;
        }
        tree.apply_batch(batch)
            .map_err(sm_err("install snapshot"))?;
    }
    let mut batch = sled::Batch::default();
    batch.insert(APPLIED, applied);
    batch.insert(MEMBERSHIP, membership);
    tree.apply_batch(batch)
        .map_err(sm_err("install snapshot"))?;
    copy.finish().map_err(snap_err("write"))?;
    Ok(bytes)
}

type Started = Result<(capture::Capture, SnapshotMeta), StorageError>;

pub struct SnapshotBuilder {
    started: Option<Started>,
    snapshot_file: SnapshotFile,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let started = std::time::Instant::now();
        let (capture, meta) = self
            .started
            .take()
            .unwrap_or_else(|| Err(storage_err("snapshot", "built twice")))?;
        let slot = self.snapshot_file.clone();
        // A thread of its own, at the lowest CPU priority (see `background`).
        let (tx, rx) = tokio::sync::oneshot::channel();
        let build = move || {
            background();
            let temp = slot.temp_path();
            let written = write(&capture, &meta, &temp);
            drop(capture);
            let summary = match written {
                Ok(s) => s,
                Err(e) => {
                    let _ = std::fs::remove_file(&temp);
                    return Err(e);
                }
            };
            slot.publish(&temp, &meta)?;
            Ok((summary, slot.current()?))
        };
        std::thread::Builder::new()
            .name("snapshot-build".into())
            .spawn(move || {
                let _ = tx.send(build());
            })
            .map_err(snap_err("build"))?;
        let (summary, current) = rx.await.map_err(snap_err("build"))??;
        let (meta, snapshot) =
            current.ok_or_else(|| storage_err("snapshot", "no file after building one"))?;
        METRICS.snapshot_bytes.set(summary.bytes as i64);
        crate::metrics::observe(&METRICS.snapshot_build_seconds, started.elapsed());
        tracing::info!(%meta, bytes = summary.bytes, pairs = summary.pairs, "built snapshot");
        Ok(Snapshot { meta, snapshot })
    }
}

/// Gives the calling thread the lowest CPU priority (nice 19): a snapshot
/// build takes the CPU that serving leaves over. On a 2-core machine running
/// three nodes, a build at full priority doubled the writes' tail latency.
/// Linux threads have their own nice value; the build's thread ends with it.
fn background() {
    // SAFETY: gettid and setpriority only read and set the scheduling
    // priority of the calling thread; no memory is involved.
    let failed = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19) != 0
    };
    if failed {
        tracing::debug!("could not lower the snapshot build's CPU priority");
    }
}

/// Writes what `capture` reads to a new snapshot file at `temp`. Blocking.
fn write(
    capture: &capture::Capture,
    meta: &SnapshotMeta,
    temp: &std::path::Path,
) -> Result<crate::raft::snapshot::Summary, StorageError> {
    let mut w = Writer::create(temp, meta).map_err(snap_err("write"))?;
    loop {
        let chunk = capture.next_chunk().map_err(sm_err("capture"))?;
        if chunk.is_empty() {
            break;
        }
        for (k, v) in chunk {
            w.push(k, v).map_err(snap_err("write"))?;
        }
    }
    w.finish().map_err(snap_err("write"))
}

#[cfg(test)]
mod tests {

    use openraft::EntryPayload;

    use super::*;
    use crate::raft::Entry;

    fn log_id(index: u64) -> LogId {
        openraft::testing::log_id::<TypeConfig>(1, 1, index)
    }

    async fn open(dir: &std::path::Path) -> (StateMachine, SnapshotFile) {
        let durable = Durable::open(&dir.join("sm")).expect("open sled");
        let tree = SmTree::open(durable.db()).expect("sm tree");
        let file = SnapshotFile::open(dir.join("snapshot")).expect("snapshot file");
        let sm = StateMachine::open(durable, tree, file.clone(), Retention::default()).expect("sm");
        (sm, file)
    }

    async fn apply_up_to(sm: &mut StateMachine, index: u64) {
        let entry = Entry {
            log_id: log_id(index),
            payload: EntryPayload::Blank,
        };
        let entries = futures::stream::iter([Ok((entry, None))]);
        sm.apply(entries).await.expect("apply");
    }

    #[tokio::test]
    async fn an_interrupted_install_gets_its_snapshot_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut sm, file) = open(dir.path()).await;
        // The state machine reached 40 with no log behind it and no file.
        apply_up_to(&mut sm, 40).await;
        assert_eq!(file.covered(), None);
        sm.finish_interrupted_install(Some(log_id(3)))
            .await
            .expect("repair");
        assert_eq!(file.covered(), Some(log_id(40)));
        let reopened = SnapshotFile::open(dir.path().join("snapshot")).expect("reopen");
        assert_eq!(
            reopened.covered(),
            Some(log_id(40)),
            "metadata read back from disk"
        );
    }

    #[tokio::test]
    async fn a_state_machine_within_its_log_needs_no_repair() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut sm, file) = open(dir.path()).await;
        apply_up_to(&mut sm, 40).await;
        sm.finish_interrupted_install(Some(log_id(40)))
            .await
            .expect("repair");
        assert_eq!(file.covered(), None, "no snapshot written");
    }
}
