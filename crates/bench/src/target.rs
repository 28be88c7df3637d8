//! The two HTTP APIs a run can speak, behind one request/observe pair, so the
//! generator, connections and histograms are the same for both.
//!
//! - quorumkv: `PUT|GET /v1/kv/<key>` with `X-Consistency` (README.md, "API");
//!   a 404 `key_not_found` on a get is a successful read of an absent key.
//! - etcd: the v3 JSON gateway, `POST /v3/kv/put {"key","value"}` and
//!   `POST /v3/kv/range {"key"[,"serializable":true]}`, keys and values base64;
//!   a range without `kvs` is the absent-key case.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{HeaderMap, Method, Request, StatusCode};

use crate::args::{Endpoint, TargetKind};
use crate::workload::Op;
use quorumkv_proto::ConsistencyLevel;

/// A complete response: the body is read so the connection can be reused.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// How one answered request counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx with the value (or the write acknowledged).
    Ok,
    /// A get of a key that was never written: a successful read.
    NotFound,
    /// Anything else, by status code.
    Status(u16),
}

/// `X-Last-Contact-Ms` of an eventual read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact {
    /// Not sent (not an eventual read, or not quorumkv).
    Absent,
    /// The replica never heard from a leader.
    Never,
    Ms(u64),
}

/// What the bench learns from one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    pub outcome: Outcome,
    /// `X-Raft-Index`: a write's log index, or the applied index a read saw.
    pub raft_index: Option<u64>,
    pub contact: Contact,
    /// `X-Served-By` differs from `X-Raft-Leader`.
    pub on_follower: bool,
}

/// Builds requests for one API and reads its answers.
#[derive(Debug, Clone)]
pub struct Target {
    kind: TargetKind,
    value: Bytes,
    /// The value, base64-encoded once (etcd).
    value_b64: String,
    /// `--token-file`, as an `Authorization` header.
    auth: Option<hyper::header::HeaderValue>,
}

impl Target {
    pub fn new(kind: TargetKind, value: Bytes) -> Target {
        let value_b64 = match kind {
            TargetKind::Etcd => B64.encode(&value),
            TargetKind::Quorumkv => String::new(),
        };
        Target {
            kind,
            value,
            value_b64,
            auth: None,
        }
    }

    /// Sends `Authorization: Bearer <token>` with every request.
    pub fn with_token(mut self, token: Option<&str>) -> Target {
        self.auth = token.and_then(|t| format!("Bearer {t}").parse().ok());
        self
    }

    /// The request for `op` on `key`; `level` is already the one for this op
    /// (see [`ConsistencyLevel::for_reads`]). Fails only on a key or prefix that is
    /// not a valid URI path.
    pub fn request(
        &self,
        ep: &Endpoint,
        op: Op,
        key: &str,
        level: ConsistencyLevel,
    ) -> Result<Request<Full<Bytes>>, hyper::http::Error> {
        let mut builder = Request::builder().header(HOST, ep.authority.as_str());
        if let Some(auth) = &self.auth {
            builder = builder.header(AUTHORIZATION, auth.clone());
        }
        match self.kind {
            TargetKind::Quorumkv => {
                let uri = format!("{}/v1/kv/{key}", ep.prefix);
                let builder = builder.uri(uri).header("x-consistency", level.as_str());
                match op {
                    Op::Put => builder
                        .method(Method::PUT)
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .body(Full::new(self.value.clone())),
                    Op::Get => builder.method(Method::GET).body(Full::new(Bytes::new())),
                }
            }
            TargetKind::Etcd => {
                let (path, body) = match op {
                    Op::Put => ("put", etcd_put_body(key, &self.value_b64)),
                    Op::Get => ("range", etcd_range_body(key, level)),
                };
                builder
                    .method(Method::POST)
                    .uri(format!("{}/v3/kv/{path}", ep.prefix))
                    .header(CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from(body)))
            }
        }
    }

    pub fn observe(&self, op: Op, resp: &Response) -> Observed {
        match self.kind {
            TargetKind::Quorumkv => observe_quorumkv(op, resp),
            TargetKind::Etcd => Observed {
                outcome: etcd_outcome(op, resp),
                raft_index: None,
                contact: Contact::Absent,
                on_follower: false,
            },
        }
    }
}

