//! Snapshot files: their format, a streaming writer and reader, and the slot
//! `<data-dir>/snapshot` that holds the newest one.
//!
//! A snapshot is every raw pair of the state machine's tree as of one log
//! index, in key order, written and read a frame at a time so that neither
//! side ever holds more than a frame (about 1 MiB) of it in memory:
//!
//! ```text
//! "QKVSNAP2" | meta length (u32 BE) | meta (bincode SnapshotMeta)
//! frames: length (u32 BE, > 0) | bincode Vec<(key, value)>
//! end:    0 (u32) | pair count (u64 BE) | SHA-256 of every byte before it
//! ```
//!
//! The same file is the backup format (`GET /v1/snapshot` sends it byte for
//! byte) and the payload of `/raft/snapshot`; a reader refuses a truncated,
//! padded or corrupt one.
//!
//! The slot is replaced atomically (temp file, fsync, rename, fsync dir) and
//! only by a newer snapshot, so a slow build cannot overwrite a snapshot
//! installed meanwhile. It tells the log store how far the file on disk
//! reaches ([`SnapshotFile::covered`]): log entries may be purged only behind
//! it (or behind the state machine).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ring::digest::{Context, SHA256};
use tokio::sync::watch;
use tokio_util::io::ReaderStream;

use crate::raft::{decode, encode, storage_err, LogId, SnapshotMeta, StorageError};
use crate::sm::Pairs;

pub const MAGIC: &[u8; 8] = b"QKVSNAP2";
/// The metadata holds the membership: node ids and URLs.
const MAX_META_BYTES: u32 = 1 << 20;
/// A writer closes a frame once it passes this many bytes of pairs.
pub const FRAME_TARGET_BYTES: usize = 1 << 20;
/// A writer syncs what it wrote every this many bytes, so that the disk never
/// holds a large backlog that the Raft log's next fdatasync would wait behind.
const SYNC_EVERY_BYTES: u64 = 1 << 20;
/// A reader refuses a longer frame (one pair is at most a key and a value of
/// the request limits, far below this).
const MAX_FRAME_BYTES: u32 = 64 << 20;
const TRAILER: usize = 8 + 32;

pub fn snap_err<E: std::error::Error + Send + Sync + 'static>(
    what: &'static str,
) -> impl FnOnce(E) -> StorageError {
    move |e| storage_err(format_args!("snapshot {what}"), e)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// What a finished snapshot file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub bytes: u64,
    pub pairs: u64,
    pub sha256: [u8; 32],
}

/// Writes a snapshot file a frame at a time.
pub struct Writer {
    out: BufWriter<File>,
    hash: Context,
    frame: Pairs,
    frame_bytes: usize,
    pairs: u64,
    bytes: u64,
    synced: u64,
}

impl Writer {
    pub fn create(path: &Path, meta: &SnapshotMeta) -> io::Result<Writer> {
        let mut w = Writer {
            out: BufWriter::with_capacity(256 * 1024, File::create(path)?),
            hash: Context::new(&SHA256),
            frame: Vec::new(),
            frame_bytes: 0,
            pairs: 0,
            bytes: 0,
            synced: 0,
        };
        let meta = encode(meta).map_err(|e| invalid(format!("encode meta: {e}")))?;
        w.put(MAGIC)?;
        w.put(&(meta.len() as u32).to_be_bytes())?;
        w.put(&meta)?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hash.update(bytes);
        self.bytes += bytes.len() as u64;
        self.out.write_all(bytes)
    }

    /// Adds one pair; pairs must come in key order.
    pub fn push(&mut self, key: Vec<u8>, value: Vec<u8>) -> io::Result<()> {
        self.frame_bytes += key.len() + value.len() + 16;
        self.frame.push((key, value));
        if self.frame_bytes >= FRAME_TARGET_BYTES {
            self.flush_frame()?;
        }
        Ok(())
    }

    fn flush_frame(&mut self) -> io::Result<()> {
        if self.frame.is_empty() {
            return Ok(());
        }
        let frame = encode(&self.frame).map_err(|e| invalid(format!("encode frame: {e}")))?;
        self.put(&(frame.len() as u32).to_be_bytes())?;
        self.put(&frame)?;
        self.pairs += self.frame.len() as u64;
        self.frame.clear();
        self.frame_bytes = 0;
        if self.bytes - self.synced >= SYNC_EVERY_BYTES {
            self.out.flush()?;
            self.out.get_ref().sync_data()?;
            self.synced = self.bytes;
        }
        Ok(())
    }

