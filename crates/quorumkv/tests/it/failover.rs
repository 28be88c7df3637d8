//! Failures of whole nodes: kill -9 of the leader, of a follower that then
//! needs a snapshot, of every node at once; and a leader frozen by SIGSTOP.
//! Every acknowledged write must survive, and strong reads never go stale.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::harness::{secs, within, Cluster, NodeId, POLL};

fn key(i: u64) -> String {
    format!("fo-{i:03}")
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_killed_under_writes() {
    within(secs(180), async {
        let c = Cluster::start(3).await;
        let old = c.leader(secs(10)).await;
        let acked = AtomicUsize::new(0);

        // Sequential strong writes, round robin over live nodes; a failed
        // write is retried with the same key and value until acknowledged.
        let writer = async {
            let mut acks = Vec::new();
            let deadline = Instant::now() + secs(90);
            let mut attempt = 0;
            while acks.len() < 60 {
                let live = c.live();
                let via = live[attempt % live.len()];
                attempt += 1;
                let i = acks.len() as u64;
                match c.try_put(via, &key(i), format!("v{i}"), "strong").await {
                    Ok(r) if r.status == 200 => {
                        acks.push((i, r.index(), Instant::now()));
                        acked.store(acks.len(), Ordering::SeqCst);
                    }
                    Ok(r) => {
                        assert_eq!(r.status, 503, "write via node {via}: {r:?}");
                        r.error_code();
                        tokio::time::sleep(POLL).await;
                    }
                    Err(_) => tokio::time::sleep(POLL).await,
                }
                assert!(
                    Instant::now() < deadline,
                    "only {} writes acked",
                    acks.len()
                );
            }
            acks
        };
        let killer = async {
            while acked.load(Ordering::SeqCst) < 20 {
                tokio::time::sleep(POLL).await;
            }
            c.kill9(old);
            Instant::now()
        };
        let (acks, killed_at) = tokio::join!(writer, killer);

        let resumed = acks.iter().find(|(_, _, at)| *at > killed_at).unwrap();
        let outage = resumed.2 - killed_at;
        assert!(
            outage < secs(10),
            "writes resumed {outage:?} after the kill"
        );
        let new = c.leader(secs(10)).await;
        assert_ne!(new, old);
        for (i, _, _) in &acks {
            let r = c.get(new, &key(*i), "strong").await.expect(200);
            assert_eq!(r.text(), format!("v{i}"), "acknowledged write {i} lost");
        }

        c.restart(old).await;
        let (last, index, _) = *acks.last().unwrap();
        let r = c.read_at_least(old, &key(last), index).await.expect(200);
        assert_eq!(
            r.text(),
            format!("v{last}"),
            "old leader did not catch up: {r:?}"
        );
        for (i, _, _) in &acks {
            let r = c.get(old, &key(*i), "eventual").await.expect(200);
            assert_eq!(r.text(), format!("v{i}"), "old leader lacks write {i}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn follower_behind_purged_log_catches_up_by_snapshot() {
    within(secs(240), async {
        let flags = ["--snapshot-every", "50", "--keep-logs", "10"];
        let c = Cluster::start_with(3, &flags).await;
        let leader = c.leader(secs(10)).await;
        let f = c.others(leader)[0];
        let first = c.put_ok(leader, "first", "1").await;
        c.read_at_least(f, "first", first).await.expect(200);
        let f_applied = c.applied_index(f).await.expect("follower applied index");
        c.kill9(f);

        let last = put_keys(&c, leader).await;

        // The log F would need is gone: it can only catch up by snapshot.
        let deadline = Instant::now() + secs(30);
        loop {
            let info = c.info(leader).await;
            if info["purged_index"].as_u64().is_some_and(|p| p > f_applied) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "leader never purged past {f_applied}: {info}"
            );
            tokio::time::sleep(POLL).await;
        }

        c.restart(f).await;
        caught_up_by_snapshot(&c, f, last).await;
        assert_eq!(c.get(f, "first", "eventual").await.expect(200).text(), "1");
    })
    .await;
}

/// A follower that was fully caught up comes back with an empty data dir (a
/// replaced disk) after the leader has purged its log: the leader must accept
/// that its log went backwards, and the node catches up by snapshot.
#[tokio::test(flavor = "multi_thread")]
async fn a_replaced_follower_catches_up_by_snapshot() {
    within(secs(240), async {
        let flags = ["--snapshot-every", "50", "--keep-logs", "10"];
        let c = Cluster::start_with(3, &flags).await;
        let leader = c.leader(secs(10)).await;
        let f = c.others(leader)[0];
        let last = put_keys(&c, leader).await;
        c.read_at_least(f, &key(0), last).await.expect(200);
        let purged = c.info(leader).await["purged_index"].as_u64();
        assert!(purged.is_some_and(|p| p > 0), "leader never purged");

        // Its disk is lost: it is removed, and comes back empty as a new
        // member under its id (what `scripts/cluster.sh replace` does).
        c.kill9(f);
        let path = format!("/v1/cluster/members/{f}");
        c.call(leader, reqwest::Method::DELETE, &path, &[], Vec::new())
            .await
            .expect(200);
        c.rejoin_wiped(f).await;
        let after = c.put_ok(leader, "after-wipe", "1").await;

        caught_up_by_snapshot(&c, f, after).await;
        assert_eq!(
            c.get(f, "after-wipe", "strong").await.expect(200).text(),
            "1"
        );
        for id in c.ids() {
            assert!(
                !c.kit().log_tail(id, 100000).contains("panicked"),
                "node {id} panicked"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_acknowledged_write_survives_killing_all_nodes() {
    within(secs(180), async {
        let c = Cluster::start(3).await;
        c.leader(secs(10)).await;
        let ids = c.ids();
        for i in 0..100u64 {
            let via = ids[i as usize % ids.len()];
            c.put_ok(via, &key(i), format!("v{i}")).await;
        }
        for &id in &ids {
            c.kill9(id);
        }
        for &id in &ids {
            c.restart(id).await;
        }
        let leader = c.leader(secs(20)).await;
        for i in 0..100 {
            let r = c.get(leader, &key(i), "strong").await.expect(200);
            assert_eq!(r.text(), format!("v{i}"), "acknowledged write {i} lost");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn frozen_leader_steps_down_and_never_serves_stale_strong_reads() {
    frozen_leader_never_serves_stale_strong_reads(&[]).await;
}

/// The same with lease reads: a frozen leader's lease has run out when it
/// wakes (its clock kept running), so it must confirm with a quorum again.
#[tokio::test(flavor = "multi_thread")]
async fn frozen_leader_with_lease_reads_never_serves_stale_strong_reads() {
    frozen_leader_never_serves_stale_strong_reads(&["--strong-reads", "lease"]).await;
}

async fn frozen_leader_never_serves_stale_strong_reads(args: &[&str]) {
    within(secs(180), async {
        let c = Cluster::start_with(3, args).await;
        let old = c.leader(secs(10)).await;
        c.stop(old);
        let new = c.leader_among(&c.others(old), secs(10)).await;
        for n in 0..=5u64 {
            c.put_ok(new, "c", n.to_string()).await;
        }
        let acked = AtomicU64::new(5);
        let done = AtomicBool::new(false);
        c.cont(old);

        let writer = async {
            let mut next = 6;
            while !done.load(Ordering::SeqCst) {
                match c.try_put(new, "c", next.to_string(), "strong").await {
                    Ok(r) if r.status == 200 => {
                        acked.store(next, Ordering::SeqCst);
                        next += 1;
                    }
                    _ => tokio::time::sleep(POLL).await,
                }
            }
        };
        // The old leader first: right after SIGCONT it still believes it leads.
        let mut order = vec![old];
        order.extend(c.others(old));
        let reader = async {
            let started = Instant::now();
            let mut served = vec![0; order.len()];
            let mut stepped_down = false;
            loop {
                for (n, &id) in order.iter().enumerate() {
                    served[n] += strong_read_not_stale(&c, id, &acked).await as usize;
                }
                if !stepped_down {
                    let info = c.info(old).await;
                    let leader = info["leader"].as_u64();
                    stepped_down = leader.is_some() && leader != Some(old);
                }
                let enough = served.iter().all(|&s| s >= 3);
                if stepped_down && enough && started.elapsed() > secs(2) {
                    break;
                }
                let waited = started.elapsed();
                assert!(
                    waited < secs(30),
                    "after {waited:?}: stepped down {stepped_down}, 200s {served:?} on {order:?}"
                );
            }
            done.store(true, Ordering::SeqCst);
            eprintln!("strong reads answered 200 on {order:?}: {served:?}");
        };
        tokio::join!(writer, reader);
        let acked = acked.load(Ordering::SeqCst);
        assert!(acked >= 10, "writes via the new leader stalled at {acked}");
    })
    .await;
}

/// One strong read of "c" on `id`: a 503 is allowed, a value below what was
/// acknowledged before the read began is not. Returns whether it answered 200.
async fn strong_read_not_stale(c: &Cluster, id: NodeId, acked: &AtomicU64) -> bool {
    let before = acked.load(Ordering::SeqCst);
    let r = c.get(id, "c", "strong").await;
    if r.status == 503 {
        r.error_code();
        tokio::time::sleep(Duration::from_millis(10)).await;
        return false;
    }
    let r = r.expect(200);
    let value: u64 = r.text().parse().unwrap_or_else(|_| panic!("{r:?}"));
    assert!(
        value >= before,
        "stale strong read on node {id}: {value}, but {before} was acknowledged before: {r:?}"
    );
    true
}

/// Writes keys 0..300 through `leader`, 8 at a time; the highest index.
async fn put_keys(c: &Cluster, leader: NodeId) -> u64 {
    let indexes: Vec<u64> = futures::stream::iter(0..300u64)
        .map(|i| async move { c.put_ok(leader, &key(i), format!("v{i}")).await })
        .buffer_unordered(8)
        .collect()
        .await;
    indexes.into_iter().max().unwrap()
}

/// Waits until node `f` has applied `index`, then checks it holds a snapshot
/// and every key of [`put_keys`].
async fn caught_up_by_snapshot(c: &Cluster, f: NodeId, index: u64) {
    let deadline = Instant::now() + secs(60);
    while c.applied_index(f).await.unwrap_or(0) < index {
        let info = c.info(f).await;
        assert!(
            Instant::now() < deadline,
            "node {f} stuck below {index}: {info}"
        );
        tokio::time::sleep(POLL).await;
    }
    let info = c.info(f).await;
    assert!(
        info["snapshot_index"].as_u64().is_some(),
        "no snapshot on {f}: {info}"
    );
    for i in 0..300 {
        let r = c.get(f, &key(i), "eventual").await.expect(200);
        assert_eq!(r.text(), format!("v{i}"), "node {f}, key {}", key(i));
    }
}

/// Ten keys rewritten together by every transaction of
/// [`a_follower_killed_while_applying_comes_back_with_every_apply_whole`].
const ACCOUNTS: u64 = 10;

/// Round `r`'s value of account `j`: the ten always sum to 995, and each
/// round changes every one of them. Padded to make each apply write ~10 KB.
fn account_value(r: u64, j: u64) -> String {
    format!("{} {}", 95 + (j + r) % ACCOUNTS, "x".repeat(1000))
}

/// The sum of the accounts a node lists; panics on a missing key.
async fn accounts_sum(client: &quorumkv_testkit::Client) -> Option<u64> {
    let r = client
        .list("acct/", 100, &quorumkv_testkit::Opts::eventual())
        .await
        .ok()?;
    let listing = r.listing().ok()?;
    assert_eq!(listing.items.len() as u64, ACCOUNTS, "{listing:?}");
    Some(
        listing
            .items
            .iter()
            .map(|i| i.value.split(' ').next().unwrap().parse::<u64>().unwrap())
            .sum(),
    )
}

/// A follower killed (kill -9) again and again while it applies transactions
/// that rewrite ten keys at once comes back with every apply whole (the
/// state machine writes an apply without a sled batch: a redo record first,
/// replayed at open): its first listing after each restart, and every one
/// after, sums to the same total, and at the end it holds what the leader
/// holds.
#[tokio::test(flavor = "multi_thread")]
async fn a_follower_killed_while_applying_comes_back_with_every_apply_whole() {
    use quorumkv_testkit::{Op, Opts, Txn};
    within(secs(150), async {
        let c = Cluster::start(3).await;
        let leader = c.leader(secs(10)).await;
        let f = c.others(leader)[0];
        let txn = |r: u64| Txn {
            compare: vec![],
            success: (0..ACCOUNTS)
                .map(|j| Op::put(format!("acct/{j}"), account_value(r, j)))
                .collect(),
            failure: vec![],
        };
        let writer = c.client(leader);
        let first = writer.txn(&txn(0), &Opts::new()).await.unwrap();
        assert_eq!(first.status.as_u16(), 200, "{first:?}");
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let rounds = std::sync::Arc::new(AtomicU64::new(1));
        let write = {
            let (stop, rounds) = (stop.clone(), rounds.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let r = rounds.load(Ordering::SeqCst);
                    let resp = writer.txn(&txn(r), &Opts::new()).await.unwrap();
                    assert_eq!(resp.status.as_u16(), 200, "round {r}: {resp:?}");
                    rounds.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        for kill in 0..5u64 {
            tokio::time::sleep(Duration::from_millis(150 + 70 * kill)).await;
            c.kill9(f);
            c.restart(f).await;
            let deadline = Instant::now() + secs(30);
            let sum = loop {
                if let Some(sum) = accounts_sum(&c.client(f)).await {
                    break sum;
                }
                assert!(Instant::now() < deadline, "node {f} lists nothing");
                tokio::time::sleep(POLL).await;
            };
            assert_eq!(sum, 995, "node {f} after kill {kill}: a torn apply");
        }
        stop.store(true, Ordering::SeqCst);
        write.await.unwrap();
        let rounds = rounds.load(Ordering::SeqCst);
        assert!(rounds > 20, "only {rounds} transactions written");
        let want = c
            .client(leader)
            .list("acct/", 100, &Opts::strong())
            .await
            .unwrap();
        let index = want.raft_index().unwrap();
        let want = want.listing().unwrap().items;
        for id in c.ids() {
            let r = c
                .client(id)
                .list("acct/", 100, &Opts::eventual().min_index(index))
                .await
                .unwrap();
            assert_eq!(r.listing().unwrap().items, want, "node {id} differs");
        }
    })
    .await;
}
