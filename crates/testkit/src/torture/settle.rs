//! After the last fault is healed: wait until every node has applied what the
//! leader committed, then read the final state of every key on every node,
//! and once more by strong read (recorded in the history, so the
//! linearizability check covers the final state too).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::{stream, StreamExt};

use crate::checker::{OpKind, Phase, Record, Value};
use crate::cluster::POLL;
use crate::torture::recorder::Recorder;
use crate::torture::workload::KEY_PREFIX;
use crate::{Client, Error, LocalCluster, NodeId, Opts};

/// The process id of the final strong reads in the history.
pub const FINAL_READER: u64 = 1_000_000;

/// A key's final state on one node: value and mod index, `None` if absent.
pub type KeyState = Option<(String, u64)>;

/// What settling found.
#[derive(Debug, Clone, Default)]
pub struct Settled {
    /// The leader after healing and its commit index then.
    pub leader: Option<NodeId>,
    pub committed: u64,
    /// How long until every node had applied `committed`.
    pub catch_up: Option<Duration>,
    /// Nodes that did not catch up, with what they had applied.
    pub lagging: Vec<(NodeId, u64)>,
    /// Final state of every key, per node (eventual reads at `committed`).
    pub finals: BTreeMap<NodeId, BTreeMap<String, KeyState>>,
    /// Keys a node lists that no operation touched, per node.
    pub strangers: BTreeMap<NodeId, Vec<String>>,
    /// Keys on which nodes disagree, with each node's state.
    pub diverged: Vec<(String, BTreeMap<NodeId, KeyState>)>,
    /// Whatever stopped the settling early.
    pub problem: Option<String>,
}

/// Settles a healed cluster: `keys` are all keys the workload touched.
pub async fn settle(
    cluster: &LocalCluster,
    rec: &Recorder,
    keys: &BTreeSet<String>,
    bound: Duration,
) -> Settled {
    let mut s = Settled::default();
    if let Err(e) = settle_into(cluster, rec, keys, bound, &mut s).await {
        s.problem = Some(e.to_string());
    }
    s
}

async fn settle_into(
    cluster: &LocalCluster,
    rec: &Recorder,
    keys: &BTreeSet<String>,
    bound: Duration,
    s: &mut Settled,
) -> Result<(), Error> {
    let start = Instant::now();
    let leader = cluster.leader(bound).await?;
    s.leader = Some(leader);
    let http = Client::http(Duration::from_secs(10))?;
    let client =
        |id| -> Result<Client, Error> { Ok(Client::with_http(http.clone(), cluster.url(id)?)) };
    s.committed = client(leader)?
        .cluster_info()
        .await?
        .committed_index
        .unwrap_or(0);
    let deadline = start + bound;
    loop {
        s.lagging.clear();
        for id in cluster.ids() {
            let applied = match client(id)?.cluster_info().await {
                Ok(info) => info.applied_index.unwrap_or(0),
                Err(_) => 0,
            };
            if applied < s.committed {
                s.lagging.push((id, applied));
            }
        }
        if s.lagging.is_empty() {
            s.catch_up = Some(start.elapsed());
            break;
        }
        if Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(POLL * 5).await;
    }

    for id in cluster.ids() {
        let c = client(id)?;
        let at = Opts::eventual().min_index(s.committed);
        let listing = c.list(KEY_PREFIX, 10_000, &at).await?.listing()?;
        if listing.more {
            return Err(Error::Unexpected(format!(
                "node {id} lists more than 10000 keys"
            )));
        }
        let strangers: Vec<String> = listing
            .items
            .iter()
            .map(|i| i.key.clone())
            .filter(|k| !keys.contains(k))
            .collect();
        if !strangers.is_empty() {
            s.strangers.insert(id, strangers);
        }
        let states = stream::iter(keys.iter().cloned())
            .map(|key| {
                let c = c.clone();
                let at = at.clone();
                async move {
                    let r = c.get(&key, &at).await?;
                    let state = match r.status.as_u16() {
                        200 => Some((r.text(), r.etag().unwrap_or(0))),
                        404 => None,
                        _ => return Err(Error::Unexpected(format!("final read of {key}: {r:?}"))),
                    };
                    Ok::<_, Error>((key, state))
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        s.finals.insert(id, states);
    }
    for key in keys {
        let per_node: BTreeMap<NodeId, KeyState> = s
            .finals
            .iter()
            .map(|(id, m)| (*id, m.get(key).cloned().flatten()))
            .collect();
        let mut states = per_node.values();
        let first = states.next();
        if states.any(|st| Some(st) != first) {
            s.diverged.push((key.clone(), per_node));
        }
    }

    // The final strong reads, one per key through the leader, recorded.
    let c = client(leader)?;
    for key in keys {
        let invoke = rec.log(Record::invoke(FINAL_READER, OpKind::Read, key, 0));
        let r = c.get(key, &Opts::strong()).await;
        let mut done = Record::complete(&invoke, Phase::Info, 0);
        if let Ok(r) = &r {
            done.index = r.raft_index();
            done.served_by = r.served_by();
            match r.status.as_u16() {
                200 => {
                    done.phase = Phase::Ok;
                    done.value = Some(Value(r.text()));
                }
                404 => done.phase = Phase::Ok,
                _ => done.error = Some(format!("{r:?}")),
            }
        }
        rec.log(done);
    }
    Ok(())
}
