//! `quorumkv-bench` flags and their validation into a [`Plan`].
//!
//! Parsing is strict up front (bad URLs, `mixed:1.5`, `get` at `all`) so a run
//! never starts only to answer every request with a 400.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::error::BenchError;
pub use quorumkv_proto::ConsistencyLevel;

/// Run length when neither `--duration` nor `--requests` is given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Node URLs, comma separated, e.g. http://127.0.0.1:7001,http://127.0.0.1:7002 (http only).
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:7001")]
    pub endpoints: Vec<String>,

    /// Round-robin connections across all endpoints (the default).
    #[arg(long, conflicts_with = "pin")]
    pub spread: bool,

    /// Open every connection to the first endpoint only.
    #[arg(long)]
    pub pin: bool,

    /// Virtual clients: each owns one keep-alive connection and has one request in flight.
    #[arg(long, short = 'c', default_value_t = 16)]
    pub connections: usize,

    /// How long to measure, e.g. 10s, 500ms, 2m (a bare number is seconds) [default: 10s].
    #[arg(long, short = 'd', value_parser = parse_duration, conflicts_with = "requests")]
    pub duration: Option<Duration>,

    /// Measure this many requests (all connections together) instead of a duration.
    #[arg(long, short = 'n')]
    pub requests: Option<u64>,

    /// put, get, or mixed:R where R (0..1) is the share of reads, e.g. mixed:0.9.
    #[arg(long, default_value = "put", value_parser = OpMix::from_str)]
    pub op: OpMix,

    /// Sent as X-Consistency. `all` is for writes: with mixed:R its reads go as strong.
    /// For etcd: eventual = serializable reads, otherwise linearizable.
    #[arg(long, default_value_t = ConsistencyLevel::Strong)]
    pub consistency: ConsistencyLevel,

    /// Size of the key space: keys are bench/<n>, n zero padded, chosen uniformly.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,

    /// Bytes in each written value.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,

    /// Load applied before measuring; not recorded.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub warmup: Duration,

    /// Write every key once (strongly) before the run, so gets find values.
    #[arg(long)]
    pub preload: bool,

    /// Per-request timeout; a request past it is a transport error and its connection is dropped.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub timeout: Duration,

    /// Print the result as one JSON object on stdout (no progress bar).
    #[arg(long)]
    pub json: bool,

    /// Which HTTP API to speak: quorumkv's /v1/kv or etcd's v3 JSON gateway.
    #[arg(long, value_enum, default_value_t = TargetKind::Quorumkv)]
    pub target: TargetKind,

    /// PEM CA certificate to trust for https:// endpoints (for
    /// `scripts/cluster.sh up --secure`: .cluster/tls/ca.crt).
    #[arg(long)]
    pub cacert: Option<std::path::PathBuf>,

    /// File holding a client token, sent as `Authorization: Bearer` with every
    /// request (for `up --secure`: .cluster/admin-token).
    #[arg(long)]
    pub token_file: Option<std::path::PathBuf>,
}

/// What the connections send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OpMix {
    Put,
    Get,
    /// Reads with this probability, writes otherwise.
    Mixed(f64),
}

impl OpMix {
    /// Share of requests that are reads.
    pub fn read_ratio(self) -> f64 {
        match self {
            OpMix::Put => 0.0,
            OpMix::Get => 1.0,
            OpMix::Mixed(r) => r,
        }
    }
}

impl FromStr for OpMix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "put" => Ok(OpMix::Put),
            "get" => Ok(OpMix::Get),
            other => {
                let ratio = other.strip_prefix("mixed:").ok_or_else(|| {
                    format!("{s:?}: expected put, get or mixed:R (R from 0 to 1)")
                })?;
                match ratio.parse::<f64>() {
                    Ok(r) if (0.0..=1.0).contains(&r) => Ok(OpMix::Mixed(r)),
                    _ => Err(format!(
                        "{s:?}: the read ratio R in mixed:R must be a number from 0 to 1"
                    )),
                }
            }
        }
    }
}

impl fmt::Display for OpMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpMix::Put => f.write_str("put"),
            OpMix::Get => f.write_str("get"),
            OpMix::Mixed(r) => write!(f, "mixed:{r}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetKind {
    Quorumkv,
    Etcd,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Quorumkv => "quorumkv",
            TargetKind::Etcd => "etcd",
        }
    }
}

/// `10s`, `500ms`, `1m30s` (humantime), or a bare number of seconds (`2`, `0.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("{s:?}: seconds must be a non-negative number"));
    }
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration such as 10s: {e}"))
}

