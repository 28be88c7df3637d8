//! Conditional writes in HTTP's terms: `ETag` is a key's modification index;
//! `If-Match: "<index>"`, `If-Match: *` and `If-None-Match: *` on PUT and
//! DELETE apply only when they hold, else 412 with the key's current index,
//! and nothing changes. The check happens in the state machine, in log order.

use futures::StreamExt;
use quorumkv_testkit::{Client, Opts};

use crate::harness::{secs, within, Cluster, NodeId};
use crate::http::{api_error, sent, status};

async fn one_node() -> (Cluster, Client) {
    let c = Cluster::start(1).await;
    let id = c.leader(secs(10)).await;
    let client = c.client(id);
    (c, client)
}

/// Value and ETag of a key by strong read; `None` if absent (404).
async fn read(client: &Client, key: &str) -> Option<(String, u64)> {
    let r = sent(client.get(key, &Opts::strong()).await);
    match r.status.as_u16() {
        404 => None,
        200 => Some((r.text(), r.etag().unwrap_or_else(|| panic!("{r:?}")))),
        _ => panic!("GET {key}: {r:?}"),
    }
}

/// A strong PUT that must answer 200; returns its index.
async fn put(client: &Client, key: &str, value: &str, opts: Opts) -> u64 {
    let r = sent(client.put(key, value.to_string(), &opts).await);
    let ack = status(&r, 200).write_ack().unwrap();
    assert_eq!(r.raft_index(), Some(ack.index), "{r:?}");
    ack.index
}

