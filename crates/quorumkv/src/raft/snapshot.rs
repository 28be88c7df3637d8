//! `<data-dir>/snapshot`: the newest snapshot with its metadata, replaced
//! atomically (temp file, fsync, rename, fsync dir) and only by a newer one,
//! so a slow build cannot overwrite a snapshot installed meanwhile.
//!
//! It also tells the log store how far the file on disk reaches
//! ([`SnapshotFile::covered`]): log entries may be purged only behind it (or
//! behind the state machine).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::raft::{decode, encode, storage_err, LogId, SnapshotMeta, StorageError};

/// What the snapshot file holds.
#[derive(Serialize, Deserialize)]
pub struct StoredSnapshot {
    pub meta: SnapshotMeta,
    pub data: Vec<u8>,
}

/// The snapshot payload: every raw pair of the state machine's tree.
pub type SnapshotPairs = Vec<(Vec<u8>, Vec<u8>)>;

pub fn snap_err<E: std::error::Error + Send + Sync + 'static>(
    what: &'static str,
) -> impl FnOnce(E) -> StorageError {
    move |e| storage_err(format_args!("snapshot {what}"), e)
}

#[derive(Clone)]
pub struct SnapshotFile {
    path: PathBuf,
    lock: Arc<Mutex<()>>,
    /// The last log id of the snapshot on disk.
    covered: Arc<watch::Sender<Option<LogId>>>,
}

impl SnapshotFile {
    /// Opens `path`, reading only the metadata of the snapshot there, if any.
    pub fn open(path: PathBuf) -> Result<Self, StorageError> {
        let meta: Option<SnapshotMeta> = match std::fs::File::open(&path) {
            // The metadata is the file's first field: no need to read the data.
            Ok(f) => Some(
                bincode::deserialize_from(std::io::BufReader::new(f)).map_err(snap_err("read"))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(snap_err("read")(e)),
        };
        let covered = meta.and_then(|m| m.last_log_id);
        Ok(SnapshotFile {
            path,
            lock: Arc::new(Mutex::new(())),
            covered: Arc::new(watch::Sender::new(covered)),
        })
    }

    /// The last log id the snapshot on disk includes.
    pub fn covered(&self) -> Option<LogId> {
        *self.covered.borrow()
    }

    pub fn load(&self) -> Result<Option<StoredSnapshot>, StorageError> {
        let _guard = self.lock.lock();
        self.load_unlocked()
    }

    fn load_unlocked(&self) -> Result<Option<StoredSnapshot>, StorageError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => Ok(Some(decode(&bytes).map_err(snap_err("read"))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(snap_err("read")(e)),
        }
    }

    /// Saves `snapshot` unless the file already holds a newer one. Blocking.
    pub fn save(&self, snapshot: &StoredSnapshot) -> Result<(), StorageError> {
        use std::io::Write;
        let _guard = self.lock.lock();
        if let Some(current) = self.load_unlocked()? {
            if current.meta.last_log_id > snapshot.meta.last_log_id {
                return Ok(());
            }
        }
        let bytes = encode(snapshot).map_err(snap_err("write"))?;
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
        io().map_err(snap_err("write"))?;
        self.covered.send_if_modified(|c| {
            let newer = *c < snapshot.meta.last_log_id;
            if newer {
                *c = snapshot.meta.last_log_id;
            }
            newer
        });
        Ok(())
    }
}
