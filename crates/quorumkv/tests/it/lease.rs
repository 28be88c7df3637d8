//! Leases against real clusters: expiry deletes the keys on every node (and
//! watchers see the deletes); a kept-alive lease survives a leader kill; a
//! revoke ends it at once; bad input is a 4xx.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use quorumkv_testkit::client::Opts;
use quorumkv_testkit::watch::{WatchEvent, WatchQuery};
use quorumkv_testkit::Client;
use reqwest::Method;

use crate::harness::{ok, secs, within, Cluster, NodeId, POLL};
use crate::http::{api_error, sent};

async fn grant(c: &Cluster, id: NodeId, ttl: &str) -> u64 {
    let r = sent(c.client(id).lease_grant(ttl).await);
    assert_eq!(r.status, 201, "{r:?}");
    r.json::<serde_json::Value>().unwrap()["id"]
        .as_u64()
        .expect("lease id")
}

async fn put_leased(c: &Cluster, id: NodeId, key: &str, lease: u64) -> u64 {
    let opts = Client::lease_opts(&Opts::strong(), lease);
    let r = sent(c.client(id).put(key, "held", &opts).await);
    assert_eq!(r.status, 200, "{r:?}");
    r.raft_index().expect("index")
}

/// Waits until `key` is absent on node `id` (eventual reads, polled).
async fn gone_on(c: &Cluster, id: NodeId, key: &str, within_: Duration) {
    let deadline = Instant::now() + within_;
    loop {
        let r = c.get(id, key, "eventual").await;
        if r.status == 404 {
            return;
        }
        assert!(Instant::now() < deadline, "{key} still on node {id}: {r:?}");
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_lease_takes_its_keys_from_every_node() {
    within(secs(90), async {
        let c = Cluster::start(3).await;
        let leader = c.leader(secs(10)).await;
        let follower = c.others(leader)[0];
        let lease = grant(&c, follower, "2s").await;
        let mut watch = match ok(
            "watch",
            c.client(follower).watch(&WatchQuery::prefix("ex/")).await,
        ) {
            Ok(w) => w,
            Err(r) => panic!("{r:?}"),
        };
        let mut keys = Vec::new();
        for (i, via) in c.ids().into_iter().enumerate() {
            let key = format!("ex/{i}");
            put_leased(&c, via, &key, lease).await;
            keys.push(key);
        }
        c.put_ok(leader, "ex/kept", "no lease").await;
        let info = sent(c.client(follower).lease_info(lease).await);
        let info: serde_json::Value = info.ok_json().unwrap();
        assert_eq!(info["keys"].as_array().unwrap().len(), 3, "{info}");
        assert!(info["remaining_ms"].as_u64().unwrap() <= 2000);
        let granted = Instant::now();
        for id in c.ids() {
            for key in &keys {
                gone_on(&c, id, key, secs(15)).await;
            }
        }
        assert!(
            granted.elapsed() >= Duration::from_millis(1500),
            "expired early"
        );
        c.get(leader, "ex/kept", "strong").await.expect(200);
        let r = sent(c.client(leader).lease_info(lease).await);
        api_error(&r, 404, "lease_not_found");
        // Watchers saw the three puts, the unleased put, then the three deletes at one index.
        let mut deletes = Vec::new();
        while deletes.len() < 3 {
            match ok("event", watch.next(secs(10)).await) {
                Some(WatchEvent::Change(ch)) if !ch.is_put() => deletes.push(ch),
                Some(WatchEvent::Change(_)) | Some(WatchEvent::Progress(_)) => {}
                other => panic!("{other:?}"),
            }
        }
        assert!(
            deletes.iter().all(|d| d.index == deletes[0].index),
            "{deletes:?}"
        );
        assert!(deletes[2].ends_index);
        // A put to the expired lease is refused.
        let opts = Client::lease_opts(&Opts::strong(), lease);
        let r = sent(c.client(leader).put("ex/late", "x", &opts).await);
        api_error(&r, 404, "lease_not_found");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kept_alive_lease_survives_a_leader_kill() {
    within(secs(120), async {
        let c = Cluster::start(3).await;
        let leader = c.leader(secs(10)).await;
        let lease = grant(&c, leader, "3s").await;
        put_leased(&c, leader, "ka/holder", lease).await;
        let stop = AtomicBool::new(false);
        // The owner keeps it alive every 500 ms through whichever node answers.
        let keeper = async {
            let mut n = 0usize;
            let mut failures_in_a_row = 0;
            while !stop.load(Ordering::SeqCst) {
                let live = c.live();
                let via = live[n % live.len()];
                n += 1;
                match c.client(via).lease_keepalive(lease).await {
                    Ok(r) if r.status == 200 => failures_in_a_row = 0,
                    Ok(r) if r.status == 404 => panic!("lease lost: {r:?}"),
                    _ => failures_in_a_row += 1,
                }
                assert!(failures_in_a_row < 40, "keepalives failed for 20 s");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        };
        let fault = async {
            tokio::time::sleep(secs(2)).await;
            c.kill9(leader);
            let new = c.leader_among(&c.live(), secs(15)).await;
            // Past two TTLs under the new leader, the key must still be there.
            tokio::time::sleep(secs(7)).await;
            for id in c.live() {
                c.get(id, "ka/holder", "strong").await.expect(200);
            }
            stop.store(true, Ordering::SeqCst);
            new
        };
        let ((), new) = tokio::join!(keeper, fault);
        // Without keepalives it goes within its TTL (plus the check period).
        gone_on(&c, new, "ka/holder", secs(10)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoke_ends_a_lease_at_once_and_bad_input_is_refused() {
    within(secs(60), async {
        let c = Cluster::start(1).await;
        let lease = grant(&c, 1, "1m").await;
        put_leased(&c, 1, "rv/a", lease).await;
        put_leased(&c, 1, "rv/b", lease).await;
        let list: serde_json::Value = c
            .call(1, Method::GET, "/v1/leases", &[], Vec::new())
            .await
            .expect(200)
            .json();
        assert_eq!(list["leases"][0]["id"], lease, "{list}");
        let r = sent(c.client(1).lease_revoke(lease).await);
        let body: serde_json::Value = r.ok_json().unwrap();
        assert_eq!(body["deleted"], 2, "{body}");
        c.get(1, "rv/a", "strong").await.expect(404);
        let r = sent(c.client(1).lease_revoke(lease).await);
        api_error(&r, 404, "lease_not_found");
        let r = sent(c.client(1).lease_keepalive(lease).await);
        api_error(&r, 404, "lease_not_found");

        for ttl in ["abc", "0s", "500ms", "400d"] {
            let r = sent(c.client(1).lease_grant(ttl).await);
            api_error(&r, 400, "invalid_body");
        }
        let bodies: [&[u8]; 3] = [b"", b"{", b"{\"ttl\":\"5s\",\"x\":1}"];
        for body in bodies {
            let r = c
                .call(1, Method::POST, "/v1/lease", &[], body.to_vec())
                .await;
            assert_eq!(r.status, 400, "{r:?}");
        }
        let r = c
            .call(
                1,
                Method::POST,
                "/v1/lease",
                &[("x-consistency", "eventual")],
                b"{\"ttl\":\"5s\"}".to_vec(),
            )
            .await;
        assert_eq!(r.status, 400, "{r:?}");
        let r = c
            .call(
                1,
                Method::PUT,
                "/v1/kv/rv/c",
                &[("x-lease", "abc")],
                b"x".to_vec(),
            )
            .await;
        assert_eq!(r.status, 400, "{r:?}");
        let r = c
            .call(1, Method::POST, "/v1/lease/abc/keepalive", &[], Vec::new())
            .await;
        assert_eq!(r.status, 400, "{r:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lock_recipe_holds_through_a_leader_kill_and_a_paused_holder() {
    within(secs(180), async {
        let c = Cluster::start(3).await;
        let cfg = quorumkv_testkit::lock::LockConfig::default();
        let report = ok("lock run", quorumkv_testkit::lock::run(c.kit(), &cfg).await);
        println!("{report}");
        assert!(report.ok(), "{report}");
        assert!(report.kill.killed.is_some(), "{report}");
    })
    .await;
}
