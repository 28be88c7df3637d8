//! Fault points on peer links: one TCP proxy in front of each node, owned by
//! the test, through which every peer connection to that node passes.
//!
//! Node `i` listens on its own loopback IP, [`node_ip`]`(i)` = 127.0.0.(10+i),
//! and opens its peer connections from that IP (`PeerClient::new(source)`),
//! while the cluster knows it by its proxy's URL (`--initial-cluster`). So a
//! proxy learns which node a connection comes *from* by the connection's peer
//! IP, and forwards it to the node it stands for unless that link is cut.
//!
//! A link `from -> to` is cut in one of two ways ([`CutMode`]):
//! - `Refuse`: its open connections are closed at once, and new connections
//!   from `from` are accepted and closed straight away, so `from` sees its
//!   requests to `to` fail fast;
//! - `Blackhole`: its open connections stop carrying bytes and new ones are
//!   accepted but never forwarded, all held until the link heals (then
//!   closed), so `from` sees its requests hang until they time out, as when a
//!   network drops packets.
//!
//! Either way `to` stops hearing from `from`. A partition cuts both
//! directions between its sides. Clients talk to the nodes directly, not through proxies, so
//! every node keeps taking client requests whatever the links do.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::NodeId;

/// A directed link: traffic that `from` starts towards `to`.
pub type Link = (NodeId, NodeId);

/// The loopback IP node `id` listens on and connects from: 127.0.0.(10+id).
pub fn node_ip(id: NodeId) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + id as u8))
}

/// How a cut link fails its connections (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutMode {
    Refuse,
    Blackhole,
}

/// Connections seen by all proxies of a [`Fabric`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections forwarded to their node.
    pub forwarded: u64,
    /// Connections accepted and closed at once because their link was cut.
    pub refused: u64,
    /// Open connections closed (refuse) or stalled (blackhole) because their link was cut.
    pub severed: u64,
    /// New connections held without forwarding because their link was blackholed.
    pub swallowed: u64,
}

#[derive(Default)]
struct Counters {
    forwarded: AtomicU64,
    refused: AtomicU64,
    severed: AtomicU64,
    swallowed: AtomicU64,
}

/// What every connection watches: the links cut, and whether the fabric is gone.
#[derive(Debug, Default)]
struct Links {
    cut: BTreeMap<Link, CutMode>,
    closed: bool,
}

impl Links {
    /// How `link` is cut now (`None`: not cut, or from outside the cluster).
    fn cut(&self, link: Option<Link>) -> Option<CutMode> {
        self.cut.get(&link?).copied()
    }

    /// Whether a connection on `link` must stop forwarding now.
    fn ends(&self, link: Option<Link>) -> bool {
        self.closed || self.cut(link).is_some()
    }

    /// Whether a connection held on `link` may be let go: healed or closed.
    fn released(&self, link: Option<Link>) -> bool {
        self.closed || self.cut(link).is_none()
    }
}

struct Shared {
    links: watch::Sender<Links>,
    /// Listen IP -> node id, to name the source of a connection.
    nodes_by_ip: HashMap<IpAddr, NodeId>,
    counters: Counters,
}

/// One proxy per node: bound first (so the cluster can be told their URLs),
/// started once the nodes' addresses are known. Drop stops them all.
pub struct Fabric {
    shared: Arc<Shared>,
    ids: Vec<NodeId>,
    listeners: Vec<(NodeId, TcpListener)>,
    ports: Vec<(NodeId, u16)>,
    tasks: Vec<JoinHandle<()>>,
}

impl Fabric {
    /// Binds a proxy for each of `ids` on 127.0.0.1, on ports the OS picks.
    /// Connections that arrive before [`Fabric::start`] wait in the backlog.
    pub async fn bind(ids: &[NodeId]) -> std::io::Result<Fabric> {
        let mut listeners = Vec::new();
        let mut ports = Vec::new();
        for &id in ids {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
            ports.push((id, listener.local_addr()?.port()));
            listeners.push((id, listener));
        }
        let shared = Arc::new(Shared {
            links: watch::Sender::new(Links::default()),
            nodes_by_ip: ids.iter().map(|&id| (node_ip(id), id)).collect(),
            counters: Counters::default(),
        });
        Ok(Fabric {
            shared,
            ids: ids.to_vec(),
            listeners,
            ports,
            tasks: Vec::new(),
        })
    }

