//! `<data-dir>/snapshot`: the newest snapshot with its metadata, replaced
//! atomically (temp file, fsync, rename, fsync dir) and only by a newer one,
//! so a slow build cannot overwrite a snapshot installed meanwhile.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use openraft::{ErrorSubject, ErrorVerb};
use serde::{Deserialize, Serialize};

use crate::raft::{decode, encode, SnapshotMeta, StorageError};

/// What the snapshot file holds.
#[derive(Serialize, Deserialize)]
pub struct StoredSnapshot {
    pub meta: SnapshotMeta,
    pub data: Vec<u8>,
}

/// The snapshot payload: every raw pair of the state machine's tree.
pub type SnapshotPairs = Vec<(Vec<u8>, Vec<u8>)>;

pub fn snap_err<E: std::error::Error + Send + Sync + 'static>(
    verb: ErrorVerb,
) -> impl FnOnce(E) -> StorageError {
    move |e| {
        StorageError::from_io_error(ErrorSubject::Snapshot(None), verb, std::io::Error::other(e))
    }
}

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

    pub fn load(&self) -> Result<Option<StoredSnapshot>, StorageError> {
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

    /// Saves `snapshot` unless the file already holds a newer one. Blocking.
    pub fn save(&self, snapshot: &StoredSnapshot) -> Result<(), StorageError> {
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
