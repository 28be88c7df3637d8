//! `quorumkv serve` flags (each also read from a `QKV_*` environment variable)
//! and their validation into a [`Config`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::api::auth::{Auth, AuthError};
use crate::peer::auth::ClusterToken;
use crate::raft::state_machine::Retention;
use crate::raft::NodeId;
use crate::sm::history::Limit;
use crate::sm::idempotency::Policy;
use crate::store::QueueBounds;
use crate::tls::{Identity, PeerTls, TlsError};

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// A TOML file with any of these settings, one key per flag
    /// (`max-connections = 4096`); a flag or its QKV_* variable wins over it.
    #[arg(long, env = "QKV_CONFIG")]
    pub config: Option<PathBuf>,

    /// This node's id: a positive integer, unique in the cluster and listed in --initial-cluster.
    #[arg(long, env = "QKV_ID")]
    pub id: NodeId,

    /// Address to bind for clients (/v1, /health, /ready).
    #[arg(long, env = "QKV_LISTEN", default_value = "127.0.0.1:7001")]
    pub listen: SocketAddr,

    /// Address to bind for peers (/raft/*), so a firewall can keep clients off
    /// it [default: the --listen IP, port + 1000]. A non-loopback address
    /// needs a cluster token.
    #[arg(long, env = "QKV_PEER_LISTEN")]
    pub peer_listen: Option<SocketAddr>,

    /// URL peers use to reach this node: the address the cluster records for
    /// it [default: its --initial-cluster entry, else http://<peer-listen>].
    /// When both are given they must agree.
    #[arg(long, alias = "advertise", env = "QKV_ADVERTISE_PEER")]
    pub advertise_peer: Option<String>,

    /// URL clients use to reach this node, shown in /v1/cluster
    /// [default: http://<listen>].
    #[arg(long, env = "QKV_ADVERTISE_CLIENT")]
    pub advertise_client: Option<String>,

    /// Directory for the Raft log and vote (raft-log, <dir>/wal), the state
    /// machine (sled, <dir>/sm) and the latest snapshot (<dir>/snapshot).
    #[arg(long, env = "QKV_DATA_DIR")]
    pub data_dir: PathBuf,

    /// The founding members and their peer URLs, etcd style:
    /// `1=http://127.0.0.1:8001,2=http://127.0.0.1:8002,...`.
    /// Used only when the data dir holds no state yet; a restarted node resumes from disk.
    #[arg(long, env = "QKV_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,

    /// Join a running cluster instead of founding one: peer URLs of some of
    /// its members (comma-separated). The node asks them to add it as a
    /// learner, then asks to be promoted to voter once it has caught up.
    /// Used only when the data dir holds no state yet.
    #[arg(
        long,
        env = "QKV_JOIN",
        value_delimiter = ',',
        conflicts_with = "initial_cluster"
    )]
    pub join: Vec<String>,

    /// With --join: stay a learner (receive the log, never vote).
    #[arg(long, env = "QKV_LEARNER", requires = "join")]
    pub learner: bool,

    /// The cluster's shared secret, sent with every peer request and required of
    /// every request to /raft/*. Prefer --cluster-token-file: a flag's value
    /// shows in `ps`. At least 16 visible ASCII characters; the same on every node.
    #[arg(
        long,
        env = "QKV_CLUSTER_TOKEN",
        hide_env_values = true,
        conflicts_with = "cluster_token_file"
    )]
    pub cluster_token: Option<String>,

    /// A file holding the cluster token (surrounding white space ignored).
    #[arg(long, env = "QKV_CLUSTER_TOKEN_FILE")]
    pub cluster_token_file: Option<PathBuf>,

    /// Client tokens with roles and key prefixes (TOML; see README,
    /// Security). Reloaded on SIGHUP. Without it any client may do anything.
    #[arg(long, env = "QKV_AUTH_FILE")]
    pub auth_file: Option<PathBuf>,

    /// PEM certificate (chain) of the client listener: clients then speak
    /// HTTPS. Needs --key.
    #[arg(long, env = "QKV_CERT", requires = "key")]
    pub cert: Option<PathBuf>,

    /// PEM private key of --cert.
    #[arg(long, env = "QKV_KEY", requires = "cert")]
    pub key: Option<PathBuf>,

    /// PEM CA certificate(s): every client must present a certificate it signed.
    #[arg(long, env = "QKV_CLIENT_CA", requires = "cert")]
    pub client_ca: Option<PathBuf>,

    /// PEM certificate this node presents to its peers, as server and as
    /// client (mutual TLS); peer URLs are then https://. Needs --peer-key and --peer-ca.
    #[arg(long, env = "QKV_PEER_CERT", requires_all = ["peer_key", "peer_ca"])]
    pub peer_cert: Option<PathBuf>,

    /// PEM private key of --peer-cert.
    #[arg(long, env = "QKV_PEER_KEY", requires = "peer_cert")]
    pub peer_key: Option<PathBuf>,

    /// PEM CA certificate(s) that signed every peer's certificate; a peer
    /// without one is refused at the handshake.
    #[arg(long, env = "QKV_PEER_CA", requires = "peer_cert")]
    pub peer_ca: Option<PathBuf>,

    /// Most open connections on each listener (client and peer); a
    /// connection past it is closed at once.
    #[arg(long, env = "QKV_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// How long a client may take to send a request's headers before its
    /// connection is closed (slow or stalled clients hold nothing for long).
    #[arg(long, env = "QKV_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,

    /// Bound on a whole client request, its body included (a client that
    /// trickles a body holds nothing for long): 408 request_timeout past it.
    /// Must exceed --leader-wait-ms + --read-wait-ms + --all-wait-ms.
    #[arg(long, env = "QKV_REQUEST_TIMEOUT_MS", default_value_t = 60_000)]
    pub request_timeout_ms: u64,

    /// Interval of leader heartbeats, in milliseconds.
    #[arg(long, env = "QKV_HEARTBEAT_MS", default_value_t = 100)]
    pub heartbeat_ms: u64,

    /// Lower bound of the randomised election timeout, in milliseconds.
    #[arg(long, env = "QKV_ELECTION_TIMEOUT_MIN_MS", default_value_t = 250)]
    pub election_timeout_min_ms: u64,

    /// Upper bound of the randomised election timeout, in milliseconds.
    #[arg(long, env = "QKV_ELECTION_TIMEOUT_MAX_MS", default_value_t = 500)]
    pub election_timeout_max_ms: u64,

    /// Build a snapshot every this many applied entries.
    #[arg(long, env = "QKV_SNAPSHOT_EVERY", default_value_t = 10_000)]
    pub snapshot_every: u64,

    /// Log entries kept behind a snapshot (so slightly lagging peers need no snapshot).
    #[arg(long, env = "QKV_KEEP_LOGS", default_value_t = 1_000)]
    pub keep_logs: u64,

    /// Largest key accepted, in bytes (UTF-8).
    #[arg(long, env = "QKV_MAX_KEY_BYTES", default_value_t = 4096)]
    pub max_key_bytes: usize,

    /// Largest value accepted, in bytes.
    #[arg(long, env = "QKV_MAX_VALUE_BYTES", default_value_t = 1024 * 1024)]
    pub max_value_bytes: usize,

    /// How long a request waits for a leader during an election before answering 503.
    #[arg(long, env = "QKV_LEADER_WAIT_MS", default_value_t = 3000)]
    pub leader_wait_ms: u64,

    /// Bound on read waits: X-Min-Index, and a follower catching up to a strong read's index.
    #[arg(long, env = "QKV_READ_WAIT_MS", default_value_t = 5000)]
    pub read_wait_ms: u64,

    /// How the leader confirms a strong read: `readindex` asks a quorum for
    /// every round of reads; `lease` serves from the leader lease while a
    /// quorum acknowledged it within the last --election-timeout-max-ms
    /// (assumes clocks on the nodes run at about the same rate; see README).
    #[arg(long, env = "QKV_STRONG_READS", value_enum, default_value_t = StrongReads::ReadIndex)]
    pub strong_reads: StrongReads,

    /// When no voter has heard from a leader for a lease, the follower with the
    /// longest log asks the others and stands at once, instead of waiting for
    /// its random election timeout (see README, failover). `false` leaves
    /// elections to openraft alone (with pre-vote).
    #[arg(long, env = "QKV_FAST_FAILOVER", default_value_t = true, action = clap::ArgAction::Set)]
    pub fast_failover: bool,

    /// Bound on `X-Consistency: all` waiting for every voter to apply a write.
    #[arg(long, env = "QKV_ALL_WAIT_MS", default_value_t = 5000)]
    pub all_wait_ms: u64,

    /// Largest answer of a scan or of a transaction's gets, in bytes: a scan
    /// stops there (more: true, next: the key to continue from); a
    /// transaction whose gets would pass it applies nothing (413). At least
    /// twice --max-value-bytes, so one pair always fits.
    #[arg(long, env = "QKV_MAX_RESPONSE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_response_bytes: usize,

    /// Most writes waiting on the leader for a proposal (while earlier ones
    /// are in flight); past it a write answers 503 overloaded with Retry-After.
    #[arg(long, env = "QKV_MAX_QUEUED_WRITES", default_value_t = 10_000)]
    pub max_queued_writes: usize,

    /// Most bytes of writes waiting for a proposal; past it, 503 overloaded.
    #[arg(long, env = "QKV_MAX_QUEUED_WRITE_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_queued_write_bytes: usize,

    /// Disk quota, as etcd's --quota-backend-bytes: past this many bytes of
    /// keys and values the node raises an alarm and refuses writes that may
    /// store more (507 quota_exceeded) until deletes bring it back under.
    #[arg(long, env = "QKV_QUOTA_BYTES", default_value_t = 2 * 1024 * 1024 * 1024)]
    pub quota_bytes: u64,

    /// Largest snapshot this node accepts from a leader, in bytes. It is
    /// streamed to disk, never held in memory; this bounds the disk a
    /// snapshot in flight may take.
    #[arg(long, env = "QKV_MAX_SNAPSHOT_BYTES", default_value_t = 64 * 1024 * 1024 * 1024)]
    pub max_snapshot_bytes: u64,

    /// Most compares plus operations in one transaction.
    #[arg(long, env = "QKV_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: usize,

    /// How long the result of a request with an Idempotency-Key is kept for
    /// retries (e.g. 10m, 1h). Must be the same on every node.
    #[arg(long, env = "QKV_IDEMPOTENCY_TTL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub idempotency_ttl: Duration,

    /// Most idempotency results kept; the oldest go first. Must be the same on every node.
    #[arg(long, env = "QKV_IDEMPOTENCY_MAX_KEYS", default_value_t = 100_000)]
    pub idempotency_max_keys: u64,

    /// How much change history watches can start from: a number of changes
    /// (e.g. 100000) or an age (e.g. 10m). Older `from_index` gets 410 compacted.
    #[arg(long, env = "QKV_WATCH_HISTORY", default_value = "100000")]
    pub watch_history: Limit,

    /// Most watches and blocking reads open at once on this node; past it, 503.
    #[arg(long, env = "QKV_MAX_WATCHERS", default_value_t = 1024)]
    pub max_watchers: usize,

    /// A watcher this many log indexes behind the node's applied index that
    /// has not read for a second is closed with a final `cancelled` event
    /// (it resumes from where it was).
    #[arg(long, env = "QKV_WATCH_MAX_LAG", default_value_t = 50_000)]
    pub watch_max_lag: u64,
}

