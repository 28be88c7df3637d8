//! `benchloss`: counts acknowledged writes that a cluster later does not have.
//!
//! `scripts/bench.sh --tradeoffs` runs `benchloss write` under steady load while
//! it `kill -9`s the leader a few times, then `benchloss verify` once the
//! cluster has recovered:
//!
//! ```text
//! benchloss write  --endpoints URLS --consistency eventual --acked FILE   # until SIGTERM
//! benchloss verify --endpoints URLS --acked FILE                          # JSON on stdout
//! ```
//!
//! Every write goes to a fresh key (`<prefix>/<worker>/<seq>`) and is never
//! retried, so an acknowledged key that a strong read later finds absent is an
//! acknowledged write the cluster lost. Writes that got no definite answer
//! (an error status, a timeout, a reset) are counted as uncertain, not acked.
//! The value is derived from the key, so a read also proves it is *that* write.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use quorumkv_proto::ConsistencyLevel;
use reqwest::{Client, StatusCode};
use serde::Serialize;
use tokio::task::JoinSet;

#[derive(Parser)]
#[command(
    name = "benchloss",
    about = "Acknowledged-write loss under leader kills"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write unique keys until SIGTERM/Ctrl-C (or --max-duration); save the acknowledged ones.
    Write(WriteArgs),
    /// Read every acknowledged key strongly; report how many are missing.
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
struct WriteArgs {
    /// Node URLs, comma separated; each worker starts on one and moves on after a failure.
    #[arg(long, value_delimiter = ',', required = true)]
    endpoints: Vec<String>,
    #[arg(long)]
    consistency: ConsistencyLevel,
    /// Concurrent writers, one request in flight each.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Key prefix; keys are <prefix>/<worker>/<seq>.
    #[arg(long)]
    prefix: String,
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Stop by itself after this long even without a signal.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
    max_duration: Duration,
    /// Per-request timeout.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    timeout: Duration,
    /// Where to write the acknowledged keys, one `key<TAB>index` per line.
    #[arg(long)]
    acked: PathBuf,
}

#[derive(clap::Args)]
struct VerifyArgs {
    #[arg(long, value_delimiter = ',', required = true)]
    endpoints: Vec<String>,
    /// The file `benchloss write --acked` wrote.
    #[arg(long)]
    acked: PathBuf,
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Give up on keys still unreadable after this long (counted as unknown).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2m")]
    deadline: Duration,
}

/// The value written to `key`: the key itself, padded with dots to `size`.
fn value_for(key: &str, size: usize) -> Vec<u8> {
    let mut v = key.as_bytes().to_vec();
    if v.len() < size {
        v.resize(size, b'.');
    }
    v
}

fn client(timeout: Duration) -> anyhow::Result<Client> {
    Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(1))
        .build()
        .context("building the HTTP client")
}

fn base_urls(endpoints: &[String]) -> anyhow::Result<Vec<String>> {
    let urls: Vec<String> = endpoints
        .iter()
        .map(|e| e.trim().trim_end_matches('/').to_string())
        .filter(|e| !e.is_empty())
        .collect();
    if urls.is_empty() {
        bail!("--endpoints: give at least one node URL");
    }
    Ok(urls)
}

// ------------------------------------------------------------------ write

#[derive(Default)]
struct WriterTally {
    acked: Vec<(String, u64)>,
    sent: u64,
    statuses: BTreeMap<u16, u64>,
    transport: u64,
}

#[derive(Serialize)]
struct WriteSummary {
    consistency: &'static str,
    connections: usize,
    duration_s: f64,
    sent: u64,
    acked: u64,
    /// Answers that were not a 2xx, by status: the write may or may not apply.
    uncertain_status: BTreeMap<String, u64>,
    /// No answer at all (refused, reset, timeout).
    uncertain_transport: u64,
}

async fn writer(
    id: usize,
    args: Arc<WriteArgs>,
    urls: Arc<Vec<String>>,
    http: Client,
    stop: Arc<AtomicBool>,
) -> WriterTally {
    let mut t = WriterTally::default();
    let mut ep = id % urls.len();
    let mut seq = 0u64;
    while !stop.load(Relaxed) {
        let key = format!("{}/{id:03}/{seq:08}", args.prefix);
        seq += 1;
        t.sent += 1;
        let res = http
            .put(format!("{}/v1/kv/{key}", urls[ep]))
            .header("x-consistency", args.consistency.as_str())
            .body(value_for(&key, args.value_size))
            .send()
            .await;
        let moved_on = match res {
            Ok(resp) if resp.status().is_success() => {
                let index = resp
                    .headers()
                    .get("x-raft-index")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                // Drain the body so the connection is reused.
                let _ = resp.bytes().await;
                t.acked.push((key, index));
                false
            }
            Ok(resp) => {
                *t.statuses.entry(resp.status().as_u16()).or_default() += 1;
                let _ = resp.bytes().await;
                true
            }
            Err(_) => {
                t.transport += 1;
                true
            }
        };
        if moved_on {
            // A dead or leaderless node: try the next one, without spinning.
            ep = (ep + 1) % urls.len();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    t
}

fn on_signal(stop: Arc<AtomicBool>) {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        stop.store(true, Relaxed);
    });
}

