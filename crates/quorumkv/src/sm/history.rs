//! The change history that watches and blocking reads are served from: every
//! put and delete the state machine applies, keyed by log index, written in
//! the same apply as the change itself (so a watcher, reading through
//! [`SmTree::read`](crate::sm::tree::SmTree::read), never sees a value the
//! history lacks, or the reverse). It is kept for `--watch-history` (a
//! number of changes or an age by the state machine's clock) and trimmed a
//! whole log index at a time; `m:watch_floor` is the lowest index from which
//! every change is still held.
//!
//! Layout in the `sm` tree: `w<index: 8 bytes BE><seq: 4 bytes BE>` ->
//! bincode [`Stored`]; `m:watch_floor`, `m:watch_len` (records held).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::raft::{decode, encode};
use crate::sm::apply::Changes;
use crate::sm::{read_u64, CLOCK};

pub const FLOOR: &[u8] = b"m:watch_floor";
pub const LEN: &[u8] = b"m:watch_len";
const HISTORY: u8 = b'w';
/// Most records one trim removes; the next apply goes on (keeps applies short).
const TRIM_STEP: usize = 10_000;

/// How much history to keep (`--watch-history`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The newest this many changes (rounded to whole log indexes).
    Changes(u64),
    /// Changes younger than this, by the state machine's clock.
    Age(Duration),
}

impl Default for Limit {
    fn default() -> Self {
        Limit::Changes(100_000)
    }
}

impl std::str::FromStr for Limit {
    type Err = String;

    /// `100000` (changes) or a duration such as `10m`, `1h`.
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(n) = s.parse::<u64>() {
            return if n == 0 {
                Err("--watch-history must keep at least 1 change".into())
            } else {
                Ok(Limit::Changes(n))
            };
        }
        match humantime::parse_duration(s) {
            Ok(d) if !d.is_zero() => Ok(Limit::Age(d)),
            _ => Err(format!(
                "{s:?} is neither a number of changes nor a duration like 10m"
            )),
        }
    }
}

/// One change as stored: its index is in the record's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    pub at_ms: u64,
    pub key: String,
    /// `None`: the key was deleted.
    pub value: Option<Vec<u8>>,
}

/// One change as a watcher sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub index: u64,
    pub key: String,
    pub value: Option<Vec<u8>>,
}