/// Bounds on watches and blocking reads.
#[derive(Debug, Clone, Copy)]
pub struct WatchBounds {
    pub max_watchers: usize,
    pub max_lag: u64,
}

/// How a leader confirms that it still leads before a strong read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StrongReads {
    /// ReadIndex: a heartbeat round acknowledged by a quorum after the read arrived.
    #[value(name = "readindex")]
    ReadIndex,
    /// Leader lease: a quorum acknowledgement younger than the lease is enough.
    Lease,
}

/// Validated node configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub id: NodeId,
    pub listen: SocketAddr,
    pub peer_listen: SocketAddr,
    /// The peer URL the cluster records for this node.
    pub advertise_peer: String,
    /// The client URL this node reports.
    pub advertise_client: String,
    pub data_dir: PathBuf,
    pub initial_cluster: Option<BTreeMap<NodeId, String>>,
    /// `--join`'s peer URLs (empty: not joining).
    pub join: Vec<String>,
    pub learner: bool,
    pub heartbeat: Duration,
    pub election_timeout: (Duration, Duration),
    pub snapshot_every: u64,
    pub keep_logs: u64,
    pub limits: Limits,
    pub leader_wait: Duration,
    pub read_wait: Duration,
    pub strong_reads: StrongReads,
    pub fast_failover: bool,
    /// Required of peer requests; `None` only on a loopback address or with peer TLS.
    pub cluster_token: Option<ClusterToken>,
    /// Client tokens (`Auth::off()` without --auth-file).
    pub auth: Auth,
    /// TLS on the client listener.
    pub client_tls: Option<Arc<rustls::ServerConfig>>,
    /// Mutual TLS between peers.
    pub peer_tls: Option<PeerTls>,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub all_wait: Duration,
    pub retention: Retention,
    pub watch: WatchBounds,
    /// Bounds of the leader's queue of writes waiting for a proposal.
    pub write_queue: QueueBounds,
    pub quota_bytes: u64,
    pub max_snapshot_bytes: u64,
}

