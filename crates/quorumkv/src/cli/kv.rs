//! `get`, `put`, `del`, `list`, `txn`, `watch`.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use futures::StreamExt;
use reqwest::Method;

use crate::cli::conn::{Answer, Conn, Output, Retry};
use crate::cli::{print_json, CliError};
use quorumkv_proto::headers as name;
use quorumkv_proto::ConsistencyLevel;

/// `/v1/kv/<key>`, the key percent-encoded but for its slashes.
fn kv_path(key: &str) -> String {
    let mut out = String::from("/v1/kv/");
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn query_value(s: &str) -> String {
    kv_path(s)["/v1/kv/".len()..].replace('/', "%2F")
}

#[derive(Debug, clap::Args)]
pub struct GetArgs {
    pub key: String,
    /// strong (linearizable, the default) or eventual (this node's replica).
    #[arg(long, short = 'c', default_value = "strong")]
    pub consistency: ConsistencyLevel,
    /// Block until the key changes past this index (Consul's blocking read).
    #[arg(long)]
    pub wait_index: Option<u64>,
    /// How long a blocking read waits (e.g. 30s).
    #[arg(long, requires = "wait_index")]
    pub wait: Option<String>,
}

/// Where a read was served and how fresh it is, from the answer's headers.
fn read_meta(a: &Answer) -> serde_json::Value {
    let num = |h: &str| {
        a.header(h)
            .and_then(|v| v.trim_matches('"').parse::<u64>().ok())
    };
    serde_json::json!({
        "raft_index": num(name::RAFT_INDEX),
        "mod_index": num(name::ETAG),
        "served_by": num(name::SERVED_BY),
        "leader": num(name::RAFT_LEADER),
        "last_contact_ms": num(name::LAST_CONTACT_MS),
        "consistency": a.header(name::CONSISTENCY),
    })
}

fn value_json(bytes: &[u8]) -> (serde_json::Value, &'static str) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.into(), "utf8"),
        Err(_) => (
            base64::engine::general_purpose::STANDARD
                .encode(bytes)
                .into(),
            "base64",
        ),
    }
}

