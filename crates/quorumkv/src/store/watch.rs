//! Watches and blocking reads, served from this node's change history
//! ([`crate::sm::history`]) as far as it has applied: a follower's stream
//! may lag the leader's, never goes backwards, and holds every change at or
//! after its start exactly once, in log order.
//!
//! Each watch is a task that reads the history a page at a time into a small
//! channel; the client reading the stream drains it. Nothing the Raft core
//! does waits for a watcher: a watcher that does not keep up only falls
//! behind, and once it is `--watch-max-lag` indexes behind it is closed with a
//! final event that says where to resume.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::error::Error;
use crate::sm::history::{Event, Read, Want};
use crate::sm::reader::SmReader;
use crate::store::Store;

/// Changes read per page, and their bytes (keys and values).
const PAGE: usize = 256;
const PAGE_BYTES: usize = 256 * 1024;
/// Pages waiting for the client: with `PAGE_BYTES`, about what one watcher
/// may hold in memory (besides what its socket buffers).
const QUEUE: usize = 8;
/// How long a watcher far behind may go without reading before it is cut off.
const STALL: Duration = Duration::from_secs(1);
/// A progress event after this long without one.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Which keys a watch follows.
#[derive(Debug, Clone)]
pub enum Filter {
    Prefix(String),
    Key(String),
}

impl Filter {
    fn want(&self, from: u64) -> Want<'_> {
        let (prefix, key) = match self {
            Filter::Prefix(p) => (p.as_str(), None),
            Filter::Key(k) => ("", Some(k.as_str())),
        };
        Want {
            from,
            prefix,
            key,
            max: PAGE,
            max_bytes: PAGE_BYTES,
        }
    }
}

/// What a watch stream carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// Matching changes, whole log indexes, in order.
    Changes(Vec<Event>),
    /// Every matching change up to this index has been sent.
    Progress(u64),
    /// Last item: the watcher fell `--watch-max-lag` behind.
    Cancelled { resume_from: u64 },
    /// Last item: the history it needed next was trimmed.
    Compacted { oldest: u64 },
}

/// An open watch: its items, then at most one final item.
pub struct Watch {
    /// The first index it covers.
    pub from: u64,
    pub items: mpsc::Receiver<Item>,
    pub last: oneshot::Receiver<Item>,
}

/// The permits that bound watches and blocking reads (`--max-watchers`),
/// and the signal that ends them all when the node stops.
#[derive(Clone)]
pub struct Watchers {
    permits: Arc<Semaphore>,
    max: usize,
    closing: tokio::sync::watch::Sender<bool>,
}

impl Watchers {
    pub fn new(max: usize) -> Self {
        Watchers {
            permits: Arc::new(Semaphore::new(max)),
            max,
            closing: tokio::sync::watch::Sender::new(false),
        }
    }

    fn permit(&self) -> Result<OwnedSemaphorePermit, Error> {
        if *self.closing.borrow() {
            return Err(Error::ShuttingDown);
        }
        self.permits.clone().try_acquire_owned().map_err(|_| {
            Error::Overloaded(format!(
                "{} watches and blocking reads are open here (--max-watchers)",
                self.max
            ))
        })
    }

    /// How many are open now.
    pub fn open(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    /// Ends every watch (its stream closes: the client resumes elsewhere)
    /// and answers every blocking read now, so a stopping node drains.
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once [`Self::close_all`] was called.
    fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.closing.subscribe();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }
}

impl Store {
    /// Starts a watch of `filter` from index `from` (the index after this
    /// node's applied one if `None`). A start older than the history is
    /// refused with `Compacted`.
    pub fn watch(&self, filter: Filter, from: Option<u64>) -> Result<Watch, Error> {
        let permit = self.watchers.permit()?;
        let from = match from {
            Some(i) => i.max(1),
            None => self.reader.applied_index()? + 1,
        };
        if let Read::Compacted { oldest } = self.reader.history(&filter.want(from))? {
            return Err(Error::Compacted { from, oldest });
        }
        let (tx, items) = mpsc::channel(QUEUE);
        let (last_tx, last) = oneshot::channel();
        let feed = Feed {
            closed: Box::pin(self.watchers.closed()),
            reader: self.reader.clone(),
            filter,
            next: from,
            max_lag: self.config.watch.max_lag,
            tx,
        };
        tokio::spawn(async move {
            let _permit = permit;
            if let Some(item) = feed.run().await {
                let _ = last_tx.send(item);
            }
        });
        Ok(Watch { from, items, last })
    }