/// Where a connection goes: `http://host:port[/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// As given, for reports.
    pub url: String,
    pub host: String,
    pub port: u16,
    /// `host:port`, sent as the Host header.
    pub authority: String,
    /// Path prefix without a trailing slash ("" for none).
    pub prefix: String,
    /// https://
    pub tls: bool,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, BenchError> {
        let bad = |reason: &str| BenchError::BadEndpoint {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let uri: hyper::Uri = url.trim().parse().map_err(|_| bad("not a URL"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(_) => return Err(bad("only http:// and https:// are supported")),
            None => return Err(bad("missing http:// scheme")),
        };
        let host = uri.host().ok_or_else(|| bad("missing host"))?;
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        if uri.query().is_some() {
            return Err(bad("a query string is not allowed"));
        }
        // `[::1]` in the URL; a socket address wants the bare IPv6 literal.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        Ok(Endpoint {
            url: url.trim().to_string(),
            host: bare.to_string(),
            port,
            authority: format!("{host}:{port}"),
            prefix: uri.path().trim_end_matches('/').to_string(),
            tls,
        })
    }
}

/// How the run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    After(Duration),
    Requests(u64),
}

/// Validated flags.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: TargetKind,
    pub endpoints: Vec<Endpoint>,
    /// false = `--pin`: every connection to `endpoints[0]`.
    pub spread: bool,
    pub connections: usize,
    pub stop: Stop,
    pub op: OpMix,
    pub consistency: ConsistencyLevel,
    pub keys: u64,
    pub value_size: usize,
    pub warmup: Duration,
    pub preload: bool,
    pub timeout: Duration,
    pub json: bool,
    /// For https:// endpoints: trusts `--cacert`.
    pub tls: Option<Tls>,
    /// `--token-file`'s token.
    pub token: Option<String>,
}

/// The TLS client of https:// endpoints.
#[derive(Clone)]
pub struct Tls(pub tokio_rustls::TlsConnector);

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tls(..)")
    }
}

impl Tls {
    fn load(ca: &std::path::Path) -> Result<Tls, BenchError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;
        let bad = |e: &dyn fmt::Display| {
            BenchError::InvalidArgs(format!("--cacert {}: {e}", ca.display()))
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).map_err(|e| bad(&e))? {
            roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(&e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
            config,
        ))))
    }
}

impl Plan {
    /// The endpoint connection number `conn` talks to.
    pub fn endpoint_for(&self, conn: usize) -> &Endpoint {
        if self.spread {
            &self.endpoints[conn % self.endpoints.len()]
        } else {
            &self.endpoints[0]
        }
    }
}

impl TryFrom<BenchArgs> for Plan {
    type Error = BenchError;

