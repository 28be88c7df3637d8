//! Graceful shutdown: SIGTERM stops a node cleanly (exit 0, within a bound)
//! and a leader hands leadership over first. A rolling restart of every node
//! under a steady write load loses no acknowledged write and never leaves the
//! cluster without a leader for longer than an election.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{secs, within, Cluster, NodeId};

/// An acknowledged write: its key, value and when the answer came.
struct Acked {
    key: String,
    value: String,
    at: Instant,
}

/// Writes unique keys, one at a time, through the nodes in turn (skipping a
/// node that does not answer), until `stop`.
async fn writer(urls: Vec<String>, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<Acked>>>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let mut n = 0u64;
    let mut node = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let key = format!("roll/{n:06}");
        let value = format!("v{n}");
        let url = format!("{}/v1/kv/{key}", urls[node % urls.len()]);
        match http.put(&url).body(value.clone()).send().await {
            Ok(r) if r.status() == 200 => {
                let at = Instant::now();
                acked.lock().unwrap().push(Acked { key, value, at });
                n += 1;
            }
            // Refused, timed out or unknown: the key is not reused (its
            // outcome may be unknown); try the next node.
            _ => {
                n += 1;
                node += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_restart_under_load_loses_nothing() {
    within(secs(240), async {
        let c = Cluster::start(3).await;
        c.leader(secs(10)).await;
        let urls: Vec<String> = c.ids().into_iter().map(|id| c.url(id)).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let load = tokio::spawn(writer(urls, stop.clone(), acked.clone()));
        tokio::time::sleep(secs(1)).await;

        let mut was_leader: Vec<NodeId> = Vec::new();
        for id in c.ids() {
            let leader = c
                .kit()
                .leader_among(&c.live(), secs(20))
                .await
                .expect("leader");
            if leader == id {
                was_leader.push(id);
            }
            let started = Instant::now();
            let status = c
                .kit()
                .terminate(id, secs(20))
                .await
                .expect("exit after SIGTERM");
            assert!(status.success(), "node {id} exited with {status}");
            assert!(
                started.elapsed() < secs(15),
                "node {id} took {:?} to stop",
                started.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
            c.restart(id).await;
            // Caught up before the next one goes.
            let last = c
                .put_ok(c.leader(secs(20)).await, "roll/marker", id.to_string())
                .await;
            c.read_at_least(id, "roll/marker", last).await.expect(200);
        }
        stop.store(true, Ordering::SeqCst);
        load.await.expect("writer");

        let acked = std::mem::take(&mut *acked.lock().unwrap());
        assert!(acked.len() > 50, "only {} writes acknowledged", acked.len());
        let leader = c.leader(secs(20)).await;
        for a in &acked {
            let r = c.get(leader, &a.key, "strong").await.expect(200);
            assert_eq!(r.text(), a.value, "{}", a.key);
        }
        let gaps = acked.windows(2).map(|w| w[1].at - w[0].at);
        let longest = gaps.max().unwrap_or_default();
        // An election: the election timeout (max 500 ms) plus a round; a
        // restart without hand-over would cost that and more.
        assert!(
            longest < secs(2),
            "longest gap between acknowledged writes: {longest:?}"
        );
        eprintln!(
            "{} writes acknowledged; longest gap {longest:?}",
            acked.len()
        );
        assert!(!was_leader.is_empty());
        for id in was_leader {
            let log = c.kit().log_tail(id, 5000);
            assert!(log.contains("leadership handed over"), "node {id}:\n{log}");
        }
    })
    .await;
}

/// The voters as the leader lists them.
async fn voters(c: &Cluster) -> Vec<u64> {
    let leader = c.leader(secs(10)).await;
    let r = c
        .call(
            leader,
            reqwest::Method::GET,
            "/v1/cluster/members",
            &[],
            Vec::new(),
        )
        .await;
    let v = r.json();
    v["members"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .filter(|m| m["voter"] == true)
                .filter_map(|m| m["id"].as_u64())
                .collect()
        })
        .unwrap_or_default()
}

/// Grows 3 -> 5 under a steady write load (two nodes join and are promoted),
/// then shrinks 5 -> 3 removing the leader first (it hands over) and then a
/// follower: every acknowledged write is on every remaining member.
#[tokio::test(flavor = "multi_thread")]
async fn three_to_five_and_back_to_three_under_load_loses_nothing() {
    within(secs(240), async {
        let opts = crate::harness::Options {
            spares: 2,
            ..crate::harness::Options::default()
        };
        let c = Cluster::start_opts(3, opts).await;
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        // The writer goes through the founders only: they stay members
        // until the last step, and are tried in turn.
        let urls = (1..=3).map(|id| c.url(id)).collect();
        let load = tokio::spawn(writer(urls, stop.clone(), acked.clone()));

        let peers = (1..=3)
            .map(|id| c.kit().peer_url(id).unwrap())
            .collect::<Vec<_>>()
            .join(",");
        for id in [4, 5] {
            c.kit()
                .start_spare_with(id, &["--join".to_string(), peers.clone()])
                .await
                .expect("join");
        }
        let deadline = Instant::now() + secs(60);
        while voters(&c).await.len() < 5 {
            assert!(Instant::now() < deadline, "4 and 5 never became voters");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let grown = acked.lock().unwrap().len();

        // Shrink: the leader first (a founder), then node 4.
        let leader = c.leader(secs(10)).await;
        let remove = |id: NodeId| {
            let c = &c;
            async move {
                let deadline = Instant::now() + secs(30);
                loop {
                    let via = c.others(id)[0];
                    let path = format!("/v1/cluster/members/{id}");
                    let r = c
                        .send(via, reqwest::Method::DELETE, &path, &[], Vec::new())
                        .await;
                    if r.as_ref().is_ok_and(|r| r.status == 200) {
                        return;
                    }
                    assert!(Instant::now() < deadline, "removing {id}: {r:?}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        remove(leader).await;
        remove(4).await;
        let deadline = Instant::now() + secs(30);
        while voters(&c).await.len() != 3 {
            assert!(Instant::now() < deadline, "never shrank to 3");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(secs(1)).await;
        stop.store(true, Ordering::SeqCst);
        load.await.unwrap();
        c.kill9(leader);
        c.kill9(4);

        let acked: Vec<Acked> = std::mem::take(&mut *acked.lock().unwrap());
        assert!(acked.len() > grown && grown > 0, "the load ran throughout");
        let remaining: Vec<NodeId> = c.live();
        assert_eq!(remaining.len(), 3);
        let new_leader = c.leader_among(&remaining, secs(10)).await;
        for a in acked.iter() {
            let r = c.get(new_leader, &a.key, "strong").await.expect(200);
            assert_eq!(r.text(), a.value, "acknowledged {} lost", a.key);
        }
        println!(
            "{} writes acknowledged ({grown} while growing); all on the 3 remaining members",
            acked.len()
        );
    })
    .await;
}
