//! A client of `GET /v1/watch` (server-sent events) and of the lease routes:
//! what the coordination tests, the lock example and the torture suite's
//! watchers use.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};
use reqwest::Method;
use serde::Deserialize;

use crate::client::{encode_key, Client, Opts, Response};
use crate::Error;

/// One change as a watch reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Change {
    #[serde(rename = "type")]
    pub kind: String,
    pub key: String,
    pub value: Option<String>,
    pub encoding: Option<String>,
    pub index: u64,
    /// The last change of its index (it carried the SSE id): a client
    /// applies an index's changes once this one arrived, and resumes after it.
    #[serde(skip)]
    pub ends_index: bool,
}

impl Change {
    pub fn is_put(&self) -> bool {
        self.kind == "put"
    }
}

/// What a watch stream carries.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    Change(Change),
    /// Every matching change up to this index was sent.
    Progress(u64),
    /// The last event: `cancelled` or `compacted`, with its JSON body.
    Final {
        name: String,
        body: serde_json::Value,
    },
}

type Events = Pin<Box<dyn Stream<Item = Result<eventsource_stream::Event, String>> + Send>>;

/// An open watch.
pub struct Watcher {
    events: Events,
    /// `X-Watch-From`: the first index it covers.
    pub from: u64,
    /// `X-Served-By`.
    pub served_by: Option<u64>,
}

/// The query of a watch.
#[derive(Debug, Clone, Default)]
pub struct WatchQuery {
    pub prefix: Option<String>,
    pub key: Option<String>,
    pub from_index: Option<u64>,
}

impl WatchQuery {
    pub fn prefix(p: &str) -> Self {
        WatchQuery {
            prefix: Some(p.to_string()),
            ..Default::default()
        }
    }

    pub fn key(k: &str) -> Self {
        WatchQuery {
            key: Some(k.to_string()),
            ..Default::default()
        }
    }

    pub fn from(mut self, index: u64) -> Self {
        self.from_index = Some(index);
        self
    }

    fn to_query(&self) -> String {
        let mut q = Vec::new();
        if let Some(p) = &self.prefix {
            q.push(format!("prefix={}", encode_key(p)));
        }
        if let Some(k) = &self.key {
            q.push(format!("key={}", encode_key(k)));
        }
        if let Some(i) = self.from_index {
            q.push(format!("from_index={i}"));
        }
        q.join("&")
    }
}

impl Watcher {
    /// The next event, waiting at most `wait`; `None` when the stream ended.
    pub async fn next(&mut self, wait: Duration) -> Result<Option<WatchEvent>, Error> {
        let ev = match tokio::time::timeout(wait, self.events.next()).await {
            Err(_) => {
                return Err(Error::Timeout {
                    what: "a watch event".into(),
                    waited: wait,
                })
            }
            Ok(None) => return Ok(None),
            Ok(Some(Err(e))) => return Err(Error::Unexpected(format!("watch stream: {e}"))),
            Ok(Some(Ok(ev))) => ev,
        };
        let body: serde_json::Value = serde_json::from_str(&ev.data)
            .map_err(|e| Error::Unexpected(format!("watch event {:?}: {e}", ev.data)))?;
        Ok(Some(match ev.event.as_str() {
            "put" | "delete" => {
                let mut c: Change = serde_json::from_value(body)
                    .map_err(|e| Error::Unexpected(format!("watch change: {e}")))?;
                // SSE ids persist from event to event: the one that closes
                // an index carries that index itself.
                c.ends_index = ev.id == c.index.to_string();
                WatchEvent::Change(c)
            }
            "progress" => WatchEvent::Progress(body["index"].as_u64().unwrap_or(0)),
            other => WatchEvent::Final {
                name: other.to_string(),
                body,
            },
        }))
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Granted {
    pub id: u64,
    pub ttl_ms: u64,
    pub index: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LeaseInfo {
    pub id: u64,
    pub ttl_ms: u64,
    pub remaining_ms: u64,
    pub keys: Vec<String>,
    pub more_keys: bool,
}

impl Client {
    /// Opens a watch: `Ok(Err(response))` when the server refused it (410 ...).
    pub async fn watch(&self, q: &WatchQuery) -> Result<Result<Watcher, Response>, Error> {
        let url = format!("{}/v1/watch?{}", self.base(), q.to_query());
        let mut req = self
            .http_client()
            .get(url)
            .timeout(Duration::from_secs(24 * 3600));
        if let Some(t) = self.token() {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        if !resp.status().is_success() {
            return Ok(Err(Response::read(resp).await?));
        }
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.parse::<u64>().ok())
        };
        let from = header("x-watch-from").unwrap_or(0);
        let served_by = header("x-served-by");
        let events = resp
            .bytes_stream()
            .eventsource()
            .map(|r| r.map_err(|e| e.to_string()));
        Ok(Ok(Watcher {
            events: Box::pin(events),
            from,
            served_by,
        }))
    }

    /// `POST /v1/lease`.
    pub async fn lease_grant(&self, ttl: &str) -> Result<Response, Error> {
        let body = serde_json::json!({ "ttl": ttl }).to_string();
        self.request(Method::POST, "/v1/lease", &Opts::new(), body)
            .await
    }

    /// `POST /v1/lease/{id}/keepalive`.
    pub async fn lease_keepalive(&self, id: u64) -> Result<Response, Error> {
        let path = format!("/v1/lease/{id}/keepalive");
        self.request(Method::POST, &path, &Opts::new(), Bytes::new())
            .await
    }

    /// `GET /v1/lease/{id}`.
    pub async fn lease_info(&self, id: u64) -> Result<Response, Error> {
        let path = format!("/v1/lease/{id}");
        self.request(Method::GET, &path, &Opts::new(), Bytes::new())
            .await
    }

    /// `DELETE /v1/lease/{id}`.
    pub async fn lease_revoke(&self, id: u64) -> Result<Response, Error> {
        let path = format!("/v1/lease/{id}");
        self.request(Method::DELETE, &path, &Opts::new(), Bytes::new())
            .await
    }
}