pub fn record_key(index: u64, seq: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(13);
    k.push(HISTORY);
    k.extend_from_slice(&index.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn index_of(record_key: &[u8]) -> u64 {
    record_key
        .get(1..9)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

pub fn encode_stored(s: &Stored) -> Vec<u8> {
    encode(s).unwrap_or_default()
}

fn to_io(e: bincode::Error) -> sled::Error {
    sled::Error::Io(std::io::Error::other(e))
}

pub fn decode_event(k: &[u8], v: &[u8]) -> Result<Event, sled::Error> {
    let s: Stored = decode(v).map_err(to_io)?;
    Ok(Event {
        index: index_of(k),
        key: s.key,
        value: s.value,
    })
}

/// The floor as stored; none means nothing was ever trimmed (a tree made
/// before history existed gets one when opened: [`mark_floor`]).
pub fn floor(raw: Option<impl AsRef<[u8]>>) -> u64 {
    read_u64(raw).max(1)
}

/// On a tree that applied entries before it kept history (entries applied,
/// no floor, no record), sets the floor past them: their changes were never
/// recorded. A tree that kept history from its start and never trimmed has
/// records and no floor: everything from index 1 is there.
pub fn mark_floor(tree: &sled::Tree, applied: u64) -> Result<(), sled::Error> {
    let recorded = tree.scan_prefix([HISTORY]).next().is_some();
    if applied > 0 && !recorded && tree.get(FLOOR)?.is_none() {
        tree.insert(FLOOR, (applied + 1).to_be_bytes().to_vec())?;
    }
    Ok(())
}

/// The key of a stored change, without copying its value.
fn key_of(v: &[u8]) -> Result<String, sled::Error> {
    #[derive(Deserialize)]
    struct KeyOnly {
        #[allow(dead_code)]
        at_ms: u64,
        key: String,
    }
    let k: KeyOnly = decode(v).map_err(to_io)?;
    Ok(k.key)
}

/// Drops the oldest records past `limit`, whole indexes at a time, and
/// raises the floor past them, into `changes`. Returns how many records went.
pub fn trim(changes: &mut Changes<'_>, limit: Limit) -> Result<usize, sled::Error> {
    let len = read_u64(changes.get_raw(LEN)?);
    let clock = read_u64(changes.get_raw(CLOCK)?);
    let mut removed = 0usize;
    let tree = changes.tree().clone();
    let mut last_removed: Option<u64> = None;
    for item in tree.scan_prefix([HISTORY]) {
        let (k, v) = item?;
        let index = index_of(&k);
        let same_index = last_removed == Some(index);
        if !same_index {
            if removed >= TRIM_STEP {
                break;
            }
            let drop = match limit {
                Limit::Changes(max) => len.saturating_sub(removed as u64) > max,
                Limit::Age(age) => {
                    let s: Stored = decode(&v).map_err(to_io)?;
                    s.at_ms.saturating_add(age.as_millis() as u64) < clock
                }
            };
            if !drop {
                break;
            }
        }
        changes.remove_raw(k.to_vec());
        removed += 1;
        last_removed = Some(index);
    }
    let Some(last) = last_removed else {
        return Ok(0);
    };
    let floor = read_u64(changes.get_raw(FLOOR)?).max(last + 1);
    changes.set_raw(FLOOR.to_vec(), floor.to_be_bytes().to_vec());
    changes.set_raw(
        LEN.to_vec(),
        len.saturating_sub(removed as u64).to_be_bytes().to_vec(),
    );
    Ok(removed)
}

/// Where a history read starts and how much it may gather.
#[derive(Debug, Clone, Copy)]
pub struct Want<'a> {
    /// The first index wanted.
    pub from: u64,
    /// Only changes to keys with this prefix (`""`: all keys)...
    pub prefix: &'a str,
    /// ...or, if set, to exactly this key.
    pub key: Option<&'a str>,
    /// Stop after about this many matching changes (a whole index always)...
    pub max: usize,
    /// ...or about this many bytes of keys and values.
    pub max_bytes: usize,
}

impl Want<'_> {
    pub fn matches(&self, key: &str) -> bool {
        match self.key {
            Some(k) => k == key,
            None => key.starts_with(self.prefix),
        }
    }
}

/// What a history read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// Every matching change in `from..=through`, in log order.
    Page { events: Vec<Event>, through: u64 },
    /// Changes from `from` are no longer held; `oldest` is the lowest index
    /// a watch can start from.
    Compacted { oldest: u64 },
}