    /// Writes the last frame and the trailer and syncs the file.
    pub fn finish(mut self) -> io::Result<Summary> {
        self.flush_frame()?;
        self.put(&0u32.to_be_bytes())?;
        let count = self.pairs.to_be_bytes();
        self.put(&count)?;
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(self.hash.clone().finish().as_ref());
        self.out.write_all(&sha256)?;
        self.bytes += 32;
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(Summary {
            bytes: self.bytes,
            pairs: self.pairs,
            sha256,
        })
    }
}

/// Reads a snapshot file a frame at a time, checking its framing as it goes
/// and its checksum at the end: the last [`Reader::next_frame`] (the one that
/// returns `None`) fails if anything was damaged.
pub struct Reader<R> {
    input: R,
    hash: Context,
    meta: SnapshotMeta,
    pairs: u64,
    bytes: u64,
    summary: Option<Summary>,
}

impl<R: Read> Reader<R> {
    /// Reads the header and the metadata.
    pub fn new(input: R) -> io::Result<Reader<R>> {
        let mut r = Reader {
            input,
            hash: Context::new(&SHA256),
            meta: SnapshotMeta::default(),
            pairs: 0,
            bytes: 0,
            summary: None,
        };
        let mut magic = [0u8; 8];
        r.take(&mut magic)
            .map_err(|_| invalid("not a quorumkv snapshot: too short".into()))?;
        if &magic != MAGIC {
            return Err(invalid(format!(
                "not a quorumkv snapshot (no {} header)",
                String::from_utf8_lossy(MAGIC)
            )));
        }
        let len = r.u32()?;
        if len > MAX_META_BYTES {
            return Err(invalid(format!("snapshot metadata of {len} bytes")));
        }
        let meta = r.exactly(len as usize)?;
        r.meta = decode(&meta).map_err(|e| invalid(format!("snapshot metadata: {e}")))?;
        Ok(r)
    }

    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    fn take(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.input.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                invalid(format!(
                    "truncated snapshot: it ends after {} bytes",
                    self.bytes
                ))
            } else {
                e
            }
        })?;
        self.hash.update(buf);
        self.bytes += buf.len() as u64;
        Ok(())
    }

    fn u32(&mut self) -> io::Result<u32> {
        let mut b = [0u8; 4];
        self.take(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    fn exactly(&mut self, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.take(&mut buf)?;
        Ok(buf)
    }

    /// The next frame of pairs, or `None` after the trailer checked out.
    pub fn next_frame(&mut self) -> io::Result<Option<Pairs>> {
        if self.summary.is_some() {
            return Ok(None);
        }
        let len = self.u32()?;
        if len == 0 {
            return self.finish().map(|_| None);
        }
        if len > MAX_FRAME_BYTES {
            return Err(invalid(format!(
                "corrupt snapshot: a frame of {len} bytes (limit {MAX_FRAME_BYTES})"
            )));
        }
        let frame = self.exactly(len as usize)?;
        let pairs: Pairs =
            decode(&frame).map_err(|e| invalid(format!("corrupt snapshot frame: {e}")))?;
        self.pairs += pairs.len() as u64;
        Ok(Some(pairs))
    }

    fn finish(&mut self) -> io::Result<Summary> {
        let mut count = [0u8; 8];
        self.take(&mut count)?;
        let expected: [u8; 32] = {
            let mut b = [0u8; 32];
            self.input
                .read_exact(&mut b)
                .map_err(|_| invalid("truncated snapshot: the checksum is missing".to_string()))?;
            b
        };
        self.bytes += 32;
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(self.hash.clone().finish().as_ref());
        if sha256 != expected {
            return Err(invalid(
                "checksum mismatch: the snapshot is corrupt".to_string(),
            ));
        }
        if u64::from_be_bytes(count) != self.pairs {
            return Err(invalid("corrupt snapshot: pair count mismatch".into()));
        }
        let mut extra = [0u8; 1];
        if self.input.read(&mut extra)? != 0 {
            return Err(invalid("padded snapshot: bytes after its checksum".into()));
        }
        let summary = Summary {
            bytes: self.bytes,
            pairs: self.pairs,
            sha256,
        };
        self.summary = Some(summary);
        Ok(summary)
    }
}

/// Reads the whole file at `path`, checking it; its metadata and summary.
pub fn verify(path: &Path) -> io::Result<(SnapshotMeta, Summary)> {
    let mut r = Reader::new(BufReader::with_capacity(256 * 1024, File::open(path)?))?;
    while r.next_frame()?.is_some() {}
    let summary = r.summary.ok_or_else(|| invalid("no trailer".into()))?;
    Ok((r.meta.clone(), summary))
}

/// The checksum in a whole snapshot file's last 32 bytes.
pub fn checksum_of(file: &mut File) -> io::Result<[u8; 32]> {
    use std::io::{Seek, SeekFrom};
    let len = file.metadata()?.len();
    if len < TRAILER as u64 {
        return Err(invalid("truncated snapshot".into()));
    }
    file.seek(SeekFrom::Start(len - 32))?;
    let mut sum = [0u8; 32];
    file.read_exact(&mut sum)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(sum)
}

/// A snapshot file as openraft and the network carry it: an open handle to
/// an immutable file (a replaced slot file stays readable through it).
#[derive(Debug)]
pub struct SnapshotData {
    pub file: File,
}

impl SnapshotData {
    pub fn open(path: &Path) -> io::Result<SnapshotData> {
        Ok(SnapshotData {
            file: File::open(path)?,
        })
    }

    /// The whole file as a byte stream from its start, and its length.
    pub fn into_stream(mut self) -> io::Result<(u64, ReaderStream<tokio::fs::File>)> {
        use std::io::{Seek, SeekFrom};
        self.file.seek(SeekFrom::Start(0))?;
        let len = self.file.metadata()?.len();
        let file = tokio::fs::File::from_std(self.file);
        Ok((len, ReaderStream::with_capacity(file, 256 * 1024)))
    }

    /// A reader from the file's start.
    pub fn reader(&self) -> io::Result<Reader<BufReader<File>>> {
        use std::io::{Seek, SeekFrom};
        let mut file = self.file.try_clone()?;
        file.seek(SeekFrom::Start(0))?;
        Reader::new(BufReader::with_capacity(256 * 1024, file))
    }
}

/// The slot's file name in the data dir.
pub const SLOT: &str = "snapshot";

/// A fresh temp path beside the slot at `slot`, for a snapshot being written
/// or received (the slot's next open removes it if a crash leaves it).
pub fn temp_beside(slot: &Path) -> PathBuf {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let mut name = slot.file_name().unwrap_or_default().to_owned();
    name.push(format!(".tmp.{}.{n}", std::process::id()));
    slot.with_file_name(name)
}

/// The slot `<data-dir>/snapshot`: the newest snapshot on disk.
#[derive(Clone)]
pub struct SnapshotFile {
    path: PathBuf,
    lock: Arc<Mutex<()>>,
    /// The last log id of the snapshot on disk.
    covered: Arc<watch::Sender<Option<LogId>>>,
}

impl SnapshotFile {
    /// Opens `path`, reading only the metadata of the snapshot there, if
    /// any, and removing temp files a crash left beside it.
    pub fn open(path: PathBuf) -> Result<Self, StorageError> {
        let meta: Option<SnapshotMeta> = match File::open(&path) {
            Ok(f) => Some(
                Reader::new(BufReader::new(f))
                    .map_err(|e| {
                        storage_err(
                            format_args!(
                                "{} (written by a quorumkv older than 2026-12-03? wipe the data dir)",
                                path.display()
                            ),
                            e,
                        )
                    })?
                    .meta
                    .clone(),
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(snap_err("read")(e)),
        };
        let slot = SnapshotFile {
            path,
            lock: Arc::new(Mutex::new(())),
            covered: Arc::new(watch::Sender::new(meta.and_then(|m| m.last_log_id))),
        };
        slot.remove_temp_files();
        Ok(slot)
    }

    fn remove_temp_files(&self) {
        let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name()) else {
            return;
        };
        let prefix = format!("{}.tmp.", name.to_string_lossy());
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// A fresh temp path beside the slot, for a snapshot being written.
    pub fn temp_path(&self) -> PathBuf {
        temp_beside(&self.path)
    }

    /// The last log id the snapshot on disk includes.
    pub fn covered(&self) -> Option<LogId> {
        *self.covered.borrow()
    }

    /// The snapshot in the slot, if any.
    pub fn current(&self) -> Result<Option<(SnapshotMeta, SnapshotData)>, StorageError> {
        let _guard = self.lock.lock();
        let data = match SnapshotData::open(&self.path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(snap_err("read")(e)),
        };
        let meta = data.reader().map_err(snap_err("read"))?.meta.clone();
        Ok(Some((meta, data)))
    }

    /// Makes the finished, synced file at `temp` the slot's snapshot unless
    /// the slot already holds a newer one (then `temp` is removed). Blocking.
    pub fn publish(&self, temp: &Path, meta: &SnapshotMeta) -> Result<bool, StorageError> {
        let _guard = self.lock.lock();
        if self.covered() > meta.last_log_id {
            let _ = std::fs::remove_file(temp);
            return Ok(false);
        }
        let io = || -> io::Result<()> {
            std::fs::rename(temp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        io().map_err(snap_err("write"))?;
        crate::raft::raise(&self.covered, meta.last_log_id);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, pairs: &[(&str, &str)]) -> (PathBuf, Summary) {
        let path = dir.join("s");
        let mut w = Writer::create(&path, &SnapshotMeta::default()).unwrap();
        for (k, v) in pairs {
            w.push(k.as_bytes().to_vec(), v.as_bytes().to_vec())
                .unwrap();
        }
        (path.clone(), w.finish().unwrap())
    }

    #[test]
    fn a_written_file_reads_back_and_any_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let big = "v".repeat(FRAME_TARGET_BYTES / 3);
        let pairs: Vec<(String, String)> =
            (0..10).map(|i| (format!("k{i}"), big.clone())).collect();
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        let (path, summary) = write(dir.path(), &refs);
        assert_eq!(summary.pairs, 10);
        let (_, checked) = verify(&path).unwrap();
        assert_eq!(checked, summary);
        let mut frames = 0;
        let mut r = SnapshotData::open(&path).unwrap().reader().unwrap();
        while let Some(f) = r.next_frame().unwrap() {
            assert!(!f.is_empty());
            frames += 1;
        }
        assert!(frames >= 3, "written in several frames, got {frames}");

        let bytes = std::fs::read(&path).unwrap();
        let damaged = |b: &[u8]| {
            let p = dir.path().join("d");
            std::fs::write(&p, b).unwrap();
            verify(&p).unwrap_err().to_string()
        };
        let mut flipped = bytes.clone();
        flipped[bytes.len() / 2] ^= 1;
        let e = damaged(&flipped);
        assert!(e.contains("corrupt") || e.contains("checksum"), "{e}");
        assert!(damaged(&bytes[..bytes.len() - 1]).contains("truncated"));
        assert!(damaged(&bytes[..bytes.len() / 2]).contains("truncated"));
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(damaged(&padded).contains("padded"));
        assert!(damaged(b"hello").contains("not a quorumkv snapshot"));
    }

    #[test]
    fn the_slot_keeps_the_newest_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let slot = SnapshotFile::open(dir.path().join("snapshot")).unwrap();
        assert!(slot.current().unwrap().is_none());
        let meta = |i| SnapshotMeta {
            last_log_id: Some(openraft::testing::log_id::<crate::raft::TypeConfig>(
                1, 1, i,
            )),
            ..Default::default()
        };
        for (index, expect) in [(10, true), (5, false), (12, true)] {
            let temp = slot.temp_path();
            Writer::create(&temp, &meta(index))
                .unwrap()
                .finish()
                .unwrap();
            assert_eq!(slot.publish(&temp, &meta(index)).unwrap(), expect);
            assert!(!temp.exists());
        }
        assert_eq!(slot.covered().map(|l| l.index), Some(12));
        // A crash left a temp file: the next open removes it.
        std::fs::write(slot.temp_path(), b"partial").unwrap();
        let reopened = SnapshotFile::open(dir.path().join("snapshot")).unwrap();
        assert_eq!(reopened.covered().map(|l| l.index), Some(12));
        let (meta, _) = reopened.current().unwrap().unwrap();
        assert_eq!(meta.last_log_id.map(|l| l.index), Some(12));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
