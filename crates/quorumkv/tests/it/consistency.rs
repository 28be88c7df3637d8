//! Read levels under failure: eventual reads may be stale but always match
//! their X-Raft-Index; X-Min-Index and X-Max-Staleness bound them; strong
//! reads and writes refuse (503) rather than hang or lie without a quorum.

use std::time::{Duration, Instant};

use crate::harness::{secs, within, Cluster, NodeId, Resp};

/// Value a read at `index` must see: that of the last write at or below it.
fn expected_at(history: &[(u64, String)], index: u64) -> Option<&str> {
    let older = history.iter().rev().find(|(at, _)| *at <= index);
    older.map(|(_, value)| value.as_str())
}

fn check_read(history: &[(u64, String)], node: NodeId, r: &Resp) {
    let index = r.raft_index();
    match expected_at(history, index) {
        Some(value) => {
            assert_eq!(r.status, 200, "node {node} at index {index}: {r:?}");
            assert_eq!(
                r.text(),
                value,
                "node {node}: value does not match index {index}"
            );
        }
        None => assert_eq!(r.status, 404, "node {node} at index {index}: {r:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn eventual_read_on_restarted_follower_matches_its_index() {
    within(secs(180), async {
        let c = Cluster::start(3).await;
        let leader = c.leader(secs(10)).await;
        let f = c.others(leader)[0];
        let mut history = vec![(c.put_ok(leader, "k", "v0").await, "v0".to_string())];
        c.read_at_least(f, "k", history[0].0).await.expect(200);

        // A write that f misses, then every node that has it goes down: f,
        // restarted alone, can only serve what its own disk holds. Its reads
        // are stale for sure, not by a race with the leader's next append.
        c.kill9(f);
        let written = c.put_ok(leader, "k", "v1").await;
        history.push((written, "v1".to_string()));
        for id in c.others(f) {
            c.kill9(id);
        }
        c.restart(f).await;
        for _ in 0..5 {
            let r = c.get(f, "k", "eventual").await;
            check_read(&history, f, &r);
            assert_eq!(r.text(), "v0", "node {f} alone cannot have v1: {r:?}");
            assert!(r.raft_index() < written, "{r:?}");
        }

        // Back with the others, f catches up; every read on the way matches
        // the index it reports.
        for id in c.others(f) {
            c.restart(id).await;
        }
        let deadline = Instant::now() + secs(30);
        loop {
            let r = c.get(f, "k", "eventual").await;
            check_read(&history, f, &r);
            if r.raft_index() >= written {
                break;
            }
            assert!(Instant::now() < deadline, "node {f} never caught up: {r:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let r = c.read_at_least(f, "k", written).await.expect(200);
        assert_eq!(r.text(), "v1", "X-Min-Index {written} read: {r:?}");
        assert!(r.raft_index() >= written, "{r:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lone_survivor_answers_eventual_reads_and_refuses_the_rest() {
    within(secs(120), async {
        let c = Cluster::start(3).await;
        let leader = c.leader(secs(10)).await;
        let survivor = c.others(leader)[0];
        let index = c.put_ok(leader, "k", "last").await;
        c.read_at_least(survivor, "k", index).await.expect(200);
        for id in c.others(survivor) {
            c.kill9(id);
        }
        let killed_at = Instant::now();

        // Without a staleness bound the survivor keeps serving its own state.
        loop {
            let r = c.get(survivor, "k", "eventual").await.expect(200);
            assert_eq!(r.text(), "last", "{r:?}");
            let contact = r.header_u64("x-last-contact-ms");
            if killed_at.elapsed() > Duration::from_millis(400) {
                assert!(contact >= 200, "leader died 400 ms ago: {r:?}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let bounded = [("x-consistency", "eventual"), ("x-max-staleness", "200ms")];
        let r = c.get_with(survivor, "k", &bounded).await.expect(503);
        assert_eq!(r.error_code(), "stale_replica", "{r:?}");

        // Strong read and write: a 503 with a JSON error, and no hang.
        for method in [reqwest::Method::GET, reqwest::Method::PUT] {
            let url = format!("{}/v1/kv/k", c.url(survivor));
            // A hang would end in the client's timeout, and fail here.
            let req = c.http.request(method.clone(), url).timeout(secs(15));
            let r = Resp::fetch(req.header("x-consistency", "strong").body("new"))
                .await
                .unwrap_or_else(|e| panic!("strong {method} on the survivor: {e}"));
            assert_eq!(r.status, 503, "strong {method} without quorum: {r:?}");
            r.error_code(); // no_leader, no_quorum, not_leader, ...: any JSON error
        }
    })
    .await;
}
