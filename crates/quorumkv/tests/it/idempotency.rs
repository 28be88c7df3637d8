//! Exactly-once retries: a write or transaction retried with the same
//! `Idempotency-Key` and the same request gets the original answer and index
//! (`Idempotent-Replayed: true`) and is not applied again, also when the
//! retry goes to another node after the leader was killed; the same key with
//! a different request is a 422.

use quorumkv_testkit::{Client, Opts, Response, Txn};
use quorumkv_testkit::{Compare, Op};

use crate::harness::{secs, within, Cluster};
use crate::http::{api_error, sent, status};

async fn one_node() -> (Cluster, Client) {
    let c = Cluster::start(1).await;
    let id = c.leader(secs(10)).await;
    let client = c.client(id);
    (c, client)
}

async fn read(k: &Client, key: &str) -> Option<(String, u64)> {
    let r = sent(k.get(key, &Opts::strong()).await);
    match r.status.as_u16() {
        404 => None,
        200 => Some((r.text(), r.etag().unwrap())),
        _ => panic!("GET {key}: {r:?}"),
    }
}

fn keyed(key: &str) -> Opts {
    Opts::new().idempotency_key(key)
}

/// Asserts `retry` is a replay of `first`: same status, index and body.
#[track_caller]
fn is_replay(first: &Response, retry: &Response) {
    assert!(!first.replayed(), "first answer says replayed: {first:?}");
    assert!(retry.replayed(), "no Idempotent-Replayed: {retry:?}");
    assert_eq!(retry.status, first.status, "{retry:?}");
    assert_eq!(retry.raft_index(), first.raft_index(), "{retry:?}");
    assert_eq!(retry.body, first.body, "{retry:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_put_is_answered_from_the_original_and_not_applied_again() {
    within(secs(60), async {
        let (_c, k) = one_node().await;
        let first = sent(k.put("pay/1", "100", &keyed("pay-1")).await);
        let index = status(&first, 200).write_ack().unwrap().index;
        // Someone else writes the key; a re-applied retry would undo that.
        let other = sent(k.put("pay/1", "0", &Opts::new()).await);
        let other = status(&other, 200).write_ack().unwrap().index;

        let retry = sent(k.put("pay/1", "100", &keyed("pay-1")).await);
        is_replay(&first, &retry);
        assert_eq!(retry.write_ack().unwrap().index, index);
        assert_eq!(read(&k, "pay/1").await, Some(("0".into(), other)));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retried_deletes_and_transactions_replay_their_results() {
    within(secs(60), async {
        let (_c, k) = one_node().await;
        status(&sent(k.put("d", "x", &Opts::new()).await), 200);
        let first = sent(k.delete("d", &keyed("del-1")).await);
        assert_eq!(status(&first, 200).write_ack().unwrap().deleted, Some(true));
        let retry = sent(k.delete("d", &keyed("del-1")).await);
        is_replay(&first, &retry); // deleted:true again, though d is gone

        let balance = sent(k.put("acct", "100", &Opts::new()).await);
        let at = status(&balance, 200).write_ack().unwrap().index;
        let debit = Txn {
            compare: vec![Compare::mod_index_eq("acct", at)],
            success: vec![Op::put("acct", "70"), Op::get("acct")],
            failure: vec![Op::get("acct")],
        };
        let first = sent(k.txn(&debit, &keyed("debit-1")).await);
        let ack = status(&first, 200).txn_ack().unwrap();
        assert_eq!(ack.succeeded, Some(true));
        // Without the key, this retry would fail its compare: the mod index moved.
        let retry = sent(k.txn(&debit, &keyed("debit-1")).await);
        is_replay(&first, &retry);
        assert_eq!(retry.txn_ack().unwrap(), ack);
        assert_eq!(read(&k, "acct").await, Some(("70".into(), ack.index)));

        // A failed precondition is an answer too, replayed as such: the seat
        // is free by the time of the retry, yet the retry does not take it.
        let taken = sent(k.put("seat", "someone", &Opts::new()).await);
        let taken = status(&taken, 200).write_ack().unwrap().index;
        let book = keyed("book-1").if_none_match();
        let first = sent(k.put("seat", "me", &book).await);
        let e = api_error(&first, 412, "precondition_failed");
        assert_eq!(e.current_index, Some(taken));
        status(&sent(k.delete("seat", &Opts::new()).await), 200);
        let retry = sent(k.put("seat", "me", &book).await);
        let e = api_error(&retry, 412, "precondition_failed");
        assert_eq!(e.current_index, Some(taken), "{retry:?}");
        assert_eq!(retry.raft_index(), first.raft_index(), "{retry:?}");
        assert_eq!(read(&k, "seat").await, None, "the retry was applied");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_key_for_a_different_request_is_422() {
    within(secs(60), async {
        let (_c, k) = one_node().await;
        let first = sent(k.put("p", "100", &keyed("k-1")).await);
        let index = status(&first, 200).write_ack().unwrap().index;
        let txn = Txn {
            success: vec![Op::put("p", "100")],
            ..Txn::default()
        };
        let different = [
            sent(k.put("p", "999", &keyed("k-1")).await),
            sent(k.put("q", "100", &keyed("k-1")).await),
            sent(k.put("p", "100", &keyed("k-1").if_none_match()).await),
            sent(k.delete("p", &keyed("k-1")).await),
            sent(k.txn(&txn, &keyed("k-1")).await),
        ];
        for r in &different {
            let e = api_error(r, 422, "idempotency_key_reused");
            assert!(e.message.contains("k-1"), "{r:?}");
        }
        assert_eq!(read(&k, "p").await, Some(("100".into(), index)));
        assert_eq!(read(&k, "q").await, None);
        // The original still replays.
        is_replay(&first, &sent(k.put("p", "100", &keyed("k-1")).await));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_eventual_retry_is_acknowledged_again_but_applied_once() {
    within(secs(60), async {
        let (_c, k) = one_node().await;
        let opts = Opts::eventual().idempotency_key("feed-1");
        // 202 comes before the state machine sees the key: no replay yet.
        let first = sent(k.put("feed", "hello", &opts).await);
        let first = status(&first, 202).write_ack().unwrap().index;
        let read_opts = Opts::eventual().min_index(first);
        status(&sent(k.get("feed", &read_opts).await), 200);
        let other = sent(k.put("feed", "edited", &Opts::new()).await);
        let other = status(&other, 200).write_ack().unwrap().index;

        let retry = sent(k.put("feed", "hello", &opts).await);
        let retry = status(&retry, 202).write_ack().unwrap().index;
        assert!(retry > other, "a new log entry: {retry} vs {other}");
        let r = sent(k.get("feed", &Opts::eventual().min_index(retry)).await);
        assert_eq!(
            status(&r, 200).text(),
            "edited",
            "the retry was applied again"
        );
        assert_eq!(r.etag(), Some(other));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_after_the_leader_is_killed_is_applied_once() {
    within(secs(120), async {
        let c = Cluster::start(3).await;
        let old = c.leader(secs(10)).await;
        let (f, g) = (c.others(old)[0], c.others(old)[1]);
        let transfer = Txn {
            compare: vec![Compare::absent("xfer/7")],
            success: vec![
                Op::put("xfer/7", "alice->bob 30"),
                Op::put("acct/alice", "70"),
                Op::put("acct/bob", "130"),
            ],
            failure: vec![Op::get("xfer/7")],
        };
        // Through a follower, so the leader applies it and answers via F.
        let first = sent(c.client(f).txn(&transfer, &keyed("xfer-7")).await);
        let ack = status(&first, 200).txn_ack().unwrap();
        assert_eq!(ack.succeeded, Some(true));
        // Overwrite one balance: a retry that re-applied would undo this.
        let fix = sent(c.client(g).put("acct/bob", "131", &Opts::new()).await);
        let fix = status(&fix, 200).write_ack().unwrap().index;

        c.kill9(old);
        let new = c.leader_among(&[f, g], secs(20)).await;
        assert_ne!(new, old);
        // The client's retry goes to the node that did not take the first try.
        let retry = sent(c.client(g).txn(&transfer, &keyed("xfer-7")).await);
        is_replay(&first, &retry);
        assert_eq!(retry.txn_ack().unwrap(), ack);
        let bob = read(&c.client(f), "acct/bob").await;
        assert_eq!(
            bob,
            Some(("131".into(), fix)),
            "retry re-applied the transfer"
        );
        let alice = read(&c.client(g), "acct/alice").await;
        assert_eq!(alice, Some(("70".into(), ack.index)));

        // The old leader comes back with the same answer for the key.
        c.restart(old).await;
        let opts = Opts::eventual().min_index(fix);
        let r = sent(c.client(old).get("acct/bob", &opts).await);
        assert_eq!(status(&r, 200).text(), "131");
        let again = sent(c.client(old).txn(&transfer, &keyed("xfer-7")).await);
        is_replay(&first, &again);
    })
    .await;
}
