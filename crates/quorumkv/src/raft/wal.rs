//! What the `raft-log` crate (the write-ahead log Databend's meta service runs
//! openraft on) needs of our types: its [`Types`], a codec for each, and the
//! callback its flush thread fires once a batch has passed `fdatasync`.
//!
//! Log ids and votes are bincode behind a length; a payload is the whole
//! entry, already encoded, so the log's cache and a read hand back a cheap
//! clone of the bytes and the entry is decoded once, by whoever reads it.

use std::io::{self, Read, Write};
use std::time::Instant;

use bytes::Bytes;
use openraft::storage::IOFlushed;
use raft_log::codeq::{Decode, Encode};
use tokio::sync::oneshot;

use crate::metrics::{observe, METRICS};
use crate::raft::{decode, encode, LogId, TypeConfig, Vote};

/// A log flush slower than this is logged as a warning.
const SLOW_FLUSH: std::time::Duration = std::time::Duration::from_millis(100);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalTypes;

impl raft_log::Types for WalTypes {
    type LogId = WalLogId;
    type LogPayload = Payload;
    type Vote = WalVote;
    type Callback = Flushed;
    type UserData = ();

    fn log_index(log_id: &WalLogId) -> u64 {
        log_id.0.index
    }

    fn payload_size(payload: &Payload) -> u64 {
        payload.0.len() as u64
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct WalLogId(pub LogId);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd)]
pub struct WalVote(pub Vote);

/// One encoded [`crate::raft::Entry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload(pub Bytes);

/// `len: u32` then the bytes.
fn write_framed<W: Write>(mut w: W, bytes: &[u8]) -> io::Result<usize> {
    let len = u32::try_from(bytes.len()).map_err(|_| io::Error::other("log record over 4 GiB"))?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(bytes)?;
    Ok(4 + bytes.len())
}

fn read_framed<R: Read>(mut r: R) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let mut bytes = vec![0u8; u32::from_be_bytes(len) as usize];
    r.read_exact(&mut bytes)?;
    Ok(bytes)
}

fn bincode_io(e: bincode::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl Encode for WalLogId {
    fn encode<W: Write>(&self, w: W) -> io::Result<usize> {
        write_framed(w, &encode(&self.0).map_err(bincode_io)?)
    }
}

impl Decode for WalLogId {
    fn decode<R: Read>(r: R) -> io::Result<Self> {
        decode(&read_framed(r)?).map(WalLogId).map_err(bincode_io)
    }
}

impl Encode for WalVote {
    fn encode<W: Write>(&self, w: W) -> io::Result<usize> {
        write_framed(w, &encode(&self.0).map_err(bincode_io)?)
    }
}

impl Decode for WalVote {
    fn decode<R: Read>(r: R) -> io::Result<Self> {
        decode(&read_framed(r)?).map(WalVote).map_err(bincode_io)
    }
}

impl Encode for Payload {
    fn encode<W: Write>(&self, w: W) -> io::Result<usize> {
        write_framed(w, &self.0)
    }
}

impl Decode for Payload {
    fn decode<R: Read>(r: R) -> io::Result<Self> {
        read_framed(r).map(|b| Payload(b.into()))
    }
}

/// Fired by raft-log's flush thread once the write it was queued with (and
/// everything before it) has passed `fdatasync`, or failed.
pub enum Flushed {
    /// An append: tells openraft the entries are durable.
    Append {
        callback: IOFlushed<TypeConfig>,
        queued: Instant,
    },
    /// A vote, a truncation or a purge, awaited by the caller.
    Wait(oneshot::Sender<io::Result<()>>),
}

impl Flushed {
    pub fn append(callback: IOFlushed<TypeConfig>) -> Self {
        Flushed::Append {
            callback,
            queued: Instant::now(),
        }
    }
}

impl raft_log::Callback for Flushed {
    fn send(self, res: io::Result<()>) {
        match self {
            Flushed::Append { callback, queued } => {
                let took = queued.elapsed();
                observe(&METRICS.fsync_seconds, took);
                if took > SLOW_FLUSH {
                    tracing::warn!(took_ms = took.as_millis() as u64, "slow log flush");
                }
                if let Err(e) = &res {
                    tracing::error!("log flush failed: {e}");
                }
                callback.io_completed(res);
            }
            Flushed::Wait(tx) => {
                let _ = tx.send(res);
            }
        }
    }
}
