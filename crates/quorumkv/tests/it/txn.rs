//! `POST /v1/txn`: every compare kind both true and false, both branches,
//! atomicity (a failed transaction changes nothing; a successful one changes
//! everything at one index), gets that see the transaction's own earlier
//! operations, and the consistency levels. Malformed ones: `bad_txn.rs`.

use quorumkv_testkit::{Client, Opts, Response, Txn};
use quorumkv_testkit::{Compare, Op, OpResult, TxnAck};

use crate::harness::{secs, within, Cluster};
use crate::http::{api_error, sent, status};

async fn one_node(flags: &[&str]) -> (Cluster, Client) {
    let c = Cluster::start_with(1, flags).await;
    let id = c.leader(secs(10)).await;
    let client = c.client(id);
    (c, client)
}

async fn txn(k: &Client, t: &Txn) -> (Response, TxnAck) {
    let r = sent(k.txn(t, &Opts::new()).await);
    let ack = status(&r, 200).txn_ack().unwrap();
    assert_eq!(r.raft_index(), Some(ack.index), "{r:?}");
    assert_eq!(ack.consistency, "strong", "{r:?}");
    (r, ack)
}

/// Value and ETag of a key by strong read; `None` if absent.
async fn read(k: &Client, key: &str) -> Option<(String, u64)> {
    let r = sent(k.get(key, &Opts::strong()).await);
    match r.status.as_u16() {
        404 => None,
        200 => Some((r.text(), r.etag().unwrap())),
        _ => panic!("GET {key}: {r:?}"),
    }
}

async fn put(k: &Client, key: &str, value: &str) -> u64 {
    let r = sent(k.put(key, value.to_string(), &Opts::new()).await);
    status(&r, 200).write_ack().unwrap().index
}

