//! The state machine on sled: one `sm` tree holding the user's keys (prefix
//! `d`, value = modification index + bytes) and its own metadata (prefix `m`:
//! last-applied log id, membership). Every apply of a batch of entries is one
//! atomic sled batch, so data and last-applied change together.
//! Snapshots are a point-in-time copy of the tree, kept in `<data-dir>/snapshot`.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};

use crate::kv::{Command, CommandResult, Pair};
use crate::raft::durable::Durable;
use crate::raft::{
    decode, encode, Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig,
};

const APPLIED: &[u8] = b"m:applied";
const MEMBERSHIP: &[u8] = b"m:membership";
const DATA: u8 = b'd';

/// A stored value with the index of the log entry that last wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub mod_index: u64,
    pub value: Vec<u8>,
}

impl Versioned {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(8 + self.value.len());
        b.extend_from_slice(&self.mod_index.to_be_bytes());
        b.extend_from_slice(&self.value);
        b
    }

    fn decode(b: &[u8]) -> Option<Self> {
        let (idx, value) = b.split_at_checked(8)?;
        Some(Versioned {
            mod_index: u64::from_be_bytes(idx.try_into().ok()?),
            value: value.to_vec(),
        })
    }
}

fn data_key(key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(DATA);
    k.extend_from_slice(key.as_bytes());
    k
}

/// Read access to applied state; cheap to clone, safe to use from any task.
#[derive(Clone)]
pub struct SmReader {
    tree: sled::Tree,
}

impl SmReader {
    /// The last applied log index (0 before anything is applied).
    pub fn applied_index(&self) -> Result<u64, sled::Error> {
        let raw = self.tree.get(APPLIED)?;
        Ok(raw
            .and_then(|b| decode::<Option<LogId>>(&b).ok().flatten())
            .map_or(0, |l| l.index))
    }

    /// Runs `read` so that it sees exactly the state at the returned applied index:
    /// retried while an apply lands between the two reads of the applied index.
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

pub struct StateMachine {
    durable: Durable,
    tree: sled::Tree,
    snapshot_file: SnapshotFile,
    snapshot_seq: u64,
}

/// What `<data-dir>/snapshot` holds.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// The snapshot payload: every raw pair of the `sm` tree.
type SnapshotPairs = Vec<(Vec<u8>, Vec<u8>)>;

impl StateMachine {
    pub fn open(durable: Durable, snapshot_path: PathBuf) -> Result<Self, sled::Error> {
        let tree = durable.db().open_tree("sm")?;
        Ok(StateMachine {
            durable,
            tree,
            snapshot_file: SnapshotFile::new(snapshot_path),
            snapshot_seq: 0,
        })
    }

    pub fn reader(&self) -> SmReader {
        SmReader {
            tree: self.tree.clone(),
        }
    }

    fn read_applied(&self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let applied = match self.tree.get(APPLIED).map_err(sm_err(ErrorVerb::Read))? {
            Some(b) => decode(&b).map_err(sm_err(ErrorVerb::Read))?,
            None => None,
        };
        let membership = match self.tree.get(MEMBERSHIP).map_err(sm_err(ErrorVerb::Read))? {
            Some(b) => decode(&b).map_err(sm_err(ErrorVerb::Read))?,
            None => StoredMembership::default(),
        };
        Ok((applied, membership))
    }
}

fn sm_err<E: std::error::Error + Send + Sync + 'static>(
    verb: ErrorVerb,
) -> impl FnOnce(E) -> StorageError {
    move |e| StorageError::from_io_error(ErrorSubject::StateMachine, verb, std::io::Error::other(e))
}

fn snap_err<E: std::error::Error + Send + Sync + 'static>(
    verb: ErrorVerb,
) -> impl FnOnce(E) -> StorageError {
    move |e| {
        StorageError::from_io_error(ErrorSubject::Snapshot(None), verb, std::io::Error::other(e))
    }
}

/// `<data-dir>/snapshot`: the newest snapshot, replaced atomically and only by a
/// newer one (a slow build must not overwrite a snapshot installed meanwhile).
#[derive(Clone)]
pub struct SnapshotFile {
    path: PathBuf,
    lock: Arc<Mutex<()>>,
}

