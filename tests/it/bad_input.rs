//! Malformed requests get the documented 4xx with a JSON error body, never
//! reach the log, and leave the node serving good requests.

use reqwest::Method;

use crate::harness::{secs, within, Cluster, NodeId, Resp};

const LIMITS: [&str; 4] = ["--max-key-bytes", "16", "--max-value-bytes", "1024"];

async fn one_node() -> (Cluster, NodeId) {
    let c = Cluster::start_with(1, &LIMITS).await;
    let id = c.leader(secs(10)).await;
    (c, id)
}

/// Asserts `r` is the error `status` with a JSON body whose code is `code`.
#[track_caller]
fn is_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.error_code(), code, "{r:?}");
}

async fn still_serves(c: &Cluster, id: NodeId) {
    c.put_ok(id, "fine", "still").await;
    let r = c.get(id, "fine", "strong").await.expect(200);
    assert_eq!(r.text(), "still");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_headers_are_rejected() {
    within(secs(60), async {
        let (c, id) = one_node().await;
        c.put_ok(id, "k", "v").await;
        let bogus = [("x-consistency", "bogus")];
        for method in [Method::GET, Method::PUT, Method::DELETE] {
            let r = c.call(id, method, "/v1/kv/k", &bogus, b"v".to_vec()).await;
            is_error(&r, 400, "invalid_consistency");
            let message = r.error_message();
            for level in ["strong", "eventual", "all"] {
                assert!(
                    message.contains(level),
                    "message should list {level}: {r:?}"
                );
            }
        }
        let r = c.get(id, "k", "all").await;
        is_error(&r, 400, "invalid_consistency");
        for bad in ["abc", "-1", "1.5"] {
            let headers = [("x-consistency", "eventual"), ("x-min-index", bad)];
            is_error(&c.get_with(id, "k", &headers).await, 400, "invalid_header");
        }
        for bad in ["soon", "-5ms"] {
            let headers = [("x-consistency", "eventual"), ("x-max-staleness", bad)];
            is_error(&c.get_with(id, "k", &headers).await, 400, "invalid_header");
        }
        still_serves(&c, id).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_keys_and_values_are_rejected_before_the_log() {
    within(secs(60), async {
        let (c, id) = one_node().await;
        let log_before = c.info(id).await["last_log_index"].clone();

        let r = c.put(id, &"k".repeat(17), "v", "strong").await;
        is_error(&r, 413, "key_too_large");
        let r = c.put(id, "k", vec![b'v'; 1025], "strong").await;
        is_error(&r, 413, "value_too_large");
        let r = c.put(id, "%FF%FE", "v", "strong").await;
        is_error(&r, 400, "invalid_key");
        let r = c.get(id, "%FF%FE", "strong").await;
        is_error(&r, 400, "invalid_key");
        let r = c.put(id, "", "v", "strong").await;
        assert!([400, 404].contains(&r.status.as_u16()), "empty key: {r:?}");
        r.error_code();

        let log_after = c.info(id).await["last_log_index"].clone();
        assert_eq!(log_before, log_after, "a rejected write reached the log");

        // Exactly at the limits is fine.
        let max_key = "k".repeat(16);
        c.put_ok(id, &max_key, vec![b'v'; 1024]).await;
        let r = c.get(id, &max_key, "strong").await.expect(200);
        assert_eq!(r.body.len(), 1024);
        still_serves(&c, id).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_routes_and_queries_are_rejected() {
    within(secs(60), async {
        let (c, id) = one_node().await;
        let r = c.call(id, Method::GET, "/nope", &[], vec![]).await;
        is_error(&r, 404, "not_found");
        let r = c
            .call(id, Method::POST, "/v1/kv/k", &[], b"v".to_vec())
            .await;
        is_error(&r, 405, "method_not_allowed");
        for query in ["limit=0", "limit=abc", "limit=10001", "prefix=a&limit=-1"] {
            let path = format!("/v1/kv?{query}");
            let r = c.call(id, Method::GET, &path, &[], vec![]).await;
            is_error(&r, 400, "invalid_query");
        }

        let r = c.get(id, "absent", "strong").await;
        is_error(&r, 404, "key_not_found");
        for header in [
            "x-raft-index",
            "x-served-by",
            "x-raft-leader",
            "x-consistency",
        ] {
            assert!(r.header(header).is_some(), "404 read lacks {header}: {r:?}");
        }
        still_serves(&c, id).await;
    })
    .await;
}