pub async fn get(c: &Conn, a: GetArgs) -> Result<(), CliError> {
    if a.consistency == ConsistencyLevel::All {
        return Err(CliError::Usage("reads take strong or eventual".into()));
    }
    let mut path = kv_path(&a.key);
    if let Some(i) = a.wait_index {
        path.push_str(&format!("?wait_index={i}"));
        if let Some(w) = &a.wait {
            path.push_str(&format!("&wait={}", query_value(w)));
        }
    }
    let level = a.consistency.as_str();
    let answer = c
        .send(Method::GET, &path, Retry::Always, |r| {
            let r = r.header(name::CONSISTENCY, level);
            // A blocking read may take its whole wait.
            match a.wait_index {
                Some(_) => r.timeout(Duration::from_secs(660)),
                None => r,
            }
        })
        .await?
        .ok()?;
    match c.output {
        Output::Json => {
            let (value, encoding) = value_json(&answer.body);
            let mut v = read_meta(&answer);
            v["key"] = a.key.into();
            v["value"] = value;
            v["encoding"] = encoding.into();
            print_json(&v);
        }
        Output::Text => {
            let mut out = std::io::stdout();
            let _ = out.write_all(&answer.body);
            if std::io::stdout().is_terminal() && !answer.body.ends_with(b"\n") {
                let _ = out.write_all(b"\n");
            }
        }
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct PutArgs {
    pub key: String,
    /// The value; `-` reads it from stdin. Or use --file.
    #[arg(conflicts_with = "file")]
    pub value: Option<String>,
    /// Read the value from this file.
    #[arg(long)]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub write: WriteFlags,
    /// Tie the key to this lease (it is deleted when the lease ends).
    #[arg(long)]
    pub lease: Option<u64>,
}

/// What every write takes.
#[derive(Debug, Clone, clap::Args)]
pub struct WriteFlags {
    /// strong (the default), eventual or all.
    #[arg(long, short = 'c', default_value = "strong")]
    pub consistency: ConsistencyLevel,
    /// Only if the key's modification index is this (If-Match).
    #[arg(long, conflicts_with = "if_absent")]
    pub if_match: Option<u64>,
    /// Only if the key does not exist (If-None-Match: *).
    #[arg(long)]
    pub if_absent: bool,
    /// Makes retries safe: the same key and request answer the first result.
    /// With one, a failed attempt is retried on the next endpoint.
    #[arg(long)]
    pub idempotency_key: Option<String>,
}

impl WriteFlags {
    fn apply(&self, mut r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        r = r.header(name::CONSISTENCY, self.consistency.as_str());
        if let Some(i) = self.if_match {
            r = r.header(name::IF_MATCH, format!("\"{i}\""));
        }
        if self.if_absent {
            r = r.header(name::IF_NONE_MATCH, "*");
        }
        if let Some(k) = &self.idempotency_key {
            r = r.header(name::IDEMPOTENCY_KEY, k.as_str());
        }
        r
    }

    fn retry(&self) -> Retry {
        match self.idempotency_key {
            Some(_) => Retry::Always,
            None => Retry::IfNotSent,
        }
    }
}

fn read_value(a: &PutArgs) -> Result<Vec<u8>, CliError> {
    match (&a.value, &a.file) {
        (Some(v), None) if v == "-" => read_stdin(),
        (Some(v), None) => Ok(v.clone().into_bytes()),
        (None, Some(f)) => {
            std::fs::read(f).map_err(|e| CliError::Usage(format!("--file {}: {e}", f.display())))
        }
        (None, None) if !std::io::stdin().is_terminal() => read_stdin(),
        _ => Err(CliError::Usage(
            "give a value, --file FILE, or `-` for stdin".into(),
        )),
    }
}

fn read_stdin() -> Result<Vec<u8>, CliError> {
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .map_err(|e| CliError::Usage(format!("stdin: {e}")))?;
    Ok(buf)
}

fn print_write(c: &Conn, a: &Answer, what: &str) -> Result<(), CliError> {
    let body = a.json()?;
    match c.output {
        Output::Json => print_json(&body),
        Output::Text => {
            let index = body["index"].as_u64().unwrap_or(0);
            let level = body["consistency"].as_str().unwrap_or("");
            let extra = match body.get("deleted").and_then(|d| d.as_bool()) {
                Some(true) => " (it existed)",
                Some(false) => " (it did not exist)",
                None => "",
            };
            println!("{what} at index {index} ({level}){extra}");
        }
    }
    Ok(())
}

pub async fn put(c: &Conn, a: PutArgs) -> Result<(), CliError> {
    let value = bytes::Bytes::from(read_value(&a)?);
    let path = kv_path(&a.key);
    let answer = c
        .send(Method::PUT, &path, a.write.retry(), |r| {
            let r = a.write.apply(r).body(value.clone());
            match a.lease {
                Some(l) => r.header(name::LEASE, l.to_string()),
                None => r,
            }
        })
        .await?
        .ok()?;
    print_write(c, &answer, "written")
}

#[derive(Debug, clap::Args)]
pub struct DelArgs {
    pub key: String,
    #[command(flatten)]
    pub write: WriteFlags,
}

pub async fn del(c: &Conn, a: DelArgs) -> Result<(), CliError> {
    let path = kv_path(&a.key);
    let answer = c
        .send(Method::DELETE, &path, a.write.retry(), |r| a.write.apply(r))
        .await?
        .ok()?;
    print_write(c, &answer, "deleted")
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Keys starting with this (all keys if empty).
    #[arg(default_value = "")]
    pub prefix: String,
    /// Most keys to list (all pages are followed up to it).
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
    #[arg(long, short = 'c', default_value = "strong")]
    pub consistency: ConsistencyLevel,
    /// Keys only.
    #[arg(long)]
    pub keys_only: bool,
}

pub async fn list(c: &Conn, a: ListArgs) -> Result<(), CliError> {
    let mut items: Vec<serde_json::Value> = Vec::new();
    let mut start: Option<String> = None;
    let mut more = false;
    while items.len() < a.limit {
        let page = (a.limit - items.len()).min(10_000);
        let mut path = format!("/v1/kv?prefix={}&limit={page}", query_value(&a.prefix));
        if let Some(s) = &start {
            path.push_str(&format!("&start={}", query_value(s)));
        }
        let level = a.consistency.as_str();
        let body = c
            .json(Method::GET, &path, Retry::Always, |r| {
                r.header(name::CONSISTENCY, level)
            })
            .await?;
        if let Some(list) = body["items"].as_array() {
            items.extend(list.iter().cloned());
        }
        more = body["more"].as_bool().unwrap_or(false);
        match body["next"].as_str() {
            Some(n) if more => start = Some(n.to_string()),
            _ => break,
        }
    }
    match c.output {
        Output::Json => print_json(&serde_json::json!({ "items": items, "more": more })),
        Output::Text => {
            for it in &items {
                let key = it["key"].as_str().unwrap_or("");
                if a.keys_only {
                    println!("{key}");
                } else {
                    let enc = if it["encoding"] == "base64" {
                        " (base64)"
                    } else {
                        ""
                    };
                    println!("{key} = {}{enc}", it["value"].as_str().unwrap_or(""));
                }
            }
            if more {
                eprintln!("(more keys: raise --limit)");
            }
        }
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct TxnArgs {
    /// The transaction's JSON (as for POST /v1/txn); `-` or nothing: stdin.
    #[arg(default_value = "-")]
    pub file: String,
    #[command(flatten)]
    pub write: WriteFlags,
}

pub async fn txn(c: &Conn, a: TxnArgs) -> Result<(), CliError> {
    let body = if a.file == "-" {
        read_stdin()?
    } else {
        std::fs::read(&a.file).map_err(|e| CliError::Usage(format!("{}: {e}", a.file)))?
    };
    let body = bytes::Bytes::from(body);
    let answer = c
        .send(Method::POST, "/v1/txn", a.write.retry(), |r| {
            a.write
                .apply(r)
                .header("content-type", "application/json")
                .body(body.clone())
        })
        .await?
        .ok()?;
    let v = answer.json()?;
    match c.output {
        Output::Json => print_json(&v),
        Output::Text => {
            let ok = v["succeeded"].as_bool().unwrap_or(false);
            println!(
                "{} at index {}",
                if ok {
                    "succeeded"
                } else {
                    "compares failed (failure branch ran)"
                },
                v["index"].as_u64().unwrap_or(0)
            );
            if let Some(results) = v["results"].as_array() {
                for r in results {
                    println!("  {r}");
                }
            }
        }
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// Watch keys with this prefix (all keys if neither this nor --key).
    #[arg(long, conflicts_with = "key")]
    pub prefix: Option<String>,
    /// Watch this key only.
    #[arg(long)]
    pub key: Option<String>,
    /// Start at this index (410 if older than the history); default: now.
    #[arg(long)]
    pub from_index: Option<u64>,
    /// Stop after this many changes.
    #[arg(long)]
    pub count: Option<u64>,
}

/// Follows a watch, resuming on the next endpoint (from the last index it
/// printed + 1) when one goes; a spinner shows the catch-up on a terminal.
pub async fn watch(c: &Conn, a: WatchArgs) -> Result<(), CliError> {
    let mut from = a.from_index;
    let mut printed = 0u64;
    let mut failures = 0usize;
    let spinner = (std::io::stderr().is_terminal() && from.is_some()).then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.set_message("catching up from the history...");
        s.enable_steady_tick(Duration::from_millis(120));
        s
    });
    let mut spinner = spinner;
    let endpoints = c.endpoints().to_vec();
    let mut e = 0usize;
    loop {
        if failures >= endpoints.len() * 3 {
            return Err(CliError::Unavailable("no endpoint serves the watch".into()));
        }
        let endpoint = &endpoints[e % endpoints.len()];
        let mut query = Vec::new();
        if let Some(k) = &a.key {
            query.push(format!("key={}", query_value(k)));
        }
        if let Some(p) = &a.prefix {
            query.push(format!("prefix={}", query_value(p)));
        }
        if let Some(f) = from {
            query.push(format!("from_index={f}"));
        }
        let path = format!("/v1/watch?{}", query.join("&"));
        let resp = c
            .request(Method::GET, endpoint, &path)
            .timeout(Duration::from_secs(365 * 24 * 3600))
            .send()
            .await;
        let resp = match resp {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                let status = r.status();
                let answer = Answer {
                    status,
                    headers: r.headers().clone(),
                    body: r.bytes().await.unwrap_or_default(),
                    endpoint: endpoint.clone(),
                };
                if status.as_u16() == 503 {
                    failures += 1;
                    e += 1;
                    continue;
                }
                answer.ok()?;
                continue;
            }
            Err(_) => {
                failures += 1;
                e += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        failures = 0;
        if from.is_none() {
            // Where a watch "from now" started: a reconnect goes on from there.
            from = resp
                .headers()
                .get("x-watch-from")
                .and_then(|v| v.to_str().ok()?.parse().ok());
        }
        // An index's changes are printed once its last one (the SSE id) came,
        // so a reconnect mid-index repeats nothing.
        let mut pending: Vec<String> = Vec::new();
        let mut events = eventsource_stream::Eventsource::eventsource(resp.bytes_stream());
        while let Some(ev) = events.next().await {
            let Ok(ev) = ev else { break };
            let v: serde_json::Value = serde_json::from_str(&ev.data).unwrap_or_default();
            match ev.event.as_str() {
                "put" | "delete" => {
                    if let Some(s) = spinner.take() {
                        s.finish_and_clear();
                    }
                    pending.push(match c.output {
                        Output::Json => v.to_string(),
                        Output::Text => {
                            let index = v["index"].as_u64().unwrap_or(0);
                            let key = v["key"].as_str().unwrap_or("");
                            match v["value"].as_str() {
                                Some(val) if v["encoding"] == "base64" => {
                                    format!("{index} put {key} = {val} (base64)")
                                }
                                Some(val) => format!("{index} put {key} = {val}"),
                                None => format!("{index} delete {key}"),
                            }
                        }
                    });
                    // SSE ids persist from event to event: the change that
                    // closes an index carries that index itself.
                    if v["index"].as_u64().is_some_and(|i| ev.id == i.to_string()) {
                        for line in pending.drain(..) {
                            println!("{line}");
                            printed += 1;
                        }
                        from = ev.id.parse::<u64>().ok().map(|i| i + 1);
                        if a.count.is_some_and(|n| printed >= n) {
                            return Ok(());
                        }
                    }
                }
                "progress" => {
                    if let Some(s) = spinner.take() {
                        s.finish_and_clear();
                    }
                    from = v["index"].as_u64().map(|i| i + 1);
                }
                "cancelled" => {
                    from = v["resume_from"].as_u64();
                    break;
                }
                _ => {
                    let msg = v["error"]["message"].as_str().unwrap_or("the watch ended");
                    return Err(CliError::Failed(msg.to_string()));
                }
            }
        }
        // The stream ended (node stopped or lost): go on elsewhere, not in a
        // tight loop if nodes keep ending it at once.
        e += 1;
        failures += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