fn got(key: &str, value: Option<&str>, mod_index: Option<u64>) -> OpResult {
    OpResult::Get {
        key: key.into(),
        found: value.is_some(),
        value: value.map(String::from),
        encoding: value.map(|_| "utf8".into()),
        mod_index,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_compare_kind_holds_and_fails() {
    within(secs(60), async {
        let (_c, k) = one_node(&[]).await;
        let n = put(&k, "n", "100").await;
        put(&k, "neg", "-5").await;
        put(&k, "text", "abc").await;
        // (compare, holds?)
        let cases = [
            (Compare::value_eq("n", "100"), true),
            (Compare::value_eq("n", "101"), false),
            (Compare::value_eq("missing", ""), false),
            (Compare::mod_index_eq("n", n), true),
            (Compare::mod_index_eq("n", n + 1), false),
            (Compare::mod_index_eq("missing", 0), false),
            (Compare::exists("n"), true),
            (Compare::exists("missing"), false),
            (Compare::absent("missing"), true),
            (Compare::absent("n"), false),
            (Compare::ge("n", 100), true),
            (Compare::ge("n", -7), true),
            (Compare::ge("n", 101), false),
            (Compare::ge("text", 0), false),
            (Compare::ge("missing", i64::MIN), false),
            (Compare::le("n", 100), true),
            (Compare::le("neg", -5), true),
            (Compare::le("n", 99), false),
            (Compare::le("text", i64::MAX), false),
            (Compare::le("missing", i64::MAX), false),
        ];
        for (compare, holds) in cases {
            let t = Txn {
                compare: vec![compare.clone()],
                success: vec![Op::get("n")],
                failure: vec![Op::get("neg"), Op::get("text")],
            };
            let (r, ack) = txn(&k, &t).await;
            assert_eq!(ack.succeeded, Some(holds), "{compare:?}: {r:?}");
            let results = ack.results.unwrap();
            let want_keys: &[&str] = if holds { &["n"] } else { &["neg", "text"] };
            let keys: Vec<&str> = results
                .iter()
                .map(|res| match res {
                    OpResult::Get { key, .. } => key.as_str(),
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(keys, want_keys, "{compare:?}: wrong branch ran: {r:?}");
        }

        // Several compares: all must hold.
        let all = |last: Compare| Txn {
            compare: vec![Compare::exists("n"), Compare::ge("n", 1), last],
            ..Txn::default()
        };
        assert_eq!(
            txn(&k, &all(Compare::absent("missing"))).await.1.succeeded,
            Some(true)
        );
        assert_eq!(
            txn(&k, &all(Compare::absent("n"))).await.1.succeeded,
            Some(false)
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_branch_runs_its_own_operations() {
    within(secs(60), async {
        let (_c, k) = one_node(&[]).await;
        put(&k, "stock", "3").await;
        put(&k, "old", "x").await;
        let buy = |compare: Compare| Txn {
            compare: vec![compare],
            success: vec![
                Op::put("stock", "2"),
                Op::delete("old"),
                Op::delete("never"),
            ],
            failure: vec![Op::put("sold-out", "yes"), Op::get("stock")],
        };

        let (r, ack) = txn(&k, &buy(Compare::ge("stock", 5))).await;
        assert_eq!(ack.succeeded, Some(false), "{r:?}");
        let stock = read(&k, "stock").await.unwrap();
        assert_eq!(
            ack.results.unwrap(),
            vec![OpResult::Put, got("stock", Some("3"), Some(stock.1))]
        );
        assert_eq!(read(&k, "sold-out").await, Some(("yes".into(), ack.index)));
        assert_eq!(read(&k, "old").await.map(|v| v.0).as_deref(), Some("x"));

        let (r, ack) = txn(&k, &buy(Compare::ge("stock", 1))).await;
        assert_eq!(ack.succeeded, Some(true), "{r:?}");
        assert_eq!(
            ack.results.unwrap(),
            vec![
                OpResult::Put,
                OpResult::Delete { deleted: true },
                OpResult::Delete { deleted: false }
            ]
        );
        assert_eq!(read(&k, "stock").await, Some(("2".into(), ack.index)));
        assert_eq!(read(&k, "old").await, None);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_transaction_changes_nothing() {
    within(secs(60), async {
        let (_c, k) = one_node(&[]).await;
        let a = put(&k, "a", "10").await;
        let b = put(&k, "b", "20").await;
        let c_ = put(&k, "c", "30").await;
        // Every compare but the last holds; the success branch would change all.
        let t = Txn {
            compare: vec![
                Compare::mod_index_eq("a", a),
                Compare::mod_index_eq("b", b),
                Compare::value_eq("c", "31"),
            ],
            success: vec![
                Op::put("a", "0"),
                Op::put("b", "0"),
                Op::delete("c"),
                Op::put("d", "new"),
            ],
            failure: vec![],
        };
        let (r, ack) = txn(&k, &t).await;
        assert_eq!(ack.succeeded, Some(false), "{r:?}");
        assert_eq!(ack.results, Some(vec![]), "{r:?}");
        assert_eq!(read(&k, "a").await, Some(("10".into(), a)));
        assert_eq!(read(&k, "b").await, Some(("20".into(), b)));
        assert_eq!(read(&k, "c").await, Some(("30".into(), c_)));
        assert_eq!(read(&k, "d").await, None);

        // A rejected transaction changes nothing either, not even its first op.
        let bad = br#"{"success":[{"op":"put","key":"a","value":"0"},{"op":"put","key":"","value":"1"}]}"#;
        api_error(&sent(k.txn_raw(&bad[..], &Opts::new()).await), 400, "invalid_key");
        assert_eq!(read(&k, "a").await, Some(("10".into(), a)));

        // A successful one changes everything, at one index.
        let t = Txn {
            compare: vec![Compare::value_eq("c", "30")],
            ..t
        };
        let (_, ack) = txn(&k, &t).await;
        assert_eq!(ack.succeeded, Some(true));
        for key in ["a", "b"] {
            assert_eq!(read(&k, key).await, Some(("0".into(), ack.index)));
        }
        assert_eq!(read(&k, "c").await, None);
        assert_eq!(read(&k, "d").await, Some(("new".into(), ack.index)));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gets_see_earlier_operations_of_the_same_transaction() {
    within(secs(60), async {
        let (_c, k) = one_node(&[]).await;
        let before = put(&k, "x", "old").await;
        let t = Txn {
            success: vec![
                Op::get("x"),
                Op::put("x", "new"),
                Op::get("x"),
                Op::delete("x"),
                Op::get("x"),
                Op::put("y", "1"),
                Op::get("y"),
            ],
            ..Txn::default()
        };
        let (_, ack) = txn(&k, &t).await;
        let i = ack.index;
        assert_eq!(
            ack.results.unwrap(),
            vec![
                got("x", Some("old"), Some(before)),
                OpResult::Put,
                got("x", Some("new"), Some(i)),
                OpResult::Delete { deleted: true },
                got("x", None, None),
                OpResult::Put,
                got("y", Some("1"), Some(i)),
            ]
        );
        assert_eq!(read(&k, "x").await, None);
        assert_eq!(read(&k, "y").await, Some(("1".into(), i)));

        // Values that are not UTF-8 go in and come out as base64.
        let bin = br#"{"success":[{"op":"put","key":"bin","value_base64":"AP8="},{"op":"get","key":"bin"}]}"#;
        let r = sent(k.txn_raw(&bin[..], &Opts::new()).await);
        let ack = status(&r, 200).txn_ack().unwrap();
        let want = OpResult::Get {
            key: "bin".into(),
            found: true,
            value: Some("AP8=".into()),
            encoding: Some("base64".into()),
            mod_index: Some(ack.index),
        };
        assert_eq!(ack.results.unwrap()[1], want, "{r:?}");
        let r = sent(k.get("bin", &Opts::strong()).await);
        assert_eq!(&status(&r, 200).body[..], &[0u8, 255][..]);
        let cmp = br#"{"compare":[{"key":"bin","test":"value_eq","value_base64":"AP8="}]}"#;
        let r = sent(k.txn_raw(&cmp[..], &Opts::new()).await);
        assert_eq!(status(&r, 200).txn_ack().unwrap().succeeded, Some(true), "{r:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn transactions_take_the_write_levels_through_any_node() {
    within(secs(60), async {
        let c = Cluster::start(3).await;
        let leader = c.leader(secs(10)).await;
        let f = c.client(c.others(leader)[0]);
        let t = Txn {
            compare: vec![Compare::absent("lvl")],
            success: vec![Op::put("lvl", "1")],
            failure: vec![],
        };
        let (r, ack) = txn(&f, &t).await;
        assert_eq!(ack.succeeded, Some(true), "{r:?}");
        assert_eq!(r.header("x-consistency"), Some("strong"));

        // eventual: 202 once in the leader's log, before it applies: no outcome.
        let t2 = Txn {
            success: vec![Op::put("lvl", "2")],
            ..Txn::default()
        };
        let r = sent(f.txn(&t2, &Opts::eventual()).await);
        let ack = status(&r, 202).txn_ack().unwrap();
        assert_eq!(ack.consistency, "eventual");
        assert_eq!((ack.succeeded, &ack.results), (None, &None), "{r:?}");
        let body: serde_json::Value = r.json().unwrap();
        assert!(body.get("succeeded").is_none() && body.get("results").is_none());
        for id in c.ids() {
            let opts = Opts::eventual().min_index(ack.index);
            let r = sent(c.client(id).get("lvl", &opts).await);
            assert_eq!(status(&r, 200).text(), "2", "node {id}");
        }

        // all: applied on every voter when acknowledged.
        let t3 = Txn {
            success: vec![Op::put("lvl", "3")],
            ..Txn::default()
        };
        let opts = Opts::new().consistency(quorumkv_testkit::ConsistencyLevel::All);
        let r = sent(f.txn(&t3, &opts).await);
        let ack = status(&r, 200).txn_ack().unwrap();
        assert_eq!(
            (ack.consistency.as_str(), ack.succeeded),
            ("all", Some(true))
        );
        for id in c.ids() {
            let r = sent(c.client(id).get("lvl", &Opts::eventual()).await);
            assert_eq!(status(&r, 200).text(), "3", "node {id}: {r:?}");
        }
    })
    .await;
}