impl SnapshotFile {
    pub fn new(path: PathBuf) -> Self {
        SnapshotFile {
            path,
            lock: Arc::new(Mutex::new(())),
        }
    }

    fn load(&self) -> Result<Option<StoredSnapshot>, StorageError> {
        let _guard = self.lock.lock();
        self.load_unlocked()
    }

    fn load_unlocked(&self) -> Result<Option<StoredSnapshot>, StorageError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => Ok(Some(decode(&bytes).map_err(snap_err(ErrorVerb::Read))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(snap_err(ErrorVerb::Read)(e)),
        }
    }

    /// Temp file, fsync, rename, fsync dir — unless a newer snapshot is there.
    fn save(&self, snapshot: &StoredSnapshot) -> Result<(), StorageError> {
        use std::io::Write;
        let _guard = self.lock.lock();
        if let Some(current) = self.load_unlocked()? {
            if current.meta.last_log_id > snapshot.meta.last_log_id {
                return Ok(());
            }
        }
        let bytes = encode(snapshot).map_err(snap_err(ErrorVerb::Write))?;
        let io = || -> std::io::Result<()> {
            let tmp = self.path.with_extension("tmp");
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        io().map_err(snap_err(ErrorVerb::Write))
    }
}

/// Pending writes of one apply batch, read through to the tree.
struct Overlay<'a> {
    tree: &'a sled::Tree,
    pending: HashMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Overlay<'_> {
    fn exists(&self, k: &[u8]) -> Result<bool, sled::Error> {
        match self.pending.get(k) {
            Some(v) => Ok(v.is_some()),
            None => self.tree.contains_key(k),
        }
    }

    fn set(&mut self, k: Vec<u8>, v: Option<Vec<u8>>) {
        self.pending.insert(k, v);
    }

    fn into_batch(self) -> sled::Batch {
        let mut batch = sled::Batch::default();
        for (k, v) in self.pending {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        batch
    }
}

fn apply_command(
    overlay: &mut Overlay<'_>,
    index: u64,
    cmd: &Command,
) -> Result<CommandResult, sled::Error> {
    Ok(match cmd {
        Command::Put { key, value } => {
            let record = Versioned {
                mod_index: index,
                value: value.clone(),
            };
            overlay.set(data_key(key.as_str()), Some(record.encode()));
            CommandResult::Put
        }
        Command::Delete { key } => {
            let k = data_key(key.as_str());
            let existed = overlay.exists(&k)?;
            overlay.set(k, None);
            CommandResult::Delete { existed }
        }
    })
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        self.read_applied()
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut overlay = Overlay {
            tree: &self.tree,
            pending: HashMap::new(),
        };
        let mut results = Vec::new();
        let mut last = None;
        for entry in entries {
            last = Some(entry.log_id);
            let result = match &entry.payload {
                EntryPayload::Blank => CommandResult::None,
                EntryPayload::Normal(req) => {
                    apply_command(&mut overlay, entry.log_id.index, &req.command)
                        .map_err(sm_err(ErrorVerb::Write))?
                }
                EntryPayload::Membership(m) => {
                    let stored = StoredMembership::new(Some(entry.log_id), m.clone());
                    let bytes = encode(&stored).map_err(sm_err(ErrorVerb::Write))?;
                    overlay.set(MEMBERSHIP.to_vec(), Some(bytes));
                    CommandResult::None
                }
            };
            results.push(result);
        }
        if let Some(last) = last {
            let bytes = encode(&Some(last)).map_err(sm_err(ErrorVerb::Write))?;
            overlay.set(APPLIED.to_vec(), Some(bytes));
        }
        self.tree
            .apply_batch(overlay.into_batch())
            .map_err(sm_err(ErrorVerb::Write))?;
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
        let find = |key: &[u8]| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let last_log_id: Option<LogId> = match find(APPLIED) {
            Some(b) => decode(&b).map_err(snap_err(ErrorVerb::Read))?,
            None => None,
        };
        let last_membership: StoredMembership = match find(MEMBERSHIP) {
            Some(b) => decode(&b).map_err(snap_err(ErrorVerb::Read))?,
            None => StoredMembership::default(),
        };
        let snapshot_id = match &last_log_id {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, self.seq),
            None => format!("none-{}", self.seq),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        let data = encode(&pairs).map_err(snap_err(ErrorVerb::Write))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
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