    fn try_from(a: BenchArgs) -> Result<Plan, BenchError> {
        let invalid = |m: String| Err(BenchError::InvalidArgs(m));
        let endpoints = a
            .endpoints
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(Endpoint::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return invalid("--endpoints: give at least one node URL".into());
        }
        if a.connections == 0 {
            return invalid("--connections must be at least 1".into());
        }
        if a.keys == 0 {
            return invalid("--keys must be at least 1".into());
        }
        let stop = match (a.duration, a.requests) {
            (_, Some(0)) => return invalid("--requests must be at least 1".into()),
            (_, Some(n)) => Stop::Requests(n),
            (Some(d), None) if d.is_zero() => {
                return invalid("--duration must be longer than zero".into())
            }
            (Some(d), None) => Stop::After(d),
            (None, None) => Stop::After(DEFAULT_DURATION),
        };
        if a.timeout.is_zero() {
            return invalid("--timeout must be longer than zero".into());
        }
        if a.target == TargetKind::Quorumkv
            && a.op == OpMix::Get
            && a.consistency == ConsistencyLevel::All
        {
            return invalid(
                "--consistency all applies to writes only; use strong or eventual with --op get"
                    .into(),
            );
        }
        if endpoints.iter().any(|e| e.tls) && a.cacert.is_none() {
            return invalid(
                "https:// endpoints need --cacert (the CA that signed the nodes' certificates)"
                    .into(),
            );
        }
        let tls = a.cacert.as_deref().map(Tls::load).transpose()?;
        let token = match &a.token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| {
                        BenchError::InvalidArgs(format!("--token-file {}: {e}", path.display()))
                    })?
                    .trim()
                    .to_owned(),
            ),
            None => None,
        };
        Ok(Plan {
            tls,
            token,
            target: a.target,
            endpoints,
            spread: !a.pin,
            connections: a.connections,
            stop,
            op: a.op,
            consistency: a.consistency,
            keys: a.keys,
            value_size: a.value_size,
            warmup: a.warmup,
            preload: a.preload,
            timeout: a.timeout,
            json: a.json,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn plan(argv: &[&str]) -> Result<Plan, String> {
        let cli = Cli::try_parse_from(std::iter::once("bench").chain(argv.iter().copied()))
            .map_err(|e| e.to_string())?;
        Plan::try_from(cli.args).map_err(|e| e.to_string())
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn op_mix() {
        assert_eq!("put".parse(), Ok(OpMix::Put));
        assert_eq!("GET".parse(), Ok(OpMix::Get));
        assert_eq!("mixed:0.9".parse(), Ok(OpMix::Mixed(0.9)));
        assert_eq!("mixed:0".parse(), Ok(OpMix::Mixed(0.0)));
        assert_eq!("mixed:1".parse(), Ok(OpMix::Mixed(1.0)));
        assert!("mixed".parse::<OpMix>().is_err());
        assert!("mixed:".parse::<OpMix>().is_err());
        assert!("mixed:1.5".parse::<OpMix>().is_err());
        assert!("mixed:-0.1".parse::<OpMix>().is_err());
        assert!("mixed:NaN".parse::<OpMix>().is_err());
        assert!("delete".parse::<OpMix>().is_err());
        assert_eq!(OpMix::Mixed(0.75).to_string(), "mixed:0.75");
        assert_eq!(OpMix::Mixed(0.75).read_ratio(), 0.75);
    }

    #[test]
    fn defaults() {
        let p = plan(&[]).unwrap();
        assert_eq!(p.stop, Stop::After(DEFAULT_DURATION));
        assert_eq!(p.op, OpMix::Put);
        assert_eq!(p.consistency, ConsistencyLevel::Strong);
        assert_eq!(p.target, TargetKind::Quorumkv);
        assert_eq!(p.warmup, Duration::from_secs(2));
        assert!(p.spread);
        assert_eq!(p.endpoints.len(), 1);
        assert_eq!(p.endpoints[0].authority, "127.0.0.1:7001");
    }

    #[test]
    fn full_command_line() {
        let p = plan(&[
            "--endpoints",
            "http://127.0.0.1:7201,http://127.0.0.1:7202/,http://localhost:7203/kv",
            "--connections",
            "3",
            "--requests",
            "1000",
            "--op",
            "mixed:0.5",
            "--consistency",
            "eventual",
            "--keys",
            "100",
            "--value-size",
            "8",
            "--warmup",
            "0",
            "--preload",
            "--json",
            "--target",
            "etcd",
        ])
        .unwrap();
        assert_eq!(p.stop, Stop::Requests(1000));
        assert_eq!(p.op, OpMix::Mixed(0.5));
        assert_eq!(p.consistency, ConsistencyLevel::Eventual);
        assert_eq!(p.target, TargetKind::Etcd);
        assert!(p.preload && p.json);
        assert_eq!(p.warmup, Duration::ZERO);
        let eps: Vec<_> = (0..4).map(|i| p.endpoint_for(i).port).collect();
        assert_eq!(eps, [7201, 7202, 7203, 7201]);
        assert_eq!(p.endpoints[1].prefix, "");
        assert_eq!(p.endpoints[2].prefix, "/kv");
        assert_eq!(p.endpoints[2].host, "localhost");
    }

    #[test]
    fn pin_uses_first_endpoint() {
        let p = plan(&["--endpoints", "http://a:1,http://b:2", "--pin"]).unwrap();
        assert!((0..5).all(|i| p.endpoint_for(i).host == "a"));
        assert!(plan(&["--pin", "--spread"]).is_err());
    }

    #[test]
    fn rejects_bad_flags() {
        assert!(plan(&["--duration", "5s", "--requests", "10"]).is_err());
        assert!(plan(&["--duration", "0s"]).is_err());
        assert!(plan(&["--requests", "0"]).is_err());
        assert!(plan(&["--connections", "0"]).is_err());
        assert!(plan(&["--keys", "0"]).is_err());
        assert!(plan(&["--op", "mixed:2"]).is_err());
        assert!(plan(&["--consistency", "weak"]).is_err());
        assert!(
            plan(&["--endpoints", "https://127.0.0.1:7001"]).is_err(),
            "https needs --cacert"
        );
        assert!(plan(&["--endpoints", "ftp://127.0.0.1:7001"]).is_err());
        assert!(plan(&["--endpoints", "127.0.0.1:7001"]).is_err());
        let all_get = plan(&["--op", "get", "--consistency", "all"]).unwrap_err();
        assert!(all_get.contains("writes only"), "{all_get}");
        // etcd has no `all`: reads at `all` are linearizable there.
        assert!(plan(&["--op", "get", "--consistency", "all", "--target", "etcd"]).is_ok());
        assert!(plan(&["--op", "mixed:0.5", "--consistency", "all"]).is_ok());
    }

    #[test]
    fn endpoint_parsing() {
        let e = Endpoint::parse("http://[::1]:7001").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 7001));
        assert_eq!(e.authority, "[::1]:7001");
        assert_eq!(Endpoint::parse("http://h").unwrap().port, 80);
        assert!(Endpoint::parse("http://h:1/?x=1").is_err());
    }

    #[test]
    fn reads_at_all_go_strong() {
        assert_eq!(ConsistencyLevel::All.for_reads(), ConsistencyLevel::Strong);
        assert_eq!(
            ConsistencyLevel::Eventual.for_reads(),
            ConsistencyLevel::Eventual
        );
    }
}