async fn write(args: WriteArgs) -> anyhow::Result<()> {
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    let urls = Arc::new(base_urls(&args.endpoints)?);
    let http = client(args.timeout)?;
    let args = Arc::new(args);
    let stop = Arc::new(AtomicBool::new(false));
    on_signal(stop.clone());
    {
        let (stop, max) = (stop.clone(), args.max_duration);
        tokio::spawn(async move {
            tokio::time::sleep(max).await;
            stop.store(true, Relaxed);
        });
    }
    let started = Instant::now();
    let mut set = JoinSet::new();
    for id in 0..args.connections {
        set.spawn(writer(
            id,
            args.clone(),
            urls.clone(),
            http.clone(),
            stop.clone(),
        ));
    }
    let mut all = WriterTally::default();
    while let Some(joined) = set.join_next().await {
        let t = joined.context("writer task")?;
        all.acked.extend(t.acked);
        all.sent += t.sent;
        all.transport += t.transport;
        for (code, n) in t.statuses {
            *all.statuses.entry(code).or_default() += n;
        }
    }
    let mut out = String::new();
    for (key, index) in &all.acked {
        out.push_str(&format!("{key}\t{index}\n"));
    }
    std::fs::write(&args.acked, out)
        .with_context(|| format!("writing {}", args.acked.display()))?;
    let summary = WriteSummary {
        consistency: args.consistency.as_str(),
        connections: args.connections,
        duration_s: (started.elapsed().as_secs_f64() * 1e3).round() / 1e3,
        sent: all.sent,
        acked: all.acked.len() as u64,
        uncertain_status: all
            .statuses
            .iter()
            .map(|(c, n)| (c.to_string(), *n))
            .collect(),
        uncertain_transport: all.transport,
    };
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

// ------------------------------------------------------------------ verify

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    Present,
    Lost,
    WrongValue,
    Unknown,
}

#[derive(Serialize)]
struct VerifySummary {
    acked: u64,
    present: u64,
    /// Acknowledged, and a strong read says the key does not exist.
    lost: u64,
    /// The key holds something other than what this write wrote.
    wrong_value: u64,
    /// No definite answer before the deadline.
    unknown: u64,
    /// Up to 10 lost keys with the index they were acknowledged at.
    lost_sample: Vec<String>,
}

async fn check(
    http: &Client,
    urls: &[String],
    key: &str,
    expected: &[u8],
    deadline: Instant,
) -> Found {
    let mut ep = 0;
    while Instant::now() < deadline {
        let res = http
            .get(format!("{}/v1/kv/{key}", urls[ep]))
            .header("x-consistency", "strong")
            .send()
            .await;
        if let Ok(resp) = res {
            let status = resp.status();
            let body = resp.bytes().await;
            match (status, body) {
                (StatusCode::OK, Ok(b)) if b.as_ref() == expected => return Found::Present,
                (StatusCode::OK, Ok(_)) => return Found::WrongValue,
                (StatusCode::NOT_FOUND, Ok(b)) if b.windows(13).any(|w| w == b"key_not_found") => {
                    return Found::Lost
                }
                _ => {}
            }
        }
        ep = (ep + 1) % urls.len();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Found::Unknown
}

fn read_acked(path: &Path) -> anyhow::Result<Vec<(String, u64)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (key, index) = l.split_once('\t').context("expected key<TAB>index")?;
            Ok((key.to_string(), index.parse().context("bad index")?))
        })
        .collect()
}

async fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let urls = Arc::new(base_urls(&args.endpoints)?);
    let acked = Arc::new(read_acked(&args.acked)?);
    let http = client(Duration::from_secs(5))?;
    let deadline = Instant::now() + args.deadline;
    let mut set = JoinSet::new();
    let workers = args.connections.max(1);
    for w in 0..workers {
        let (urls, acked, http) = (urls.clone(), acked.clone(), http.clone());
        let size = args.value_size;
        set.spawn(async move {
            let mut found = Vec::new();
            for (key, index) in acked.iter().skip(w).step_by(workers) {
                let f = check(&http, &urls, key, &value_for(key, size), deadline).await;
                found.push((f, key.clone(), *index));
            }
            found
        });
    }
    let mut s = VerifySummary {
        acked: acked.len() as u64,
        present: 0,
        lost: 0,
        wrong_value: 0,
        unknown: 0,
        lost_sample: Vec::new(),
    };
    while let Some(joined) = set.join_next().await {
        for (f, key, index) in joined.context("verify task")? {
            match f {
                Found::Present => s.present += 1,
                Found::Lost => {
                    s.lost += 1;
                    if s.lost_sample.len() < 10 {
                        s.lost_sample.push(format!("{key}@{index}"));
                    }
                }
                Found::WrongValue => s.wrong_value += 1,
                Found::Unknown => s.unknown += 1,
            }
        }
    }
    s.lost_sample.sort();
    println!("{}", serde_json::to_string(&s)?);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Write(a) => write(a).await,
        Cmd::Verify(a) => verify(a).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_derived_from_keys() {
        assert_eq!(value_for("a/1", 5), b"a/1..");
        assert_eq!(value_for("abcdef", 3), b"abcdef");
        assert_ne!(value_for("k/1", 64), value_for("k/2", 64));
    }

    #[test]
    fn endpoints_are_normalised() {
        let urls = base_urls(&["http://a:1/".into(), " ".into()]).unwrap();
        assert_eq!(urls, ["http://a:1"]);
        assert!(base_urls(&[]).is_err());
    }
}
