//! Making sled's writes durable past the disk's write cache.
//!
//! sled 0.34's `flush_async` ends in `sync_file_range`, which survives `kill -9`
//! but not a power cut. After every flush we `fdatasync` sled's data file, so an
//! acknowledged append or vote is on the platter. Appends share flushes (group
//! commit): `append` writes its entries into sled and hands openraft's
//! `IOFlushed` callback to the [`Flusher`]; that task takes every callback
//! queued while the previous flush ran and, after one flush + fdatasync that
//! began after they were queued, fires them in the order they were appended.
//! openraft 0.10 does not wait for them: it replicates the entries meanwhile
//! and counts the leader's own copy only once its callback fired.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;

use openraft::storage::IOFlushed;
use tokio::sync::mpsc;

use crate::raft::TypeConfig;

/// A log flush slower than this is logged as a warning.
const SLOW_FLUSH: std::time::Duration = std::time::Duration::from_millis(100);

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

    /// Starts the group-commit task; appends hand it their callbacks.
    pub fn start_flusher(&self) -> Flusher {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(flush_loop(self.clone(), rx));
        Flusher { tx }
    }
}

/// Queue of append callbacks waiting for the next flush.
#[derive(Clone)]
pub struct Flusher {
    tx: mpsc::UnboundedSender<IOFlushed<TypeConfig>>,
}

impl Flusher {
    /// Acknowledges `callback` after a flush that began after this call.
    pub fn after_next_flush(&self, callback: IOFlushed<TypeConfig>) -> io::Result<()> {
        self.tx
            .send(callback)
            .map_err(|_| io::Error::other("log flusher stopped"))
    }
}

async fn flush_loop(durable: Durable, mut rx: mpsc::UnboundedReceiver<IOFlushed<TypeConfig>>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 4096).await > 0 {
        let started = std::time::Instant::now();
        let result = durable.sync().await;
        let took = started.elapsed();
        crate::metrics::observe(&crate::metrics::METRICS.fsync_seconds, took);
        if took > SLOW_FLUSH {
            tracing::warn!(
                took_ms = took.as_millis() as u64,
                entries = batch.len(),
                "slow log flush"
            );
        }
        if let Err(e) = &result {
            tracing::error!("log flush failed: {e}");
        }
        for cb in batch.drain(..) {
            let r = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            };
            cb.io_completed(r);
        }
    }
}
