//! Pure HTTP behaviour, checked through the node's router itself: no sockets
//! and no processes, but a real single-node store (sled files on a temp dir,
//! fsync, an elected Raft leader). Malformed requests get the documented 4xx
//! with a JSON error body, never reach the log, and leave the node serving
//! good requests. Cluster behaviour lives in `tests/it`.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use clap::Parser;
use http_body_util::BodyExt;
use quorumkv::config::{Config, ServeArgs};
use quorumkv::node::Node;
use quorumkv_proto::headers;
use serde_json::Value;
use tower::ServiceExt;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
}

/// A one-node cluster with small limits, leading, on its own temp dir.
struct OneNode {
    node: Node,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    #[track_caller]
    fn is_error(&self, status: u16, code: &str) -> &Answer {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        assert_eq!(self.json()["error"]["code"], code, "{self:?}");
        assert!(self.json()["error"]["message"].is_string(), "{self:?}");
        self
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = String::from_utf8_lossy(&self.body);
        write!(f, "{} {:?} {body}", self.status, self.headers)
    }
}

impl OneNode {
    async fn start() -> OneNode {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().display().to_string();
        let cli = Cli::parse_from([
            "quorumkv",
            "--id",
            "1",
            "--data-dir",
            &data,
            "--initial-cluster",
            "1=http://127.0.0.1:1",
            "--max-key-bytes",
            "16",
            "--max-value-bytes",
            "1024",
        ]);
        let config = Config::try_from(cli.serve).expect("config");
        let node = Node::open(config).await.expect("open node");
        quorumkv::bootstrap::initialize_if_new(&node.raft, node.config.initial_cluster.as_ref())
            .await
            .expect("initialize");
        node.raft
            .wait(Some(Duration::from_secs(10)))
            .current_leader(1, "the one node leads")
            .await
            .expect("no leader within 10 s");
        OneNode { node, _dir: dir }
    }