#[tokio::test(flavor = "multi_thread")]
async fn etag_is_the_index_of_the_last_write_on_every_node() {
    within(secs(60), async {
        let c = Cluster::start(3).await;
        let leader = c.leader(secs(10)).await;
        let via: NodeId = c.others(leader)[0];
        let first = put(&c.client(via), "tag", "one", Opts::new()).await;
        let second = put(&c.client(leader), "tag", "two", Opts::new()).await;
        assert!(second > first);
        for id in c.ids() {
            let r = sent(c.client(id).get("tag", &Opts::strong()).await);
            status(&r, 200);
            assert_eq!(r.header("etag"), Some(&*format!("\"{second}\"")), "{r:?}");
            let opts = Opts::eventual().min_index(second);
            let r = sent(c.client(id).get("tag", &opts).await);
            assert_eq!(r.etag(), Some(second), "eventual read on {id}: {r:?}");
        }
        // A delete and a re-create start a new modification index.
        let d = sent(c.client(via).delete("tag", &Opts::new()).await);
        status(&d, 200);
        let again = put(&c.client(via), "tag", "three", Opts::new()).await;
        assert_eq!(
            read(&c.client(leader), "tag").await,
            Some(("three".into(), again))
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn if_match_applies_only_at_the_current_index() {
    within(secs(60), async {
        let (_c, k) = one_node().await;
        let first = put(&k, "acct", "100", Opts::new()).await;
        let second = put(&k, "acct", "70", Opts::new().if_match(first)).await;
        assert_eq!(read(&k, "acct").await, Some(("70".into(), second)));

        // A stale ETag: 412 with the current index; nothing changes.
        let r = sent(k.put("acct", "40", &Opts::new().if_match(first)).await);
        let e = api_error(&r, 412, "precondition_failed");
        assert_eq!(e.current_index, Some(second), "{r:?}");
        // Checked in the state machine: the 412 names the log index it was decided at.
        assert!(r.raft_index().is_some_and(|i| i > second), "{r:?}");
        assert_eq!(read(&k, "acct").await, Some(("70".into(), second)));

        // On an absent key: 412, current_index null, still absent.
        let r = sent(k.put("nobody", "1", &Opts::new().if_match(second)).await);
        api_error(&r, 412, "precondition_failed");
        let body: serde_json::Value = r.json().unwrap();
        assert!(body["error"]["current_index"].is_null(), "{r:?}");
        assert!(body["error"].get("current_index").is_some(), "{r:?}");
        assert_eq!(read(&k, "nobody").await, None);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn if_match_star_needs_the_key_to_exist() {
    within(secs(60), async {
        let (_c, k) = one_node().await;
        let r = sent(k.put("cfg", "on", &Opts::new().if_match_any()).await);
        let e = api_error(&r, 412, "precondition_failed");
        assert_eq!(e.current_index, None, "{r:?}");
        assert_eq!(read(&k, "cfg").await, None);

        let first = put(&k, "cfg", "off", Opts::new()).await;
        let second = put(&k, "cfg", "on", Opts::new().if_match_any()).await;
        assert!(second > first);
        assert_eq!(read(&k, "cfg").await, Some(("on".into(), second)));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn if_none_match_star_creates_only_once() {
    within(secs(60), async {
        let (_c, k) = one_node().await;
        let created = put(&k, "seat/1", "alice", Opts::new().if_none_match()).await;
        let r = sent(k.put("seat/1", "bob", &Opts::new().if_none_match()).await);
        let e = api_error(&r, 412, "precondition_failed");
        assert_eq!(e.current_index, Some(created), "{r:?}");
        assert_eq!(read(&k, "seat/1").await, Some(("alice".into(), created)));

        // Eventual: acknowledged (202) before the check runs, which then fails.
        let opts = Opts::eventual().if_none_match();
        let r = sent(k.put("seat/1", "carol", &opts).await);
        let index = status(&r, 202).write_ack().unwrap().index;
        let r = sent(k.get("seat/1", &Opts::eventual().min_index(index)).await);
        assert_eq!(status(&r, 200).text(), "alice");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn conditional_delete() {
    within(secs(60), async {
        let (_c, k) = one_node().await;
        let first = put(&k, "lock", "a", Opts::new()).await;
        let second = put(&k, "lock", "b", Opts::new()).await;

        let r = sent(k.delete("lock", &Opts::new().if_match(first)).await);
        let e = api_error(&r, 412, "precondition_failed");
        assert_eq!(e.current_index, Some(second), "{r:?}");
        assert_eq!(read(&k, "lock").await, Some(("b".into(), second)));

        let r = sent(k.delete("lock", &Opts::new().if_match(second)).await);
        let ack = status(&r, 200).write_ack().unwrap();
        assert_eq!(ack.deleted, Some(true), "{r:?}");
        assert_eq!(read(&k, "lock").await, None);

        for opts in [Opts::new().if_match_any(), Opts::new().if_match(second)] {
            let r = sent(k.delete("lock", &opts).await);
            let e = api_error(&r, 412, "precondition_failed");
            assert_eq!(e.current_index, None, "{r:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn racing_creates_through_every_node_have_one_winner() {
    within(secs(60), async {
        let c = Cluster::start(3).await;
        c.leader(secs(10)).await;
        let ids = c.ids();
        let c = &c;
        let answers: Vec<(usize, u16)> = futures::stream::iter(0..24usize)
            .map(|i| {
                let client = c.client(ids[i % ids.len()]);
                async move {
                    let opts = Opts::new().if_none_match();
                    let r = client.put("race", format!("buyer-{i}"), &opts).await;
                    (i, sent(r).status.as_u16())
                }
            })
            .buffer_unordered(24)
            .collect()
            .await;
        let winners: Vec<usize> = answers.iter().filter(|a| a.1 == 200).map(|a| a.0).collect();
        assert_eq!(winners.len(), 1, "answers {answers:?}");
        assert!(
            answers.iter().all(|a| a.1 == 200 || a.1 == 412),
            "{answers:?}"
        );
        let (value, _) = read(&c.client(ids[0]), "race").await.unwrap();
        assert_eq!(value, format!("buyer-{}", winners[0]));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_preconditions_are_400() {
    within(secs(60), async {
        let (_c, k) = one_node().await;
        put(&k, "k", "v", Opts::new()).await;
        let bad = [
            Opts::new().header("if-match", "\"abc\""),
            Opts::new().header("if-match", "\"1\", \"2\""),
            Opts::new().header("if-none-match", "\"3\""),
            Opts::new()
                .header("if-match", "*")
                .header("if-none-match", "*"),
        ];
        for opts in &bad {
            let r = sent(k.put("k", "w", opts).await);
            api_error(&r, 400, "invalid_header");
            let r = sent(k.delete("k", opts).await);
            api_error(&r, 400, "invalid_header");
        }
        assert_eq!(read(&k, "k").await.map(|(v, _)| v).as_deref(), Some("v"));
    })
    .await;
}
