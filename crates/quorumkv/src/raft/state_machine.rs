//! openraft's `RaftStateMachine` over the [`sm`](crate::sm) tree. Every apply
//! call is one atomic sled batch holding the data changes and the new
//! last-applied log id. Snapshots are a point-in-time copy of the tree.

use std::io::Cursor;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder};

use crate::command::CommandResult;
use crate::raft::durable::Durable;
use crate::raft::snapshot::{snap_err, SnapshotFile, SnapshotPairs, StoredSnapshot};
use crate::raft::{
    decode, encode, Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig,
};
use crate::sm::apply::Changes;
use crate::sm::idempotency::{self, Policy};
use crate::sm::reader::SmReader;
use crate::sm::{APPLIED, MEMBERSHIP};

pub struct StateMachine {
    durable: Durable,
    tree: sled::Tree,
    snapshot_file: SnapshotFile,
    snapshot_seq: u64,
    policy: Policy,
}

fn sm_err<E: std::error::Error + Send + Sync + 'static>(
    verb: ErrorVerb,
) -> impl FnOnce(E) -> StorageError {
    move |e| StorageError::from_io_error(ErrorSubject::StateMachine, verb, std::io::Error::other(e))
}

impl StateMachine {
    pub fn open(
        durable: Durable,
        snapshot_file: SnapshotFile,
        policy: Policy,
    ) -> Result<Self, sled::Error> {
        let tree = durable.db().open_tree("sm")?;
        Ok(StateMachine {
            durable,
            tree,
            snapshot_file,
            snapshot_seq: 0,
            policy,
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
        SmReader::new(self.tree.clone())
    }
}

/// Last-applied log id and membership, from raw pairs (the tree or a copy).
fn applied_from(
    get: impl Fn(&[u8]) -> Result<Option<Vec<u8>>, StorageError>,
) -> Result<(Option<LogId>, StoredMembership), StorageError> {
    let applied = match get(APPLIED)? {
        Some(b) => decode(&b).map_err(sm_err(ErrorVerb::Read))?,
        None => None,
    };
    let membership = match get(MEMBERSHIP)? {
        Some(b) => decode(&b).map_err(sm_err(ErrorVerb::Read))?,
        None => StoredMembership::default(),
    };
    Ok((applied, membership))
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        applied_from(|k| {
            Ok(self
                .tree
                .get(k)
                .map_err(sm_err(ErrorVerb::Read))?
                .map(|v| v.to_vec()))
        })
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<CommandResult>>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut changes = Changes::new(&self.tree, self.policy);
        let mut results = Vec::new();
        let mut last = None;
        for entry in entries {
            last = Some(entry.log_id);
            let result = match &entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(proposal) => proposal
                    .requests
                    .iter()
                    .map(|req| changes.apply(entry.log_id.index, req))
                    .collect::<Result<_, _>>()
                    .map_err(sm_err(ErrorVerb::Write))?,
                EntryPayload::Membership(m) => {
                    let stored = StoredMembership::new(Some(entry.log_id), m.clone());
                    let bytes = encode(&stored).map_err(sm_err(ErrorVerb::Write))?;
                    changes.set_raw(MEMBERSHIP.to_vec(), bytes);
                    Vec::new()
                }
            };
            results.push(result);
        }
        if let Some(last) = last {
            let bytes = encode(&Some(last)).map_err(sm_err(ErrorVerb::Write))?;
            changes.set_raw(APPLIED.to_vec(), bytes);
        }
        self.tree
            .apply_batch(changes.into_batch())
            .map_err(sm_err(ErrorVerb::Write))?;
        idempotency::collect_garbage(&self.tree, self.policy).map_err(sm_err(ErrorVerb::Write))?;
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        // Called between applies: copy the tree now so the build sees one index.
        self.snapshot_seq += 1;
        let pairs = self
            .tree
            .iter()
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<Result<SnapshotPairs, _>>();
        SnapshotBuilder {
            pairs,
            snapshot_file: self.snapshot_file.clone(),
            seq: self.snapshot_seq,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        tracing::info!(%meta, "installing snapshot");
        let data = snapshot.into_inner();
        let pairs: SnapshotPairs = decode(&data).map_err(snap_err(ErrorVerb::Read))?;
        let mut batch = sled::Batch::default();
        for item in self.tree.iter() {
            let (k, _) = item.map_err(sm_err(ErrorVerb::Write))?;
            batch.remove(k);
        }
        for (k, v) in pairs {
            batch.insert(k, v);
        }
        // The snapshot's own metadata wins over whatever its pairs say.
        let applied = encode(&meta.last_log_id).map_err(sm_err(ErrorVerb::Write))?;
        let membership = encode(&meta.last_membership).map_err(sm_err(ErrorVerb::Write))?;
        batch.insert(APPLIED, applied);
        batch.insert(MEMBERSHIP, membership);
        self.tree
            .apply_batch(batch)
            .map_err(sm_err(ErrorVerb::Write))?;
        self.durable
            .sync()
            .await
            .map_err(sm_err(ErrorVerb::Write))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        let file = self.snapshot_file.clone();
        tokio::task::spawn_blocking(move || file.save(&stored))
            .await
            .map_err(snap_err(ErrorVerb::Write))?
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(self.snapshot_file.load()?.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

pub struct SnapshotBuilder {
    pairs: Result<SnapshotPairs, sled::Error>,
    snapshot_file: SnapshotFile,
    seq: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let pairs = std::mem::replace(&mut self.pairs, Ok(Vec::new()))
            .map_err(snap_err(ErrorVerb::Read))?;
        let (last_log_id, last_membership) =
            applied_from(|key| Ok(pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())))?;
        let snapshot_id = match &last_log_id {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, self.seq),
            None => format!("none-{}", self.seq),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: encode(&pairs).map_err(snap_err(ErrorVerb::Write))?,
        };
        let file = self.snapshot_file.clone();
        let stored = tokio::task::spawn_blocking(move || file.save(&stored).map(|()| stored))
            .await
            .map_err(snap_err(ErrorVerb::Write))??;
        tracing::info!(%meta, "built snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;

    fn log_id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    async fn open(dir: &std::path::Path) -> (StateMachine, SnapshotFile) {
        let durable = Durable::open(&dir.join("sm")).expect("open sled");
        let file = SnapshotFile::open(dir.join("snapshot")).expect("snapshot file");
        let sm = StateMachine::open(durable, file.clone(), Policy::default()).expect("sm");
        (sm, file)
    }

    async fn apply_up_to(sm: &mut StateMachine, index: u64) {
        let entry = Entry {
            log_id: log_id(index),
            payload: EntryPayload::Blank,
        };
        sm.apply([entry]).await.expect("apply");
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
        assert!(file.wait_covers(log_id(40), Duration::ZERO).await);
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
        let wait = file.wait_covers(log_id(1), Duration::from_millis(50));
        assert!(!wait.await, "nothing covers index 1");
    }
}
