//! Watches and blocking reads against real clusters: every acknowledged
//! change exactly once and in order, across a leader kill and a reconnect to
//! another node; 410 compacted past the history; a watcher that does not
//! read is cut off with a final event, not buffered without bound.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use quorumkv_testkit::client::Opts;
use quorumkv_testkit::watch::{Change, WatchEvent, WatchQuery, Watcher};
use reqwest::Method;

use crate::harness::{ok, secs, within, Cluster, NodeId, POLL};
use crate::http::api_error;

async fn open(c: &Cluster, id: NodeId, q: &WatchQuery) -> Watcher {
    match ok("watch", c.client(id).watch(q).await) {
        Ok(w) => w,
        Err(resp) => panic!("watch on node {id} refused: {resp:?}"),
    }
}

/// A watch client that applies an index's changes once its last one came,
/// and resumes after the last index it applied.
#[derive(Default)]
struct Follower {
    applied: Vec<Change>,
    partial: Vec<Change>,
    /// Every change up to here was received.
    through: u64,
}

impl Follower {
    fn take(&mut self, ev: WatchEvent) -> Option<(String, serde_json::Value)> {
        match ev {
            WatchEvent::Change(c) => {
                let ends = c.ends_index;
                let index = c.index;
                self.partial.push(c);
                if ends {
                    self.applied.append(&mut self.partial);
                    self.through = index;
                }
            }
            WatchEvent::Progress(i) => {
                assert!(self.partial.is_empty(), "progress inside an index");
                self.through = self.through.max(i);
            }
            WatchEvent::Final { name, body } => return Some((name, body)),
        }
        None
    }

