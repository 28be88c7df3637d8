//! The state machine's data, independent of Raft: how it is laid out in its
//! sled tree, how commands apply to it, and how it is read.
//!
//! One tree, `sm`, prefixed keys:
//! - `d<key>`: a user key's [`Versioned`](crate::kv::Versioned) value;
//! - `m:applied`, `m:membership`: last-applied log id and membership (Raft's);
//! - `m:clock`, `m:idem_seq`: the idempotency clock and record counter;
//! - `m:data_bytes`: bytes of user keys and values stored (the disk quota's measure);
//! - `i<idempotency key>`: a recorded result; `t<seq>`: records in creation order;
//! - `w<index><seq>`, `m:watch_floor`, `m:watch_len`: the change history ([`history`]);
//! - `l<id>`, `a<id><key>`, `o<key>`: leases and their keys ([`lease`]).
//!
//! Beside it, the tree `sm:redo` holds the changes of an apply being written
//! ([`redo`]).
//!
//! Snapshots read the tree through a [`capture`] while applies go on.

pub mod apply;
pub mod capture;
pub mod history;
pub mod idempotency;
pub mod lease;
pub mod reader;
pub mod redo;
pub mod tree;

/// The first sled tree of the state machine (in the `sm` database); an
/// install switches to another ([`tree`]).
pub const TREE: &str = "sm";
pub const APPLIED: &[u8] = b"m:applied";
pub const MEMBERSHIP: &[u8] = b"m:membership";
pub const CLOCK: &[u8] = b"m:clock";
pub const IDEM_SEQ: &[u8] = b"m:idem_seq";
pub const DATA_BYTES: &[u8] = b"m:data_bytes";
const DATA: u8 = b'd';
pub(crate) const IDEM: u8 = b'i';
pub(crate) const IDEM_ORDER: u8 = b't';

fn prefixed(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + rest.len());
    k.push(prefix);
    k.extend_from_slice(rest);
    k
}

pub fn data_key(key: &str) -> Vec<u8> {
    prefixed(DATA, key.as_bytes())
}

fn idem_key(key: &str) -> Vec<u8> {
    prefixed(IDEM, key.as_bytes())
}

fn idem_order_key(seq: u64) -> Vec<u8> {
    prefixed(IDEM_ORDER, &seq.to_be_bytes())
}

/// Raw pairs of the tree, in key order (a chunk of a capture or a snapshot).
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

pub(crate) fn read_u64(raw: Option<impl AsRef<[u8]>>) -> u64 {
    raw.and_then(|b| b.as_ref().try_into().ok())
        .map_or(0, u64::from_be_bytes)
}
