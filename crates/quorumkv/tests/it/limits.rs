//! Bounded answers: a scan stops at --max-response-bytes and says where to
//! go on; a transaction whose gets would pass it applies nothing and answers
//! 413, also when retried with its Idempotency-Key.

use base64::Engine;
use reqwest::Method;
use serde_json::Value;

use crate::harness::{secs, within, Cluster};

const CAP: usize = 64 * 1024;

#[tokio::test(flavor = "multi_thread")]
async fn scans_page_and_big_transactions_are_refused_whole() {
    within(secs(120), async {
        let cap = CAP.to_string();
        let c = Cluster::start_with(
            3,
            &["--max-response-bytes", &cap, "--max-value-bytes", "16384"],
        )
        .await;
        let leader = c.leader(secs(10)).await;
        let value = "v".repeat(10_000);
        let mut index = 0;
        for i in 0..20 {
            index = c
                .put_ok(leader, &format!("big/{i:02}"), value.clone())
                .await;
        }
        let binary = vec![0xffu8; 10_000];
        index = index.max(c.put_ok(leader, "big/zz-binary", binary.clone()).await);
        let follower = c.others(leader)[0];
        c.read_at_least(follower, "big/00", index).await.expect(200);

        // Page through from a follower: every key once, in order, each page
        // within the cap.
        let mut keys = Vec::new();
        let mut start = String::new();
        let mut pages = 0;
        loop {
            pages += 1;
            assert!(pages < 30, "no end to the pages");
            let path = match start.is_empty() {
                true => "/v1/kv?prefix=big/&limit=1000".to_owned(),
                false => format!("/v1/kv?prefix=big/&limit=1000&start={start}"),
            };
            let r = c
                .call(follower, Method::GET, &path, &[], Vec::new())
                .await
                .expect(200);
            assert!(r.body.len() <= CAP, "a page of {} bytes", r.body.len());
            let page: Value = r.json();
            for item in page["items"].as_array().expect("items") {
                let key = item["key"].as_str().expect("key").to_owned();
                if key == "big/zz-binary" {
                    assert_eq!(item["encoding"], "base64");
                    let got = base64::engine::general_purpose::STANDARD
                        .decode(item["value"].as_str().unwrap())
                        .unwrap();
                    assert_eq!(got, binary);
                } else {
                    assert_eq!(item["value"].as_str(), Some(value.as_str()));
                }
                keys.push(key);
            }
            if page["more"] == false {
                assert!(page.get("next").is_none(), "{page}");
                break;
            }
            start = page["next"].as_str().expect("next when more").to_owned();
        }
        let mut want: Vec<String> = (0..20).map(|i| format!("big/{i:02}")).collect();
        want.push("big/zz-binary".into());
        assert_eq!(keys, want);
        assert!(pages >= 4, "21 values of 10 kB in {pages} pages of 64 KiB");

        // A start outside the prefix is a clear 400.
        let r = c
            .call(
                leader,
                Method::GET,
                "/v1/kv?prefix=big/&start=a",
                &[],
                Vec::new(),
            )
            .await;
        assert_eq!(r.status, 400, "{r:?}");

        // Ten gets of 10 kB answer ~137 kB: refused whole, the put not applied.
        let gets: Vec<String> = (0..10)
            .map(|i| format!(r#"{{"op":"get","key":"big/{i:02}"}}"#))
            .collect();
        let txn = format!(
            r#"{{"success":[{{"op":"put","key":"big/marker","value":"x"}},{}]}}"#,
            gets.join(",")
        );
        let key = [("idempotency-key", "big-txn")];
        for attempt in 0..2 {
            let r = c
                .call(
                    follower,
                    Method::POST,
                    "/v1/txn",
                    &key,
                    txn.clone().into_bytes(),
                )
                .await;
            assert_eq!(r.status, 413, "attempt {attempt}: {r:?}");
            assert_eq!(r.error_code(), "response_too_large", "{r:?}");
        }
        assert_eq!(c.get(leader, "big/marker", "strong").await.status, 404);
        // Three fit.
        let small = format!(
            r#"{{"success":[{{"op":"put","key":"big/marker","value":"x"}},{}]}}"#,
            gets[..3].join(",")
        );
        let r = c
            .call(leader, Method::POST, "/v1/txn", &[], small.into_bytes())
            .await
            .expect(200);
        assert_eq!(r.json()["results"].as_array().map(Vec::len), Some(4));
    })
    .await;
}

/// With both followers frozen nothing commits: eight proposals fill the
/// leader's in-flight slots, one waits for a slot, two fill a queue of
/// `--max-queued-writes 2`, and every write after them answers at once
/// `503 overloaded` with `Retry-After`, is never proposed, and so is never
/// applied; every write that was acknowledged is there after the thaw.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_write_queue_answers_503_and_proposes_nothing() {
    within(secs(120), async {
        let c = Cluster::start_with(3, &["--max-queued-writes", "2"]).await;
        let leader = c.leader(secs(10)).await;
        let followers = c.others(leader);
        for &f in &followers {
            c.stop(f);
        }
        let c = std::sync::Arc::new(c);
        let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut writes = Vec::new();
        for i in 0..18 {
            let c = c.clone();
            let answered = answered.clone();
            writes.push(tokio::spawn(async move {
                let key = format!("q/{i:02}");
                let r = c.try_put(leader, &key, "v", "strong").await;
                answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                (key, r)
            }));
            tokio::time::sleep(std::time::Duration::from_millis(60)).await;
        }
        // Thaw once the refused writes have had their answer (at most 10 s):
        // on a loaded machine the last requests may reach the leader late,
        // and a thaw before they arrive would let them in.
        let deadline = std::time::Instant::now() + secs(10);
        while answered.load(std::sync::atomic::Ordering::SeqCst) < 7
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        for &f in &followers {
            c.cont(f);
        }
        let mut overloaded = Vec::new();
        let mut acked = Vec::new();
        for w in writes {
            let (key, r) = w.await.expect("task");
            let Ok(r) = r else { continue };
            match r.status.as_u16() {
                200 => acked.push(key),
                503 if r.error_code() == "overloaded" => {
                    assert_eq!(r.header("retry-after"), Some("1"), "{r:?}");
                    overloaded.push(key);
                }
                _ => {}
            }
        }
        assert!(
            overloaded.len() >= 5,
            "expected most of the last 10 writes refused: overloaded {overloaded:?}, acked {acked:?}"
        );
        let leader = c.leader(secs(20)).await;
        for key in &acked {
            c.get(leader, key, "strong").await.expect(200);
        }
        for key in &overloaded {
            assert_eq!(c.get(leader, key, "strong").await.status, 404, "{key} was applied");
        }
    })
    .await;
}

/// `--quota-bytes 20000`: writes stop at the quota with 507 quota_exceeded
/// (through a follower too), the alarm shows in /v1/cluster and the log,
/// reads and deletes still work, and deleting clears the alarm.
#[tokio::test(flavor = "multi_thread")]
async fn the_disk_quota_refuses_growth_until_data_is_deleted() {
    within(secs(120), async {
        let c = Cluster::start_with(3, &["--quota-bytes", "20000"]).await;
        let leader = c.leader(secs(10)).await;
        let follower = c.others(leader)[0];
        let value = "q".repeat(5_000);
        let keyed = [("idempotency-key", "q-1")];
        let put_keyed = || {
            let body = value.clone().into_bytes();
            c.call(leader, Method::PUT, "/v1/kv/quota/keyed", &keyed, body)
        };
        put_keyed().await.expect(200);
        let mut stored = Vec::new();
        let mut refused = None;
        for i in 0..10 {
            let key = format!("quota/{i}");
            let r = c.put(leader, &key, value.clone(), "strong").await;
            match r.status.as_u16() {
                200 => stored.push(key),
                _ => {
                    refused = Some(r);
                    break;
                }
            }
        }
        let r = refused.expect("the quota never refused a write");
        assert_eq!(r.status, 507, "{r:?}");
        assert_eq!(r.error_code(), "quota_exceeded", "{r:?}");
        assert_eq!(
            stored.len(),
            3,
            "20,000 bytes hold four 5 kB values, one of them keyed: {stored:?}"
        );
        // A retry of an applied write is still answered (from its record).
        let again = put_keyed().await.expect(200);
        assert_eq!(
            again.header("idempotent-replayed"),
            Some("true"),
            "{again:?}"
        );
        let r = c
            .put(follower, "quota/through-follower", "x", "strong")
            .await;
        assert_eq!(r.status, 507, "{r:?}");
        let info = c.info(leader).await;
        assert_eq!(info["alarms"], serde_json::json!(["quota"]), "{info}");
        assert!(info["data_bytes"].as_u64().unwrap() >= 20_000, "{info}");
        // Reads and deletes still work; a delete-only transaction too.
        c.get(follower, &stored[0], "strong").await.expect(200);
        c.delete(leader, &stored[0], "strong").await.expect(200);
        let txn = format!(r#"{{"success":[{{"op":"delete","key":"{}"}}]}}"#, stored[1]);
        c.call(leader, Method::POST, "/v1/txn", &[], txn.into_bytes())
            .await
            .expect(200);
        // Under the quota again: writes pass and the alarm is gone.
        c.put_ok(follower, "quota/again", value).await;
        let info = c.info(leader).await;
        assert_eq!(info["alarms"], serde_json::json!([]), "{info}");
        let log = c.kit().log_tail(leader, 1000);
        assert!(log.contains("quota alarm raised"), "{log}");
        assert!(log.contains("quota alarm cleared"), "{log}");
    })
    .await;
}