    /// Drops what a cut connection left of an index.
    fn reconnected(&mut self) {
        self.partial.clear();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_sees_every_acknowledged_change_once_across_a_leader_kill() {
    within(secs(180), async {
        let c = Cluster::start(3).await;
        let leader = c.leader(secs(10)).await;
        let start = c.applied_index(leader).await.unwrap_or(0) + 1;
        let acked: Mutex<Vec<(String, String, u64)>> = Mutex::new(Vec::new());
        let done = AtomicBool::new(false);
        let killed = AtomicBool::new(false);

        // Two writers, strong puts with idempotency keys, retried until acknowledged.
        let writer = |w: usize| {
            let (c, acked) = (&c, &acked);
            async move {
                for i in 0..80 {
                    let (key, value) = (format!("wa/{w}/{i:03}"), format!("v{w}-{i}"));
                    let opts = Opts::strong().idempotency_key(format!("wa-{w}-{i}"));
                    let deadline = Instant::now() + secs(60);
                    loop {
                        let live = c.live();
                        let via = live[(i + w) % live.len()];
                        match c.client(via).put(&key, value.clone(), &opts).await {
                            Ok(r) if r.status == 200 => {
                                let index = r.raft_index().expect("index");
                                acked.lock().unwrap().push((key, value, index));
                                break;
                            }
                            _ => {
                                assert!(Instant::now() < deadline, "write {key} never acked");
                                tokio::time::sleep(POLL).await;
                            }
                        }
                    }
                }
            }
        };
        let killer = async {
            while acked.lock().unwrap().len() < 50 {
                tokio::time::sleep(POLL).await;
            }
            c.kill9(leader);
            killed.store(true, Ordering::SeqCst);
        };
        let writers = async {
            tokio::join!(writer(0), writer(1), killer);
            done.store(true, Ordering::SeqCst);
        };

        // The watcher starts on the leader (the node that gets killed).
        let watcher = async {
            let mut f = Follower::default();
            let mut on = leader;
            let mut w = open(&c, on, &WatchQuery::prefix("wa/").from(start)).await;
            assert_eq!(w.from, start);
            let mut reconnects = 0;
            let deadline = Instant::now() + secs(150);
            loop {
                assert!(Instant::now() < deadline, "watch never caught up");
                if done.load(Ordering::SeqCst) {
                    let max = acked.lock().unwrap().iter().map(|a| a.2).max().unwrap();
                    if f.through >= max {
                        break;
                    }
                }
                match w.next(secs(3)).await {
                    Ok(Some(ev)) => {
                        if let Some((name, body)) = f.take(ev) {
                            panic!("watch ended: {name} {body}");
                        }
                    }
                    Ok(None) | Err(_) => {
                        // The node went (or stalled): carry on elsewhere.
                        f.reconnected();
                        reconnects += 1;
                        let live = c.live();
                        on = live[reconnects % live.len()];
                        let from = f.through + 1;
                        match c
                            .client(on)
                            .watch(&WatchQuery::prefix("wa/").from(from))
                            .await
                        {
                            Ok(Ok(nw)) => w = nw,
                            _ => tokio::time::sleep(POLL).await,
                        }
                    }
                }
            }
            (f, reconnects)
        };
        let ((), (f, reconnects)) = tokio::join!(writers, watcher);
        assert!(killed.load(Ordering::SeqCst));
        assert!(reconnects >= 1, "the watch never lost its node");

        // In log order, no change twice, every acknowledged write there at its index.
        let seen = &f.applied;
        for pair in seen.windows(2) {
            assert!(pair[0].index <= pair[1].index, "out of order: {pair:?}");
        }
        let mut unique = HashSet::new();
        for ch in seen {
            assert!(ch.index >= start);
            assert!(
                unique.insert((ch.index, ch.key.clone())),
                "seen twice: {ch:?}"
            );
        }
        let by_key: BTreeMap<&str, &Change> = seen.iter().map(|c| (c.key.as_str(), c)).collect();
        for (key, value, index) in acked.lock().unwrap().iter() {
            let ch = by_key
                .get(key.as_str())
                .unwrap_or_else(|| panic!("acknowledged {key} at {index} never seen"));
            assert_eq!(ch.index, *index, "{key}");
            assert_eq!(ch.value.as_deref(), Some(value.as_str()));
            assert!(ch.is_put());
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_start_older_than_the_history_is_410_compacted() {
    within(secs(90), async {
        let c = Cluster::start_with(1, &["--watch-history", "5"]).await;
        let first = c.put_ok(1, "hc/0", "x").await;
        for i in 1..20 {
            c.put_ok(1, &format!("hc/{i}"), "x").await;
        }
        let refused = ok(
            "watch",
            c.client(1)
                .watch(&WatchQuery::prefix("hc/").from(first))
                .await,
        );
        let resp = refused.err().expect("a compacted start must be refused");
        api_error(&resp, 410, "compacted");
        let oldest = resp.json::<serde_json::Value>().unwrap()["error"]["oldest_index"]
            .as_u64()
            .expect("oldest_index");
        assert!(oldest > first);
        // From the oldest kept index it works, and starts with that change.
        let mut w = open(&c, 1, &WatchQuery::prefix("hc/").from(oldest)).await;
        let Some(WatchEvent::Change(ch)) = ok("event", w.next(secs(5)).await) else {
            panic!("expected a change")
        };
        assert_eq!(ch.index, oldest);
        // Bad queries are 400s.
        for q in [
            "from_index=abc",
            "key=a&prefix=b",
            "key=",
            "prefix=x&from_index=-1",
        ] {
            let r = c
                .call(1, Method::GET, &format!("/v1/watch?{q}"), &[], Vec::new())
                .await;
            assert_eq!(r.status, 400, "{q}: {r:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watcher_that_does_not_read_is_cut_off() {
    within(secs(180), async {
        let c = Cluster::start_with(3, &["--watch-max-lag", "100"]).await;
        let leader = c.leader(secs(10)).await;
        // Opened and never read while 400 writes of 64 KiB go by.
        let mut slow = open(&c, leader, &WatchQuery::prefix("sw/")).await;
        // Each write is retried (same idempotency key) through any node until
        // acknowledged: on two loaded cores the leader may change meanwhile.
        let value = bytes::Bytes::from(vec![b'x'; 32 * 1024]);
        let writes = (0..8).map(|w| {
            let (c, value) = (&c, value.clone());
            async move {
                for i in 0..50 {
                    let opts = Opts::strong().idempotency_key(format!("sw-{w}-{i}"));
                    let deadline = Instant::now() + secs(60);
                    let mut via = leader;
                    loop {
                        let r = c
                            .client(via)
                            .put(&format!("sw/{w}/{i}"), value.clone(), &opts)
                            .await;
                        if r.is_ok_and(|r| r.status == 200) {
                            break;
                        }
                        assert!(
                            Instant::now() < deadline,
                            "write sw/{w}/{i} never acknowledged"
                        );
                        via = c.leader(secs(10)).await;
                        tokio::time::sleep(POLL).await;
                    }
                }
            }
        });
        futures::future::join_all(writes).await;
        // Now drain it: what was buffered, then the final event.
        let mut changes = 0;
        let last = loop {
            match ok("slow watch", slow.next(secs(10)).await) {
                Some(WatchEvent::Change(_)) => changes += 1,
                Some(WatchEvent::Progress(_)) => {}
                Some(WatchEvent::Final { name, body }) => break (name, body),
                None => panic!("stream ended without a final event after {changes} changes"),
            }
        };
        assert_eq!(last.0, "cancelled", "{last:?}");
        assert_eq!(last.1["error"]["code"], "watch_too_slow");
        let resume = last.1["resume_from"].as_u64().expect("resume_from");
        assert!(changes < 400, "it was never behind: {changes} changes");
        assert!(ok("end", slow.next(secs(10)).await).is_none());
        // It resumes from there and gets the rest.
        let mut w = open(&c, leader, &WatchQuery::prefix("sw/").from(resume)).await;
        let mut rest = 0;
        while rest + changes < 400 {
            match ok("resumed watch", w.next(secs(10)).await) {
                Some(WatchEvent::Change(_)) => rest += 1,
                Some(WatchEvent::Progress(_)) => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(rest + changes, 400);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blocking_read_answers_when_the_key_changes_or_at_its_deadline() {
    within(secs(90), async {
        let c = Cluster::start(3).await;
        let leader = c.leader(secs(10)).await;
        let follower = c.others(leader)[0];
        let index = c.put_ok(leader, "bk", "one").await;
        let path = format!("bk?wait_index={index}&wait=20s");
        let started = Instant::now();
        let read = c.get_with(follower, &path, &[("x-consistency", "strong")]);
        let write = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            c.put_ok(leader, "bk", "two").await
        };
        let (r, second) = tokio::join!(read, write);
        let r = r.expect(200);
        assert_eq!(r.text(), "two");
        assert_eq!(r.header("etag"), Some(format!("\"{second}\"").as_str()));
        assert!(started.elapsed() < secs(15), "it waited for its deadline");

        // Nothing changes: the current value at the deadline.
        let started = Instant::now();
        let path = format!("bk?wait_index={second}&wait=1s");
        let r = c
            .get_with(follower, &path, &[("x-consistency", "eventual")])
            .await;
        assert_eq!(r.expect(200).text(), "two");
        assert!(started.elapsed() >= Duration::from_millis(900));

        // A delete wakes it too: 404 with the index.
        let path = format!("bk?wait_index={second}&wait=20s");
        let read = c.get_with(follower, &path, &[("x-consistency", "strong")]);
        let delete = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            c.delete(leader, "bk", "strong").await.expect(200)
        };
        let (r, _) = tokio::join!(read, delete);
        assert_eq!(r.status, 404);

        for bad in [
            "bk?wait_index=x",
            "bk?wait_index=1&wait=forever",
            "bk?wait=1s",
            "bk?wait_index=1&wait=11m",
        ] {
            let r = c.get_with(follower, bad, &[]).await;
            assert_eq!(r.status, 400, "{bad}: {r:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopping_node_ends_its_watches_and_blocking_reads() {
    within(secs(90), async {
        let c = Cluster::start(3).await;
        let leader = c.leader(secs(10)).await;
        let node = c.others(leader)[0];
        let index = c.put_ok(leader, "st/k", "v").await;
        // From after the put: the follower may not have applied it yet.
        let mut w = open(&c, node, &WatchQuery::prefix("st/").from(index + 1)).await;
        let path = format!("st/k?wait_index={index}&wait=60s");
        let blocked = c.get_with(node, &path, &[("x-consistency", "eventual")]);
        let stop = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let started = Instant::now();
            let status = ok("terminate", c.kit().terminate(node, secs(9)).await);
            (status, started.elapsed())
        };
        let (r, (status, took)) = tokio::join!(blocked, stop);
        assert!(status.success(), "{status:?}");
        // Well inside the 10 s drain: nothing waited for the watch to end.
        assert!(took < secs(8), "stopping took {took:?}");
        assert!(r.status == 200 || r.status == 503, "{r:?}");
        loop {
            match w.next(secs(5)).await {
                Ok(Some(WatchEvent::Progress(_))) => {}
                Ok(None) | Err(_) => break,
                Ok(Some(other)) => panic!("{other:?}"),
            }
        }
    })
    .await;
}
