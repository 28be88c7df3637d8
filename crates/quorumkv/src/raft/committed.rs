//! The committed log id, in a small file beside the log (`wal.committed`),
//! overwritten in place by every `save_committed` and never synced. A
//! `pwrite` reaches the page cache, so the record survives `kill -9` (not a
//! power cut). openraft saves the committed id before it applies the entries
//! up to it, and re-applies the log up to the saved id when the node starts
//! (`get_initial_state`). The state machine is written without syncs (sled's
//! buffer, [`redo`](crate::sm::redo)), so this is what brings a node killed
//! and restarted back to at least the state it served before, even alone:
//! eventual reads never go back on a node. A torn or missing record reads as
//! none; openraft then learns the commit point from the leader.
//!
//! Record: length (u32 LE), the bincode log id, CRC-32 of it (u32 LE).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::raft::{decode, encode, LogId};

/// The longest record read back (a log id takes ~30 bytes).
const MAX_RECORD: usize = 256;

pub struct CommittedFile {
    file: File,
}

impl CommittedFile {
    pub fn open(path: &Path) -> io::Result<CommittedFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Ok(CommittedFile { file })
    }

    /// Overwrites the record (no sync).
    pub fn save(&self, committed: Option<LogId>) -> io::Result<()> {
        let body = encode(&committed).map_err(io::Error::other)?;
        let mut record = Vec::with_capacity(body.len() + 8);
        record.extend_from_slice(&(body.len() as u32).to_le_bytes());
        record.extend_from_slice(&body);
        record.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        self.file.write_all_at(&record, 0)
    }

    /// The saved id; none if nothing was saved or the record is torn.
    pub fn load(&self) -> io::Result<Option<LogId>> {
        let mut buf = vec![0u8; MAX_RECORD];
        let mut read = 0;
        while read < buf.len() {
            match self.file.read_at(&mut buf[read..], read as u64)? {
                0 => break,
                n => read += n,
            }
        }
        let buf = &buf[..read];
        let Some(len) = buf
            .get(..4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()))
        else {
            return Ok(None);
        };
        let len = len as usize;
        let (Some(body), Some(crc)) = (buf.get(4..4 + len), buf.get(4 + len..8 + len)) else {
            return Ok(self.torn());
        };
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Ok(self.torn());
        }
        match decode::<Option<LogId>>(body) {
            Ok(committed) => Ok(committed),
            Err(_) => Ok(self.torn()),
        }
    }

    fn torn(&self) -> Option<LogId> {
        tracing::warn!("the saved committed log id is torn; learning it from the leader");
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::TypeConfig;

    fn log_id(term: u64, node: u64, index: u64) -> LogId {
        openraft::testing::log_id::<TypeConfig>(term, node, index)
    }

    #[test]
    fn the_last_saved_id_reads_back_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.committed");
        let f = CommittedFile::open(&path).unwrap();
        assert_eq!(f.load().unwrap(), None);
        f.save(Some(log_id(3, 1, 100_000))).unwrap();
        f.save(Some(log_id(4, 2, 7))).unwrap();
        drop(f);
        let f = CommittedFile::open(&path).unwrap();
        assert_eq!(f.load().unwrap(), Some(log_id(4, 2, 7)));
    }

    #[test]
    fn a_torn_record_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.committed");
        let f = CommittedFile::open(&path).unwrap();
        f.save(Some(log_id(4, 2, 7))).unwrap();
        let whole = std::fs::read(&path).unwrap();
        for cut in 0..whole.len() {
            std::fs::write(&path, &whole[..cut]).unwrap();
            assert_eq!(f.load().unwrap(), None, "cut at {cut}");
        }
        let mut flipped = whole.clone();
        flipped[6] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        assert_eq!(f.load().unwrap(), None);
    }
}
