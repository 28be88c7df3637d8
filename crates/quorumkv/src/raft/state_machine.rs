//! openraft's `RaftStateMachine` over the [`sm`](crate::sm) tree. Every apply
//! call is one atomic sled batch holding the data changes and the new
//! last-applied log id. Snapshots are a point-in-time copy of the tree.

use std::io::Cursor;

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};

use crate::command::CommandResult;
use crate::metrics::METRICS;
use crate::raft::durable::Durable;
use crate::raft::snapshot::{snap_err, SnapshotFile, SnapshotPairs, StoredSnapshot};
use crate::raft::{
    decode, encode, storage_err, LogId, Snapshot, SnapshotData, SnapshotMeta, StorageError,
    StoredMembership, TypeConfig,
};
use crate::sm::apply::Changes;
use crate::sm::history;
use crate::sm::idempotency::{self, Policy};
use crate::sm::reader::SmReader;
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
    tree: sled::Tree,
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
        snapshot_file: SnapshotFile,
        retention: Retention,
    ) -> Result<Self, sled::Error> {
        let tree = durable.db().open_tree(crate::sm::TREE)?;
        let reader = SmReader::unwatched(tree.clone());
        let applied = reader.applied_index()?;
        history::mark_floor(&tree, applied)?;
        Ok(StateMachine {
            durable,
            tree,
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
                .get(k)
                .map_err(sm_err("read"))?
                .map(|v| v.to_vec()))
        })
    }

    /// Applies every entry the stream holds as one sled batch, then answers
    /// each entry's responder: a client learns its result only once the batch
    /// (with the new last-applied id) is in the tree.
    async fn apply<Strm>(&mut self, entries: Strm) -> Result<(), StorageError>
    where
        Strm:
            Stream<Item = Result<EntryResponder<TypeConfig>, StorageError>> + Unpin + OptionalSend,
    {
        let entries: Vec<EntryResponder<TypeConfig>> = entries.try_collect().await?;
        let started = std::time::Instant::now();
        METRICS.apply_entries.observe(entries.len() as f64);
        let mut changes = Changes::new(&self.tree, self.retention.idempotency);
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
        self.tree
            .apply_batch(changes.into_batch())
            .map_err(sm_err("apply"))?;
        idempotency::collect_garbage(&self.tree, self.retention.idempotency)
            .map_err(sm_err("apply"))?;
        history::trim(&self.tree, self.retention.history).map_err(sm_err("apply"))?;
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
        // Called between applies: copy the tree now so the build sees one index.
        let pairs = self
            .tree
            .iter()
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<Result<SnapshotPairs, _>>();
        SnapshotBuilder {
            pairs,
            snapshot_file: self.snapshot_file.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), StorageError> {
        tracing::info!(%meta, "installing snapshot");
        let started = std::time::Instant::now();
        let data = snapshot.into_inner();
        METRICS.snapshot_bytes.set(data.len() as i64);
        let pairs: SnapshotPairs = decode(&data).map_err(snap_err("decode"))?;
        let mut batch = sled::Batch::default();
        for item in self.tree.iter() {
            let (k, _) = item.map_err(sm_err("install snapshot"))?;
            batch.remove(k);
        }
        for (k, v) in pairs {
            batch.insert(k, v);
        }
        // The snapshot's own metadata wins over whatever its pairs say.
        let applied = encode(&meta.last_log_id).map_err(sm_err("install snapshot"))?;
        let membership = encode(&meta.last_membership).map_err(sm_err("install snapshot"))?;
        batch.insert(APPLIED, applied);
        batch.insert(MEMBERSHIP, membership);
        self.tree
            .apply_batch(batch)
            .map_err(sm_err("install snapshot"))?;
        self.durable
            .sync()
            .await
            .map_err(sm_err("install snapshot"))?;
        if let Some(last) = meta.last_log_id {
            self.applied.send_replace(last.index);
        }
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        let file = self.snapshot_file.clone();
        tokio::task::spawn_blocking(move || file.save(&stored))
            .await
            .map_err(snap_err("save"))??;
        crate::metrics::observe(&METRICS.snapshot_install_seconds, started.elapsed());
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(self.snapshot_file.load()?.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Cursor::new(s.data),
        }))
    }
}

pub struct SnapshotBuilder {
    pairs: Result<SnapshotPairs, sled::Error>,
    snapshot_file: SnapshotFile,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let started = std::time::Instant::now();
        let pairs =
            std::mem::replace(&mut self.pairs, Ok(Vec::new())).map_err(snap_err("copy tree"))?;
        let (last_log_id, last_membership) =
            applied_from(|key| Ok(pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())))?;
        // 0.10 identifies a snapshot by the last log id it covers: no id to invent.
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: encode(&pairs).map_err(snap_err("encode"))?,
        };
        let file = self.snapshot_file.clone();
        let stored = tokio::task::spawn_blocking(move || file.save(&stored).map(|()| stored))
            .await
            .map_err(snap_err("save"))??;
        METRICS.snapshot_bytes.set(stored.data.len() as i64);
        crate::metrics::observe(&METRICS.snapshot_build_seconds, started.elapsed());
        tracing::info!(%meta, bytes = stored.data.len(), "built snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Cursor::new(stored.data),
        })
    }
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
        let file = SnapshotFile::open(dir.join("snapshot")).expect("snapshot file");
        let sm = StateMachine::open(durable, file.clone(), Retention::default()).expect("sm");
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