/// Request size limits, checked before anything reaches the log.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    pub max_txn_ops: usize,
    pub max_response_bytes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--initial-cluster entry {0:?} is not ID=URL")]
    BadMember(String),
    #[error("--initial-cluster lists node {0} twice")]
    DuplicateMember(NodeId),
    #[error("--initial-cluster does not list this node's --id {0}")]
    SelfMissing(NodeId),
    #[error("peer URL {0:?} must start with http:// (https:// with --peer-cert)")]
    BadUrl(String),
    #[error("peer URL {url:?} must start with {scheme}:// {why}")]
    WrongScheme {
        url: String,
        scheme: &'static str,
        why: &'static str,
    },
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("--advertise-peer {advertise:?} differs from this node's --initial-cluster entry {listed:?}: peers reach it by the listed URL")]
    AdvertiseMismatch { advertise: String, listed: String },
    #[error("--cluster-token-file {path}: {source}")]
    TokenFile {
        path: String,
        source: std::io::Error,
    },
    #[error("cluster token: {0}")]
    BadToken(String),
    #[error("peer traffic on {0} would be open to anyone who can reach it: set --peer-cert/--peer-key/--peer-ca or --cluster-token-file (or --cluster-token, QKV_CLUSTER_TOKEN), or listen on a loopback address")]
    Unprotected(SocketAddr),
    #[error("{0}")]
    Invalid(String),
}