    /// Waits, up to `wait`, until `key` changes after index `after` (a put or
    /// a delete at a higher index); at once if it already has, or if the
    /// history no longer reaches back to `after`. Returns whether it changed.
    pub async fn wait_for_change(
        &self,
        key: &str,
        after: u64,
        wait: Duration,
    ) -> Result<bool, Error> {
        let _permit = self.watchers.permit()?;
        let filter = Filter::Key(key.to_string());
        let mut applied = self.reader.applied_changes();
        let mut next = after.saturating_add(1);
        let deadline = tokio::time::Instant::now() + wait;
        let mut closed = std::pin::pin!(self.watchers.closed());
        loop {
            match self.reader.history(&filter.want(next))? {
                Read::Compacted { .. } => return Ok(true),
                Read::Page { events, through } => {
                    if !events.is_empty() {
                        return Ok(true);
                    }
                    next = through + 1;
                    if through < *applied.borrow_and_update() {
                        // Many pages to pass: let other tasks run between them.
                        tokio::task::yield_now().await;
                        continue;
                    }
                }
            }
            tokio::select! {
                waited = tokio::time::timeout_at(deadline, applied.changed()) => match waited {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err(Error::ShuttingDown),
                    Err(_) => return Ok(false),
                },
                // Stopping: answer now with what this node has.
                () = &mut closed => return Ok(false),
            }
        }
    }

    pub fn watchers(&self) -> &Watchers {
        &self.watchers
    }
}

/// One watch's reading task.
struct Feed {
    /// The node is stopping.
    closed: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    reader: SmReader,
    filter: Filter,
    /// The next index to read from.
    next: u64,
    max_lag: u64,
    tx: mpsc::Sender<Item>,
}

/// Why a feed stopped.
enum Stop {
    /// The client went, or the node is stopping: nothing more to say.
    Gone,
    /// The watch ends with this item.
    Final(Item),
}

impl Feed {
    /// Runs until the client goes (`None`) or the watch must end (its final item).
    async fn run(mut self) -> Option<Item> {
        match self.feed().await {
            Stop::Gone => None,
            Stop::Final(item) => Some(item),
        }
    }

    async fn feed(&mut self) -> Stop {
        let mut applied = self.reader.applied_changes();
        applied.borrow_and_update();
        let mut quiet = tokio::time::Instant::now();
        loop {
            let read = match self.reader.history(&self.filter.want(self.next)) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "watch: history read failed; closing");
                    return Stop::Gone;
                }
            };
            let (events, through) = match read {
                Read::Compacted { oldest } => return Stop::Final(Item::Compacted { oldest }),
                Read::Page { events, through } => (events, through),
            };
            if !events.is_empty() {
                if let Err(stop) = self.send(Item::Changes(events), &mut applied).await {
                    return stop;
                }
                quiet = tokio::time::Instant::now();
            }
            self.next = through + 1;
            if through < *applied.borrow_and_update() {
                // Catching up: let other tasks run between pages.
                tokio::task::yield_now().await;
                continue;
            }
            // Caught up: wait for the next apply, or say where we are.
            let waited = tokio::select! {
                w = tokio::time::timeout_at(quiet + PROGRESS_EVERY, applied.changed()) => w,
                () = &mut self.closed => return Stop::Gone,
            };
            match waited {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Stop::Gone,
                Err(_) => {
                    let progress = Item::Progress(self.next - 1);
                    if let Err(stop) = self.send(progress, &mut applied).await {
                        return stop;
                    }
                    quiet = tokio::time::Instant::now();
                }
            }
        }
    }

    /// Hands `item` to the client, unless the client stops reading for
    /// [`STALL`] while the watch is more than `max_lag` behind: then the
    /// watch ends with `Cancelled`, to resume where it stood. (A client that
    /// reads, however far behind it started, is not cut off.)
    async fn send(
        &mut self,
        item: Item,
        applied: &mut tokio::sync::watch::Receiver<u64>,
    ) -> Result<(), Stop> {
        let resume_from = self.next;
        let blocked = tokio::time::Instant::now();
        loop {
            tokio::select! {
                permit = self.tx.reserve() => {
                    permit.map_err(|_| Stop::Gone)?.send(item);
                    return Ok(());
                }
                () = &mut self.closed => return Err(Stop::Gone),
                changed = applied.changed() => {
                    changed.map_err(|_| Stop::Gone)?;
                    let lag = applied.borrow().saturating_sub(resume_from);
                    if lag > self.max_lag && blocked.elapsed() >= STALL {
                        tracing::info!(resume_from, lag, "watch: client too slow; closing");
                        return Err(Stop::Final(Item::Cancelled { resume_from }));
                    }
                }
            }
        }
    }
}