pub fn etcd_put_body(key: &str, value_b64: &str) -> String {
    format!(r#"{{"key":"{}","value":"{value_b64}"}}"#, B64.encode(key))
}

/// Linearizable unless the run asked for eventual reads.
pub fn etcd_range_body(key: &str, level: ConsistencyLevel) -> String {
    let key = B64.encode(key);
    match level {
        ConsistencyLevel::Eventual => format!(r#"{{"key":"{key}","serializable":true}}"#),
        ConsistencyLevel::Strong | ConsistencyLevel::All => format!(r#"{{"key":"{key}"}}"#),
    }
}

fn etcd_outcome(op: Op, resp: &Response) -> Outcome {
    if !resp.status.is_success() {
        return Outcome::Status(resp.status.as_u16());
    }
    // The gateway omits empty fields: no "kvs" means the key does not exist.
    if op == Op::Get && !contains(&resp.body, b"\"kvs\"") {
        return Outcome::NotFound;
    }
    Outcome::Ok
}

fn observe_quorumkv(op: Op, resp: &Response) -> Observed {
    let outcome = if resp.status.is_success() {
        Outcome::Ok
    } else if op == Op::Get
        && resp.status == StatusCode::NOT_FOUND
        && contains(&resp.body, b"\"key_not_found\"")
    {
        Outcome::NotFound
    } else {
        Outcome::Status(resp.status.as_u16())
    };
    let header = |name: &str| resp.headers.get(name).and_then(|v| v.to_str().ok());
    let contact = match header("x-last-contact-ms") {
        None => Contact::Absent,
        Some("never") => Contact::Never,
        Some(ms) => ms.parse().map_or(Contact::Absent, Contact::Ms),
    };
    let served_by = header("x-served-by");
    Observed {
        outcome,
        raft_index: header("x-raft-index").and_then(|v| v.parse().ok()),
        contact,
        on_follower: served_by.is_some() && served_by != header("x-raft-leader"),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use serde_json::{json, Value};

    use super::*;

    fn ep() -> Endpoint {
        Endpoint::parse("http://127.0.0.1:2379").unwrap()
    }

    async fn body_json(req: Request<Full<Bytes>>) -> Value {
        let bytes = req.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn b64(s: &str) -> String {
        B64.encode(s)
    }

    #[tokio::test]
    async fn etcd_put_encoding() {
        let t = Target::new(TargetKind::Etcd, Bytes::from_static(b"hello"));
        let req = t
            .request(&ep(), Op::Put, "bench/007", ConsistencyLevel::Strong)
            .unwrap();
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.uri(), "/v3/kv/put");
        assert_eq!(req.headers()[HOST], "127.0.0.1:2379");
        assert_eq!(req.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(
            body_json(req).await,
            json!({"key": b64("bench/007"), "value": b64("hello")})
        );
    }

    #[tokio::test]
    async fn etcd_range_encoding() {
        let t = Target::new(TargetKind::Etcd, Bytes::new());
        let req = t
            .request(&ep(), Op::Get, "bench/1", ConsistencyLevel::Eventual)
            .unwrap();
        assert_eq!(req.uri(), "/v3/kv/range");
        assert_eq!(
            body_json(req).await,
            json!({"key": b64("bench/1"), "serializable": true})
        );
        for level in [ConsistencyLevel::Strong, ConsistencyLevel::All] {
            let req = t.request(&ep(), Op::Get, "bench/1", level).unwrap();
            assert_eq!(body_json(req).await, json!({"key": b64("bench/1")}));
        }
        assert_eq!(b64("bench/1"), "YmVuY2gvMQ==");
    }

    #[test]
    fn quorumkv_requests() {
        let t = Target::new(TargetKind::Quorumkv, Bytes::from_static(b"v"));
        let ep = Endpoint::parse("http://127.0.0.1:7001/base/").unwrap();
        let put = t
            .request(&ep, Op::Put, "bench/42", ConsistencyLevel::Eventual)
            .unwrap();
        assert_eq!(put.method(), Method::PUT);
        assert_eq!(put.uri(), "/base/v1/kv/bench/42");
        assert_eq!(put.headers()["x-consistency"], "eventual");
        let get = t
            .request(&ep, Op::Get, "bench/42", ConsistencyLevel::Strong)
            .unwrap();
        assert_eq!(get.method(), Method::GET);
        assert_eq!(get.headers()["x-consistency"], "strong");
        assert_eq!(get.headers()[HOST], "127.0.0.1:7001");
    }

    fn resp(status: u16, headers: &[(&'static str, &str)], body: &'static str) -> Response {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, v.parse().unwrap());
        }
        Response {
            status: StatusCode::from_u16(status).unwrap(),
            headers: h,
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    #[test]
    fn quorumkv_outcomes() {
        let t = Target::new(TargetKind::Quorumkv, Bytes::new());
        let absent = resp(
            404,
            &[],
            r#"{"error":{"code":"key_not_found","message":"x"}}"#,
        );
        assert_eq!(t.observe(Op::Get, &absent).outcome, Outcome::NotFound);
        assert_eq!(t.observe(Op::Put, &absent).outcome, Outcome::Status(404));
        let no_route = resp(404, &[], r#"{"error":{"code":"not_found","message":"x"}}"#);
        assert_eq!(t.observe(Op::Get, &no_route).outcome, Outcome::Status(404));
        assert_eq!(
            t.observe(Op::Put, &resp(503, &[], "")).outcome,
            Outcome::Status(503)
        );
        let read = resp(
            200,
            &[
                ("x-raft-index", "17"),
                ("x-served-by", "2"),
                ("x-raft-leader", "1"),
                ("x-last-contact-ms", "35"),
            ],
            "value",
        );
        let seen = t.observe(Op::Get, &read);
        assert_eq!(seen.outcome, Outcome::Ok);
        assert_eq!(seen.raft_index, Some(17));
        assert_eq!(seen.contact, Contact::Ms(35));
        assert!(seen.on_follower);
        let on_leader = resp(
            200,
            &[
                ("x-served-by", "1"),
                ("x-raft-leader", "1"),
                ("x-last-contact-ms", "never"),
            ],
            "",
        );
        let seen = t.observe(Op::Get, &on_leader);
        assert_eq!(seen.contact, Contact::Never);
        assert!(!seen.on_follower);
        assert_eq!(t.observe(Op::Put, &resp(202, &[], "")).outcome, Outcome::Ok);
    }

    #[test]
    fn etcd_outcomes() {
        let t = Target::new(TargetKind::Etcd, Bytes::new());
        let hit = resp(
            200,
            &[],
            r#"{"header":{},"kvs":[{"key":"YQ=="}],"count":"1"}"#,
        );
        let miss = resp(200, &[], r#"{"header":{"revision":"5"}}"#);
        assert_eq!(t.observe(Op::Get, &hit).outcome, Outcome::Ok);
        assert_eq!(t.observe(Op::Get, &miss).outcome, Outcome::NotFound);
        assert_eq!(t.observe(Op::Put, &miss).outcome, Outcome::Ok);
        let err = resp(503, &[], r#"{"error":"etcdserver: leader changed"}"#);
        assert_eq!(t.observe(Op::Get, &err).outcome, Outcome::Status(503));
    }
}
