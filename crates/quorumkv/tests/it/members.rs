//! Membership changes on a real cluster: a new node joins as a learner,
//! catches up, is promoted; a follower and then the leader are removed (the
//! leader hands over first); every refusal is a clear 4xx; no acknowledged
//! write is lost along the way.

use std::time::Instant;

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{secs, within, Cluster, NodeId, Options, POLL};
use crate::http::Resp;

async fn members_call(c: &Cluster, on: NodeId, method: Method, path: &str, body: Value) -> Resp {
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    c.call(
        on,
        method,
        path,
        &[("content-type", "application/json")],
        body,
    )
    .await
}

fn member(list: &Value, id: NodeId) -> Option<&Value> {
    list["members"].as_array()?.iter().find(|m| m["id"] == id)
}

#[track_caller]
fn refused(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.error_code(), code, "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_learner_joins_is_promoted_and_members_leave_the_leader_last() {
    within(secs(180), async {
        let opts = Options {
            spares: 1,
            ..Options::default()
        };
        let c = Cluster::start_opts(3, opts).await;
        let leader = c.leader(secs(10)).await;
        let follower = c.others(leader)[0];
        let mut last = 0;
        for i in 0..50 {
            last = c
                .put_ok(leader, &format!("before/{i}"), format!("v{i}"))
                .await;
        }

        // A URL where no node of ours listens is never handed the cluster
        // token: it must prove it holds it first, and cannot.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stranger = format!("http://{}", listener.local_addr().unwrap());
        let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let ear = heard.clone();
        let fake = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = vec![0u8; 65536];
                if let Ok(Ok(n)) = tokio::time::timeout(secs(2), s.read(&mut buf)).await {
                    ear.lock().unwrap().extend_from_slice(&buf[..n]);
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let r = members_call(
            &c,
            leader,
            Method::POST,
            "/v1/cluster/members",
            json!({"id": 8, "peer_url": stranger}),
        )
        .await;
        refused(&r, 409, "member_unverified");
        fake.abort();
        let heard = String::from_utf8_lossy(&heard.lock().unwrap()).into_owned();
        assert!(heard.contains("/raft/prove"), "{heard}");
        assert!(
            !heard.contains(c.kit().cluster_token()),
            "the token leaked: {heard}"
        );

        // Node 4 starts empty, with no --initial-cluster, and is added
        // through a follower.
        c.kit().start_spare(4).await.expect("start node 4");
        let url4 = c.kit().peer_url(4).unwrap();
        let path = "/v1/cluster/members";
        let add = json!({"id": 4, "peer_url": url4});
        let r = members_call(&c, follower, Method::POST, path, add.clone())
            .await
            .expect(201);
        let m4 = member(&r.json(), 4).cloned().expect("node 4 listed");
        assert_eq!(m4["voter"], false, "{m4}");

        // Refusals: the same id or URL again, an unknown id, a bad body.
        let r = members_call(&c, leader, Method::POST, path, add).await;
        refused(&r, 409, "member_conflict");
        let r = members_call(
            &c,
            leader,
            Method::POST,
            path,
            json!({"id": 9, "peer_url": url4}),
        )
        .await;
        refused(&r, 409, "member_conflict");
        let r = members_call(
            &c,
            leader,
            Method::POST,
            path,
            json!({"id": 9, "peer_url": "ftp://x"}),
        )
        .await;
        refused(&r, 400, "invalid_body");
        let r = members_call(&c, leader, Method::POST, path, json!({"ident": 9})).await;
        refused(&r, 400, "invalid_body");
        let r = members_call(
            &c,
            leader,
            Method::POST,
            "/v1/cluster/members/9/promote",
            Value::Null,
        )
        .await;
        refused(&r, 404, "member_not_found");
        let r = members_call(
            &c,
            leader,
            Method::DELETE,
            "/v1/cluster/members/9",
            Value::Null,
        )
        .await;
        refused(&r, 404, "member_not_found");
        let r = members_call(
            &c,
            leader,
            Method::POST,
            "/v1/cluster/members/x/promote",
            Value::Null,
        )
        .await;
        assert_eq!(r.status, 400, "{r:?}");

        // The learner catches up by itself, then is promoted.
        c.read_at_least(4, "before/49", last).await.expect(200);
        let deadline = Instant::now() + secs(20);
        let promoted = loop {
            let r = members_call(
                &c,
                leader,
                Method::POST,
                "/v1/cluster/members/4/promote",
                Value::Null,
            )
            .await;
            if r.status == 200 {
                break r.json();
            }
            refused(&r, 409, "learner_lagging");
            assert!(Instant::now() < deadline, "never caught up: {r:?}");
            tokio::time::sleep(POLL).await;
        };
        assert_eq!(member(&promoted, 4).unwrap()["voter"], true, "{promoted}");
        let r = members_call(
            &c,
            leader,
            Method::POST,
            "/v1/cluster/members/4/promote",
            Value::Null,
        )
        .await;
        refused(&r, 409, "member_conflict");
        let index = c.put_ok(4, "after/promote", "four voters").await;
        c.read_at_least(4, "after/promote", index).await.expect(200);

        // Remove a follower, then the leader (it hands over first).
        let gone = c.others(leader).into_iter().find(|&id| id != 4).unwrap();
        let r = members_call(
            &c,
            leader,
            Method::DELETE,
            &format!("{path}/{gone}"),
            Value::Null,
        )
        .await
        .expect(200);
        assert!(member(&r.json(), gone).is_none(), "{:?}", r.json());
        let r = members_call(
            &c,
            4,
            Method::DELETE,
            &format!("{path}/{leader}"),
            Value::Null,
        )
        .await
        .expect(200);
        let list = r.json();
        assert!(member(&list, leader).is_none(), "{list}");
        let voters: Vec<NodeId> = list["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["voter"] == true)
            .map(|m| m["id"].as_u64().unwrap())
            .collect();
        assert_eq!(voters.len(), 2, "{list}");
        assert!(voters.contains(&4), "{list}");
        let new_leader = c
            .kit()
            .leader_among(&voters, secs(20))
            .await
            .expect("a leader");
        assert_ne!(new_leader, leader);
        let log = c.kit().log_tail(leader, 2000);
        assert!(log.contains("handing leadership over first"), "{log}");

        // Every acknowledged write is on both remaining voters.
        let index = c.put_ok(new_leader, "after/removals", "two voters").await;
        for &id in &voters {
            c.read_at_least(id, "after/removals", index)
                .await
                .expect(200);
            for i in [0, 49] {
                let r = c
                    .get(id, &format!("before/{i}"), "eventual")
                    .await
                    .expect(200);
                assert_eq!(r.text(), format!("v{i}"));
            }
        }

        // With the other voter dead, removing the leader would leave no
        // quorum: refused.
        let other = *voters.iter().find(|&&v| v != new_leader).unwrap();
        c.kill9(other);
        tokio::time::sleep(secs(2)).await;
        let r = members_call(
            &c,
            new_leader,
            Method::DELETE,
            &format!("{path}/{new_leader}"),
            Value::Null,
        )
        .await;
        refused(&r, 409, "would_lose_quorum");
    })
    .await;
}

/// Polls `/v1/cluster/members` on `on` until `id` is listed with `voter`.
async fn wait_member(c: &Cluster, on: NodeId, id: NodeId, voter: bool) -> Value {
    let deadline = Instant::now() + secs(30);
    loop {
        let r = members_call(c, on, Method::GET, "/v1/cluster/members", Value::Null).await;
        if r.status == 200 {
            let list = r.json();
            if member(&list, id).is_some_and(|m| m["voter"] == voter) {
                return list;
            }
        }
        assert!(
            Instant::now() < deadline,
            "node {id} never became voter={voter}: {r:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// `serve --join`: a node joins by itself and is promoted once caught up;
/// with `--learner` it stays a learner; and a voter whose disk was wiped
/// cannot rejoin under its id: it exits saying what to run.
#[tokio::test(flavor = "multi_thread")]
async fn nodes_join_by_themselves_and_a_wiped_voter_is_refused() {
    within(secs(180), async {
        let opts = Options {
            spares: 2,
            ..Options::default()
        };
        let c = Cluster::start_opts(3, opts).await;
        let leader = c.leader(secs(10)).await;
        let mut last = 0;
        for i in 0..30 {
            last = c.put_ok(leader, &format!("j/{i}"), "v").await;
        }
        let peers = [1, 2, 3].map(|id| c.kit().peer_url(id).unwrap()).join(",");
        let join = |extra: &[&str]| {
            let mut args = vec!["--join".to_owned(), peers.clone()];
            args.extend(extra.iter().map(|s| s.to_string()));
            args
        };
        c.kit()
            .start_spare_with(4, &join(&[]))
            .await
            .expect("node 4 joins");
        wait_member(&c, leader, 4, true).await;
        c.read_at_least(4, "j/29", last).await.expect(200);
        c.kit()
            .start_spare_with(5, &join(&["--learner"]))
            .await
            .expect("node 5 joins");
        wait_member(&c, leader, 5, false).await;
        tokio::time::sleep(secs(2)).await;
        wait_member(&c, leader, 5, false).await;
        let index = c.put_ok(5, "j/via-learner", "forwarded").await;
        c.read_at_least(5, "j/via-learner", index).await.expect(200);

        // Node 4 loses its disk and comes back under its id: refused.
        c.kill9(4);
        c.kit().wipe(4).expect("wipe");
        let err = c
            .kit()
            .restart(4)
            .await
            .expect_err("a wiped voter rejoined");
        let text = err.to_string() + &c.kit().log_tail(4, 400);
        assert!(text.contains("already a voter"), "{text}");
        assert!(text.contains("cluster.sh replace 4"), "{text}");
        // The cluster is unaffected.
        c.put_ok(leader, "j/after", "fine").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wiped_founder_restarted_with_its_flags_stops_and_can_be_replaced() {
    within(secs(180), async {
        let c = Cluster::start(3).await;
        let leader = c.leader(secs(10)).await;
        let lost = c.others(leader)[0];
        let mut last = 0;
        for i in 0..20 {
            last = c.put_ok(leader, &format!("w/{i}"), "v").await;
        }
        // Its disk is lost; it comes back with the same flags (--initial-cluster).
        c.kill9(lost);
        c.kit().wipe(lost).expect("wipe");
        let _ = c.kit().restart(lost).await;
        let deadline = std::time::Instant::now() + secs(30);
        let status = loop {
            if let Some(s) = c.kit().exit_status(lost).unwrap() {
                break s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the wiped node kept running"
            );
            tokio::time::sleep(POLL * 5).await;
        };
        assert!(!status.success(), "{status:?}");
        let log = c.kit().log_tail(lost, 400);
        assert!(log.contains(&format!("cluster.sh replace {lost}")), "{log}");
        assert!(log.contains("incarnation"), "{log}");
        // The cluster goes on, and the replacement works: remove, wipe, join.
        c.put_ok(leader, "w/after", "fine").await;
        let path = format!("/v1/cluster/members/{lost}");
        members_call(&c, leader, Method::DELETE, &path, Value::Null)
            .await
            .expect(200);
        c.kill9(lost); // reaps the exited process
        c.rejoin_wiped(lost).await;
        wait_member(&c, leader, lost, true).await;
        c.read_at_least(lost, "w/19", last).await.expect(200);
    })
    .await;
}