/// Reads matching changes from `want.from` up to `applied` (the index the
/// tree was read at). Call it with the applied index read before the scan:
/// changes past it may be seen too, and are left for the next read.
pub fn read(tree: &sled::Tree, want: &Want<'_>, applied: u64) -> Result<Read, sled::Error> {
    let mut events = Vec::new();
    let mut through = applied;
    let start = record_key(want.from, 0);
    let mut bytes = 0usize;
    let mut last_index = None;
    for (scanned, item) in tree.range(start..).enumerate() {
        let (k, v) = item?;
        if k.first() != Some(&HISTORY) {
            break;
        }
        let index = index_of(&k);
        if index > applied {
            break;
        }
        // Stop between indexes once the page is full, or once many records
        // that match nothing were passed (a narrow watch over busy history).
        let full = events.len() >= want.max
            || bytes >= want.max_bytes
            || scanned >= want.max.saturating_mul(16);
        if full && last_index.is_some_and(|last| last != index) {
            through = index - 1;
            break;
        }
        last_index = Some(index);
        if !want.matches(&key_of(&v)?) {
            continue;
        }
        let event = decode_event(&k, &v)?;
        bytes += event.key.len() + event.value.as_ref().map_or(0, Vec::len);
        events.push(event);
    }
    // Read the floor last: a trim that removed anything this scan needed has
    // raised it past `from` by now (a trim is written with its floor, in one apply).
    let floor = floor(tree.get(FLOOR)?);
    if want.from < floor && want.from <= applied {
        return Ok(Read::Compacted { oldest: floor });
    }
    Ok(Read::Page {
        events,
        through: through.max(want.from.saturating_sub(1)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trim_now(t: &sled::Tree, limit: Limit) -> usize {
        let mut c = Changes::new(t, Default::default());
        let n = trim(&mut c, limit).unwrap();
        t.apply_batch(c.into_batch()).unwrap();
        n
    }

    fn put(t: &sled::Tree, index: u64, keys: &[&str], at_ms: u64) {
        let mut batch = sled::Batch::default();
        for (seq, k) in keys.iter().enumerate() {
            let s = Stored {
                at_ms,
                key: k.to_string(),
                value: Some(b"v".to_vec()),
            };
            batch.insert(record_key(index, seq as u32), encode_stored(&s));
        }
        let len = read_u64(t.get(LEN).unwrap()) + keys.len() as u64;
        batch.insert(LEN, len.to_be_bytes().to_vec());
        batch.insert(CLOCK, at_ms.to_be_bytes().to_vec());
        t.apply_batch(batch).unwrap();
    }

    fn want(from: u64, max: usize) -> Want<'static> {
        Want {
            from,
            prefix: "a",
            key: None,
            max,
            max_bytes: usize::MAX,
        }
    }

    fn indexes(r: Read) -> (Vec<u64>, u64) {
        match r {
            Read::Page { events, through } => (events.iter().map(|e| e.index).collect(), through),
            Read::Compacted { oldest } => panic!("compacted at {oldest}"),
        }
    }

    #[test]
    fn pages_end_between_indexes_and_trims_move_the_floor() {
        let dir = tempfile::tempdir().unwrap();
        let t = sled::open(dir.path()).unwrap().open_tree("sm").unwrap();
        put(&t, 2, &["a1", "b1", "a2"], 10);
        put(&t, 3, &["b2"], 20);
        put(&t, 5, &["a3"], 30);
        // A page of one still takes all of index 2, and says where it stopped.
        assert_eq!(indexes(read(&t, &want(1, 1), 5).unwrap()), (vec![2, 2], 2));
        assert_eq!(indexes(read(&t, &want(5, 1), 5).unwrap()), (vec![5], 5));
        // Nothing past the applied index the caller read.
        assert_eq!(indexes(read(&t, &want(1, 10), 3).unwrap()), (vec![2, 2], 3));
        // Keep 2 changes: index 2 goes whole (3 records), floor 3.
        assert_eq!(trim_now(&t, Limit::Changes(2)), 3);
        assert_eq!(
            read(&t, &want(2, 10), 5).unwrap(),
            Read::Compacted { oldest: 3 }
        );
        assert_eq!(indexes(read(&t, &want(3, 10), 5).unwrap()), (vec![5], 5));
        // By age: at clock 30, keep 5 ms: index 3 (at 20) goes.
        assert_eq!(trim_now(&t, Limit::Age(Duration::from_millis(5))), 1);
        assert_eq!(read_u64(t.get(FLOOR).unwrap()), 4);
        assert_eq!(read_u64(t.get(LEN).unwrap()), 1);
        // A watch from the future waits: an empty page, nothing compacted.
        assert_eq!(indexes(read(&t, &want(9, 10), 5).unwrap()), (vec![], 8));
    }

    #[test]
    fn a_restart_keeps_an_untrimmed_history_whole() {
        let dir = tempfile::tempdir().unwrap();
        let t = sled::open(dir.path()).unwrap().open_tree("sm").unwrap();
        put(&t, 2, &["a1"], 10);
        mark_floor(&t, 5).unwrap();
        assert_eq!(indexes(read(&t, &want(1, 10), 5).unwrap()), (vec![2], 5));
        // A tree that applied entries before it kept history: floor past them.
        let dir = tempfile::tempdir().unwrap();
        let old = sled::open(dir.path()).unwrap().open_tree("sm").unwrap();
        mark_floor(&old, 5).unwrap();
        assert_eq!(
            read(&old, &want(1, 10), 5).unwrap(),
            Read::Compacted { oldest: 6 }
        );
    }

    #[test]
    fn limits_parse_as_counts_or_ages() {
        assert_eq!("500".parse::<Limit>(), Ok(Limit::Changes(500)));
        assert_eq!(
            "10m".parse::<Limit>(),
            Ok(Limit::Age(Duration::from_secs(600)))
        );
        assert!("0".parse::<Limit>().is_err());
        assert!("soon".parse::<Limit>().is_err());
    }
}
