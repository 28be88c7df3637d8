//! Making sled's writes durable past the disk's write cache.
//!
//! sled 0.34's `flush_async` ends in `sync_file_range`, which survives `kill -9`
//! but not a power cut. [`Durable::sync`] follows it with an `fdatasync` of
//! sled's data file. The state machine's database is synced this way before
//! the log is purged behind it; the Raft log itself is not in sled (see
//! [`crate::raft::log_store`]).

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// A sled database plus a handle on its data file for `fdatasync`.
#[derive(Clone)]
pub struct Durable {
    db: sled::Db,
    data_file: Arc<File>,
}

impl Durable {
    /// Opens (or creates) the sled database in `dir` and fsyncs the directory.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::LowSpace)
            .open()
            .map_err(io::Error::other)?;
        let data_file = Arc::new(File::open(dir.join("db"))?);
        File::open(dir)?.sync_all()?;
        Ok(Durable { db, data_file })
    }

    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Flushes sled's buffers, then `fdatasync`s its data file.
    pub async fn sync(&self) -> io::Result<()> {
        self.db.flush_async().await.map_err(io::Error::other)?;
        let file = self.data_file.clone();
        tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(io::Error::other)?
    }
}