    async fn send(&self, method: Method, path: &str, head: &[(&str, &str)], body: &[u8]) -> Answer {
        let mut req = Request::builder().method(method).uri(path);
        for (k, v) in head {
            req = req.header(*k, *v);
        }
        let req = req.body(Body::from(body.to_vec())).expect("request");
        let resp = tokio::time::timeout(Duration::from_secs(20), self.node.router().oneshot(req))
            .await
            .expect("the router answered within 20 s")
            .expect("infallible");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    async fn get(&self, key: &str, head: &[(&str, &str)]) -> Answer {
        self.send(Method::GET, &format!("/v1/kv/{key}"), head, b"")
            .await
    }

    async fn put(&self, key: &str, value: &[u8]) -> Answer {
        self.send(Method::PUT, &format!("/v1/kv/{key}"), &[], value)
            .await
    }

    async fn last_log_index(&self) -> Value {
        self.send(Method::GET, "/v1/cluster", &[], b"").await.json()["last_log_index"].clone()
    }

    /// A good write and read still work after whatever came before.
    async fn still_serves(&self) {
        assert_eq!(self.put("fine", b"still").await.status, 200);
        let r = self.get("fine", &[]).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(&r.body[..], b"still");
    }

    async fn stop(self) {
        self.node.raft.shutdown().await.expect("raft shutdown");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_headers_are_rejected() {
    let n = OneNode::start().await;
    assert_eq!(n.put("k", b"v").await.status, 200);
    let bogus = [(headers::CONSISTENCY, "bogus")];
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let r = n.send(method, "/v1/kv/k", &bogus, b"v").await;
        r.is_error(400, "invalid_consistency");
        for level in ["strong", "eventual", "all"] {
            assert!(
                r.message().contains(level),
                "message should list {level}: {r:?}"
            );
        }
    }
    n.get("k", &[(headers::CONSISTENCY, "all")])
        .await
        .is_error(400, "invalid_consistency");
    for bad in ["abc", "-1", "1.5"] {
        let head = [
            (headers::CONSISTENCY, "eventual"),
            (headers::MIN_INDEX, bad),
        ];
        n.get("k", &head).await.is_error(400, "invalid_header");
    }
    for bad in ["soon", "-5ms"] {
        let head = [
            (headers::CONSISTENCY, "eventual"),
            (headers::MAX_STALENESS, bad),
        ];
        n.get("k", &head).await.is_error(400, "invalid_header");
    }
    for (name, bad) in [
        (headers::IF_MATCH, "\"abc\""),
        (headers::IF_NONE_MATCH, "\"3\""),
        (headers::IDEMPOTENCY_KEY, ""),
    ] {
        let r = n.send(Method::PUT, "/v1/kv/k", &[(name, bad)], b"v").await;
        r.is_error(400, "invalid_header");
    }
    n.still_serves().await;
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_keys_and_values_are_rejected_before_the_log() {
    let n = OneNode::start().await;
    let log_before = n.last_log_index().await;
    assert!(
        log_before.is_u64(),
        "/v1/cluster last_log_index: {log_before}"
    );

    n.put(&"k".repeat(17), b"v")
        .await
        .is_error(413, "key_too_large");
    n.put("k", &[b'v'; 1025])
        .await
        .is_error(413, "value_too_large");
    n.put("%FF%FE", b"v").await.is_error(400, "invalid_key");
    n.get("%FF%FE", &[]).await.is_error(400, "invalid_key");
    n.put("", b"v").await.is_error(400, "invalid_key");

    assert_eq!(
        log_before,
        n.last_log_index().await,
        "a rejected write reached the log"
    );

    // Exactly at the limits is fine.
    let max_key = "k".repeat(16);
    assert_eq!(n.put(&max_key, &[b'v'; 1024]).await.status, 200);
    let r = n.get(&max_key, &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body.len(), 1024);
    n.still_serves().await;
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_routes_and_queries_are_rejected_with_json() {
    let n = OneNode::start().await;
    n.send(Method::GET, "/nope", &[], b"")
        .await
        .is_error(404, "not_found");
    n.send(Method::POST, "/v1/kv/k", &[], b"v")
        .await
        .is_error(405, "method_not_allowed");
    for query in ["limit=0", "limit=abc", "limit=10001", "prefix=a&limit=-1"] {
        let path = format!("/v1/kv?{query}");
        n.send(Method::GET, &path, &[], b"")
            .await
            .is_error(400, "invalid_query");
    }

    let r = n.get("absent", &[]).await;
    r.is_error(404, "key_not_found");
    for header in [
        headers::RAFT_INDEX,
        headers::SERVED_BY,
        headers::RAFT_LEADER,
        headers::CONSISTENCY,
    ] {
        assert!(
            r.headers.get(header).is_some(),
            "404 read lacks {header}: {r:?}"
        );
    }
    // Errors say which node answered, on every route.
    let r = n.send(Method::GET, "/nope", &[], b"").await;
    assert_eq!(r.headers[headers::SERVED_BY], "1", "{r:?}");
    n.still_serves().await;
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_and_writes_answer_their_headers() {
    let n = OneNode::start().await;
    let w = n.put("h", b"v1").await;
    assert_eq!(w.status, 200, "{w:?}");
    let index = w.headers[headers::RAFT_INDEX].to_str().unwrap().to_owned();
    assert_eq!(w.headers[headers::CONSISTENCY], "strong");
    assert_eq!(w.json()["index"].to_string(), index);

    let r = n.get("h", &[]).await;
    assert_eq!(r.headers[headers::ETAG], format!("\"{index}\"").as_str());
    assert_eq!(r.headers[headers::RAFT_LEADER], "1");
    assert!(r.headers.get(headers::LAST_CONTACT_MS).is_none(), "{r:?}");

    let ev = n.get("h", &[(headers::CONSISTENCY, "eventual")]).await;
    assert_eq!(ev.headers[headers::CONSISTENCY], "eventual");
    assert!(ev.headers.get(headers::LAST_CONTACT_MS).is_some(), "{ev:?}");

    let head = [(headers::IF_MATCH, "\"1\"")];
    let stale = n.send(Method::PUT, "/v1/kv/h", &head, b"v2").await;
    stale.is_error(412, "precondition_failed");
    assert!(
        stale.headers.get(headers::RAFT_INDEX).is_some(),
        "{stale:?}"
    );

    let key = [(headers::IDEMPOTENCY_KEY, "once")];
    let first = n.send(Method::PUT, "/v1/kv/i", &key, b"x").await;
    let again = n.send(Method::PUT, "/v1/kv/i", &key, b"x").await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(
        again.headers[headers::IDEMPOTENT_REPLAYED],
        "true",
        "{again:?}"
    );
    assert_eq!(
        again.headers[headers::RAFT_INDEX],
        first.headers[headers::RAFT_INDEX]
    );
    n.stop().await;
}