    /// `http://127.0.0.1:<port>` of node `id`'s proxy: what peers call it.
    pub fn url(&self, id: NodeId) -> Option<String> {
        let port = self.ports.iter().find(|(n, _)| *n == id)?.1;
        Some(format!("http://127.0.0.1:{port}"))
    }

    /// Starts forwarding; `upstream(id)` is where node `id` listens.
    pub fn start(&mut self, upstream: impl Fn(NodeId) -> Option<SocketAddr>) {
        for (id, listener) in std::mem::take(&mut self.listeners) {
            let Some(addr) = upstream(id) else { continue };
            let shared = self.shared.clone();
            self.tasks
                .push(tokio::spawn(accept_loop(listener, id, addr, shared)));
        }
    }

    pub fn ids(&self) -> &[NodeId] {
        &self.ids
    }

    /// Cuts the given links (each direction separately), failing their
    /// open connections as `mode` says.
    pub fn cut(&self, links: &[Link], mode: CutMode) {
        self.shared
            .links
            .send_modify(|l| l.cut.extend(links.iter().map(|&link| (link, mode))));
    }

    /// Cuts every link between nodes of different `sides`, both ways. Nodes
    /// in no side keep all their links.
    pub fn partition(&self, sides: &[Vec<NodeId>], mode: CutMode) {
        let mut links = Vec::new();
        for (i, a) in sides.iter().enumerate() {
            for b in sides.iter().skip(i + 1) {
                for &x in a {
                    for &y in b {
                        links.push((x, y));
                        links.push((y, x));
                    }
                }
            }
        }
        self.cut(&links, mode);
    }

    /// Cuts `id` off from every other node, both ways.
    pub fn isolate(&self, id: NodeId, mode: CutMode) {
        let rest: Vec<NodeId> = self.ids.iter().copied().filter(|&o| o != id).collect();
        self.partition(&[vec![id], rest], mode);
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.shared.links.send_modify(|l| l.cut.clear());
    }

    /// The links cut now.
    pub fn cuts(&self) -> BTreeSet<Link> {
        self.shared.links.borrow().cut.keys().copied().collect()
    }

    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        ProxyStats {
            forwarded: c.forwarded.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            severed: c.severed.load(Ordering::Relaxed),
            swallowed: c.swallowed.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Fabric {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.shared.links.send_modify(|l| l.closed = true);
    }
}

/// Accepts connections for node `to` and pipes each to `upstream`, in a
/// task of its own that ends with its connection, its link or the fabric.
async fn accept_loop(listener: TcpListener, to: NodeId, upstream: SocketAddr, shared: Arc<Shared>) {
    loop {
        let Ok((conn, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let link = shared.nodes_by_ip.get(&peer.ip()).map(|&from| (from, to));
        // Subscribe before checking, so a cut made in between is not missed.
        let mut links = shared.links.subscribe();
        let cut = links.borrow().cut(link);
        match cut {
            Some(CutMode::Refuse) => {
                shared.counters.refused.fetch_add(1, Ordering::Relaxed);
                drop(conn);
            }
            Some(CutMode::Blackhole) => {
                shared.counters.swallowed.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let _ = links.wait_for(|l| l.released(link)).await;
                    drop(conn);
                });
            }
            None => {
                tokio::spawn(pipe(conn, upstream, link, links, shared.clone()));
            }
        }
    }
}

/// Forwards one connection both ways until either side closes it, or its
/// link is cut (`link: None`: from outside the cluster, never cut), or the
/// fabric is dropped. A blackholed connection is held, silent, until healed.
async fn pipe(
    mut conn: TcpStream,
    upstream: SocketAddr,
    link: Option<Link>,
    mut links: watch::Receiver<Links>,
    shared: Arc<Shared>,
) {
    let connect = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(upstream));
    let Ok(Ok(mut up)) = connect.await else {
        return;
    };
    let _ = conn.set_nodelay(true);
    let _ = up.set_nodelay(true);
    shared.counters.forwarded.fetch_add(1, Ordering::Relaxed);
    let severed = tokio::select! {
        _ = copy_bidirectional(&mut conn, &mut up) => false,
        _ = links.wait_for(|l| l.ends(link)) => true,
    };
    if severed {
        shared.counters.severed.fetch_add(1, Ordering::Relaxed);
        let blackholed = links.borrow().cut(link) == Some(CutMode::Blackhole);
        if blackholed {
            let _ = links.wait_for(|l| l.released(link)).await;
        }
    }
}