/// The default peer port is the client port plus this.
pub const PEER_PORT_OFFSET: u16 = 1000;

/// Parses `1=http://a:1,2=http://b:2`.
pub fn parse_initial_cluster(s: &str) -> Result<BTreeMap<NodeId, String>, ConfigError> {
    let mut members = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, url) = part
            .split_once('=')
            .ok_or_else(|| ConfigError::BadMember(part.into()))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| ConfigError::BadMember(part.into()))?;
        let url = url.trim().trim_end_matches('/').to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::BadUrl(url));
        }
        if members.insert(id, url).is_some() {
            return Err(ConfigError::DuplicateMember(id));
        }
    }
    Ok(members)
}

impl TryFrom<ServeArgs> for Config {
    type Error = ConfigError;

    fn try_from(a: ServeArgs) -> Result<Self, ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.into()));
        if a.id == 0 {
            return invalid("--id must be a positive integer");
        }
        if a.heartbeat_ms == 0 || a.election_timeout_min_ms <= a.heartbeat_ms * 2 {
            return invalid("--election-timeout-min-ms must exceed twice --heartbeat-ms");
        }
        if a.election_timeout_max_ms <= a.election_timeout_min_ms {
            return invalid("--election-timeout-max-ms must exceed --election-timeout-min-ms");
        }
        if a.snapshot_every == 0 {
            return invalid("--snapshot-every must be at least 1");
        }
        if a.max_queued_writes == 0 || a.max_queued_write_bytes == 0 {
            return invalid("--max-queued-writes and --max-queued-write-bytes must be at least 1");
        }
        if a.max_txn_ops == 0 || a.idempotency_max_keys == 0 {
            return invalid("--max-txn-ops and --idempotency-max-keys must be at least 1");
        }
        if a.max_connections < 16 || a.header_read_timeout_ms == 0 {
            return invalid(
                "--max-connections must be at least 16 and --header-read-timeout-ms at least 1",
            );
        }
        if a.request_timeout_ms <= a.leader_wait_ms + a.read_wait_ms + a.all_wait_ms {
            return invalid(
                "--request-timeout-ms must exceed --leader-wait-ms + --read-wait-ms + --all-wait-ms",
            );
        }
        if a.max_key_bytes == 0 || a.max_value_bytes == 0 {
            return invalid("size limits must be at least 1 byte");
        }
        if a.max_response_bytes < 2 * (a.max_value_bytes + a.max_key_bytes) {
            return invalid(
                "--max-response-bytes must be at least twice --max-value-bytes + --max-key-bytes",
            );
        }
        let initial_cluster = match &a.initial_cluster {
            Some(s) => {
                let m = parse_initial_cluster(s)?;
                if !m.contains_key(&a.id) {
                    return Err(ConfigError::SelfMissing(a.id));
                }
                Some(m)
            }
            None => None,
        };
        let peer_listen = match a.peer_listen {
            Some(addr) => addr,
            None => {
                let port = a
                    .listen
                    .port()
                    .checked_add(PEER_PORT_OFFSET)
                    .ok_or_else(|| {
                        ConfigError::Invalid(format!(
                            "--listen port {} + {PEER_PORT_OFFSET} is no port: set --peer-listen",
                            a.listen.port()
                        ))
                    })?;
                SocketAddr::new(a.listen.ip(), port)
            }
        };
        if peer_listen == a.listen {
            return invalid("--peer-listen must differ from --listen");
        }
        let peer_tls = match (&a.peer_cert, &a.peer_key, &a.peer_ca) {
            (Some(cert), Some(key), Some(ca)) => {
                let identity = Identity {
                    cert: cert.clone(),
                    key: key.clone(),
                };
                Some(PeerTls::load(&identity, ca)?)
            }
            _ => None,
        };
        let client_tls = match (&a.cert, &a.key) {
            (Some(cert), Some(key)) => {
                let identity = Identity {
                    cert: cert.clone(),
                    key: key.clone(),
                };
                Some(crate::tls::server_config(
                    &identity,
                    a.client_ca.as_deref(),
                )?)
            }
            _ => None,
        };
        let cluster_token = match (&a.cluster_token, &a.cluster_token_file) {
            (Some(t), _) => Some(ClusterToken::parse(t).map_err(ConfigError::BadToken)?),
            (None, Some(path)) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::TokenFile {
                        path: path.display().to_string(),
                        source,
                    })?;
                Some(ClusterToken::parse(&text).map_err(ConfigError::BadToken)?)
            }
            (None, None) if peer_tls.is_none() && !peer_listen.ip().is_loopback() => {
                return Err(ConfigError::Unprotected(peer_listen))
            }
            (None, None) => None,
        };
        let (peer_scheme, why) = match peer_tls {
            Some(_) => ("https", "(peers use TLS: --peer-cert is set)"),
            None => ("http", "(peers use plain HTTP: set --peer-cert for TLS)"),
        };
        let urls = initial_cluster.iter().flat_map(|m| m.values());
        for url in urls.chain(a.advertise_peer.as_ref()) {
            if !url.starts_with(&format!("{peer_scheme}://")) {
                return Err(ConfigError::WrongScheme {
                    url: url.clone(),
                    scheme: peer_scheme,
                    why,
                });
            }
        }
        let listed = initial_cluster.as_ref().and_then(|m| m.get(&a.id));
        let advertise_peer = match (&a.advertise_peer, listed) {
            (Some(adv), Some(listed)) if adv.trim_end_matches('/') != listed => {
                return Err(ConfigError::AdvertiseMismatch {
                    advertise: adv.clone(),
                    listed: listed.clone(),
                })
            }
            (Some(adv), _) => adv.trim_end_matches('/').to_string(),
            (None, Some(listed)) => listed.clone(),
            (None, None) => format!("{peer_scheme}://{peer_listen}"),
        };
        let client_scheme = if client_tls.is_some() {
            "https"
        } else {
            "http"
        };
        let advertise_client = match &a.advertise_client {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("{client_scheme}://{}", a.listen),
        };
        Ok(Config {
            id: a.id,
            listen: a.listen,
            peer_listen,
            advertise_peer,
            advertise_client,
            data_dir: a.data_dir,
            initial_cluster,
            join: a
                .join
                .iter()
                .map(|u| u.trim().trim_end_matches('/').to_owned())
                .filter(|u| !u.is_empty())
                .collect(),
            learner: a.learner,
            heartbeat: Duration::from_millis(a.heartbeat_ms),
            election_timeout: (
                Duration::from_millis(a.election_timeout_min_ms),
                Duration::from_millis(a.election_timeout_max_ms),
            ),
            snapshot_every: a.snapshot_every,
            keep_logs: a.keep_logs,
            limits: Limits {
                max_key_bytes: a.max_key_bytes,
                max_value_bytes: a.max_value_bytes,
                max_txn_ops: a.max_txn_ops,
                max_response_bytes: a.max_response_bytes,
            },
            leader_wait: Duration::from_millis(a.leader_wait_ms),
            read_wait: Duration::from_millis(a.read_wait_ms),
            strong_reads: a.strong_reads,
            fast_failover: a.fast_failover,
            cluster_token,
            auth: match &a.auth_file {
                Some(path) => Auth::load(path)?,
                None => Auth::off(),
            },
            client_tls,
            peer_tls,
            max_connections: a.max_connections,
            header_read_timeout: Duration::from_millis(a.header_read_timeout_ms),
            request_timeout: Duration::from_millis(a.request_timeout_ms),
            all_wait: Duration::from_millis(a.all_wait_ms),
            quota_bytes: a.quota_bytes,
            max_snapshot_bytes: a.max_snapshot_bytes,
            write_queue: QueueBounds {
                writes: a.max_queued_writes,
                bytes: a.max_queued_write_bytes,
            },
            retention: Retention {
                idempotency: Policy {
                    ttl_ms: a.idempotency_ttl.as_millis() as u64,
                    max_keys: a.idempotency_max_keys,
                },
                history: a.watch_history,
            },
            watch: WatchBounds {
                max_watchers: a.max_watchers,
                max_lag: a.watch_max_lag,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_initial_cluster() {
        let m = parse_initial_cluster("1=http://127.0.0.1:7001, 2=http://127.0.0.1:7002/").unwrap();
        assert_eq!(m[&1], "http://127.0.0.1:7001");
        assert_eq!(m[&2], "http://127.0.0.1:7002");
        assert!(matches!(
            parse_initial_cluster("1=http://a,1=http://b"),
            Err(ConfigError::DuplicateMember(1))
        ));
        assert!(parse_initial_cluster("x=http://a").is_err());
        assert!(parse_initial_cluster("1=ftp://a").is_err());
    }

    fn config(extra: &[&str]) -> Result<Config, ConfigError> {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let mut argv = vec!["quorumkv", "--id", "1", "--data-dir", "/tmp/x"];
        argv.extend_from_slice(extra);
        let cli = <Cli as clap::Parser>::try_parse_from(argv).unwrap();
        Config::try_from(cli.serve)
    }

    #[test]
    fn peer_traffic_off_loopback_needs_a_token() {
        let open = ["--listen", "0.0.0.0:7001"];
        assert!(matches!(config(&open), Err(ConfigError::Unprotected(_))));
        // Clients on every address, peers on loopback only: no token needed.
        let c = config(&[
            "--listen",
            "0.0.0.0:7001",
            "--peer-listen",
            "127.0.0.1:8001",
        ])
        .unwrap();
        assert!(c.cluster_token.is_none());
        let open = ["--peer-listen", "0.0.0.0:8001"];
        assert!(matches!(config(&open), Err(ConfigError::Unprotected(_))));
        let token = [
            "--listen",
            "10.1.2.3:7001",
            "--cluster-token",
            "0123456789abcdef",
        ];
        assert!(config(&token).unwrap().cluster_token.is_some());
        let short = ["--cluster-token", "short"];
        assert!(matches!(config(&short), Err(ConfigError::BadToken(_))));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  fedcba9876543210fedcba\n").unwrap();
        let path = file.display().to_string();
        let c = config(&["--listen", "10.1.2.3:7001", "--cluster-token-file", &path]).unwrap();
        assert!(c.cluster_token.unwrap().matches(b"fedcba9876543210fedcba"));
        let missing = ["--cluster-token-file", "/nonexistent/token"];
        assert!(matches!(
            config(&missing),
            Err(ConfigError::TokenFile { .. })
        ));
    }

    #[test]
    fn advertise_defaults_to_the_listed_url_and_must_agree_with_it() {
        let cluster = "--initial-cluster=1=http://10.0.0.1:8001,2=http://10.0.0.2:8001";
        let c = config(&[cluster]).unwrap();
        assert_eq!(c.advertise_peer, "http://10.0.0.1:8001");
        let c = config(&[cluster, "--advertise-peer", "http://10.0.0.1:8001/"]).unwrap();
        assert_eq!(c.advertise_peer, "http://10.0.0.1:8001");
        assert!(matches!(
            config(&[cluster, "--advertise-peer", "http://127.0.0.1:8001"]),
            Err(ConfigError::AdvertiseMismatch { .. })
        ));
        let c = config(&["--listen", "127.0.0.1:7101"]).unwrap();
        assert_eq!(c.peer_listen, "127.0.0.1:8101".parse().unwrap());
        assert_eq!(c.advertise_peer, "http://127.0.0.1:8101");
        assert_eq!(c.advertise_client, "http://127.0.0.1:7101");
        assert!(config(&["--listen", "127.0.0.1:65000"]).is_err());
        let same = [
            "--listen",
            "127.0.0.1:7101",
            "--peer-listen",
            "127.0.0.1:7101",
        ];
        assert!(config(&same).is_err());
    }
}
