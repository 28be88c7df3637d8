//! Nodes as separate hosts would be: each in its own network namespace with
//! its own address (198.18.S.N, the benchmarking range), joined by a bridge
//! in a namespace of its own; the test reaches them through one veth from
//! its own namespace. Everything is created and torn down by the test. A
//! machine that forbids namespaces skips these tests with a message.
//!
//! Three nodes: bootstrap, writes and reads through every node, a member
//! added and removed, and the leader cut off by its own namespace's
//! firewall (iptables). Five nodes: a 2 | 3 partition by firewall rules, the
//! minority refuses, the majority goes on, and all agree after the heal.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use reqwest::Method;
use serde_json::json;

use crate::harness::{secs, within, Cluster, NodeId, Options, POLL};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespaces, the bridge and the way in; removed on drop.
struct Hosts {
    tag: String,
    subnet: u8,
    n: usize,
}

impl Hosts {
    /// `n` hosts, or `None` (with the reason printed) where namespaces are
    /// not allowed.
    fn create(n: usize) -> Option<Hosts> {
        let k = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let hosts = Hosts {
            tag: format!("qkv{}x{k}", pid % 100_000),
            subnet: ((pid + k * 37) % 250 + 1) as u8,
            n,
        };
        match hosts.build() {
            Ok(()) => Some(hosts),
            Err(e) if hosts.denied(&e) => {
                eprintln!("SKIPPED: this machine does not allow network namespaces ({e})");
                None
            }
            Err(e) => panic!("could not build the test network: {e}"),
        }
    }

    fn denied(&self, e: &str) -> bool {
        e.contains("Operation not permitted") || e.contains("Permission denied")
    }

    fn ns(&self, id: usize) -> String {
        format!("{}-{id}", self.tag)
    }

    fn bridge_ns(&self) -> String {
        format!("{}-br", self.tag)
    }

    /// The veth end in the test's own namespace (at most 15 characters).
    fn way_in(&self) -> String {
        format!("qh{}", &self.tag[3..]).chars().take(15).collect()
    }

    fn ip(&self, id: usize) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.subnet, id as u8)
    }

    fn build(&self) -> Result<(), String> {
        let br = self.bridge_ns();
        run(&["ip", "netns", "add", &br])?;
        run(&["ip", "-n", &br, "link", "set", "lo", "up"])?;
        run(&["ip", "-n", &br, "link", "add", "br0", "type", "bridge"])?;
        run(&["ip", "-n", &br, "link", "set", "br0", "up"])?;
        for id in 1..=self.n {
            let ns = self.ns(id);
            let port = format!("v{id}");
            run(&["ip", "netns", "add", &ns])?;
            run(&[
                "ip", "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ])?;
            run(&["ip", "-n", &br, "link", "set", &port, "master", "br0", "up"])?;
            let addr = format!("{}/24", self.ip(id));
            run(&["ip", "-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            run(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
        }
        let way_in = self.way_in();
        run(&[
            "ip", "link", "add", &way_in, "type", "veth", "peer", "name", "vh", "netns", &br,
        ])?;
        run(&["ip", "-n", &br, "link", "set", "vh", "master", "br0", "up"])?;
        let addr = format!("{}/24", self.ip(254));
        run(&["ip", "addr", "add", &addr, "dev", &way_in])?;
        run(&["ip", "link", "set", &way_in, "up"])?;
        Ok(())
    }

    fn options(&self, founders: usize) -> Options {
        Options {
            wrapper: vec![
                "ip".into(),
                "netns".into(),
                "exec".into(),
                format!("{}-{{id}}", self.tag),
            ],
            listen_ips: (1..=self.n).map(|id| IpAddr::V4(self.ip(id))).collect(),
            spares: self.n - founders,
            ..Options::default()
        }
    }

    /// Host `id` drops every packet from and to the hosts `others` (its own
    /// firewall, in its own namespace).
    fn cut(&self, id: usize, others: &[usize]) {
        let ns = self.ns(id);
        for o in others {
            let ip = self.ip(*o).to_string();
            run(&[
                "ip", "netns", "exec", &ns, "iptables", "-I", "INPUT", "-s", &ip, "-j", "DROP",
            ])
            .unwrap();
            run(&[
                "ip", "netns", "exec", &ns, "iptables", "-I", "OUTPUT", "-d", &ip, "-j", "DROP",
            ])
            .unwrap();
        }
    }

    fn heal(&self, id: usize) {
        let ns = self.ns(id);
        run(&["ip", "netns", "exec", &ns, "iptables", "-F", "INPUT"]).unwrap();
        run(&["ip", "netns", "exec", &ns, "iptables", "-F", "OUTPUT"]).unwrap();
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for id in 1..=self.n {
            let _ = run(&["ip", "netns", "del", &self.ns(id)]);
        }
        // Takes the bridge and both ends of the way in with it.
        let _ = run(&["ip", "netns", "del", &self.bridge_ns()]);
        let _ = run(&["ip", "link", "del", &self.way_in()]);
    }
}

/// Strong writes through every node, read back strongly through every node.
async fn write_and_read_everywhere(c: &Cluster, prefix: &str) {
    let ids = c.live();
    for &via in &ids {
        c.put_ok(via, &format!("{prefix}/{via}"), format!("from {via}"))
            .await;
    }
    for &via in &ids {
        for &from in &ids {
            let r = c
                .get(via, &format!("{prefix}/{from}"), "strong")
                .await
                .expect(200);
            assert_eq!(r.text(), format!("from {from}"));
            assert_eq!(r.served_by(), via);
        }
    }
}

async fn wait_for<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within 30 s");
        tokio::time::sleep(POLL * 10).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_hosts_bootstrap_change_members_and_survive_a_firewalled_leader() {
    let Some(hosts) = Hosts::create(4) else {
        return;
    };
    within(secs(240), async {
        let c = Cluster::start_opts(3, hosts.options(3)).await;
        assert!(
            c.url(1).contains(&hosts.ip(1).to_string()),
            "node 1 has its own address"
        );
        write_and_read_everywhere(&c, "h3").await;

        // A fourth host joins as a learner, is promoted, then removed.
        let leader = c.leader(secs(10)).await;
        c.kit().start_spare(4).await.expect("start host 4");
        let add = json!({"id": 4, "peer_url": c.kit().peer_url(4).unwrap()});
        let r = c
            .call(
                leader,
                Method::POST,
                "/v1/cluster/members",
                &[],
                add.to_string().into_bytes(),
            )
            .await;
        assert_eq!(r.status, 201, "{r:?}");
        wait_for("host 4 promoted", || async {
            let r = c
                .call(
                    leader,
                    Method::POST,
                    "/v1/cluster/members/4/promote",
                    &[],
                    Vec::new(),
                )
                .await;
            r.status == 200
        })
        .await;
        write_and_read_everywhere(&c, "h4").await;
        let r = c
            .call(
                leader,
                Method::DELETE,
                "/v1/cluster/members/4",
                &[],
                Vec::new(),
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        c.kit().kill9(4).unwrap();

        // The leader's own firewall cuts it off from the other two hosts.
        let leader = c.leader(secs(10)).await;
        let others: Vec<NodeId> = c.others(leader).into_iter().filter(|id| *id != 4).collect();
        hosts.cut(
            leader as usize,
            &others.iter().map(|i| *i as usize).collect::<Vec<_>>(),
        );
        let new = c.leader_among(&others, secs(20)).await;
        assert_ne!(new, leader);
        let index = c.put_ok(new, "h3/after-cut", "majority").await;
        // The cut-off node serves no strong read (it cannot confirm a quorum).
        let r = c.get(leader, "h3/after-cut", "strong").await;
        assert!(matches!(r.status.as_u16(), 503 | 504), "{r:?}");
        hosts.heal(leader as usize);
        let r = c
            .read_at_least(leader, "h3/after-cut", index)
            .await
            .expect(200);
        assert_eq!(r.text(), "majority");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn five_hosts_split_two_three_and_the_majority_goes_on() {
    let Some(hosts) = Hosts::create(5) else {
        return;
    };
    within(secs(240), async {
        let c = Cluster::start_opts(5, hosts.options(5)).await;
        write_and_read_everywhere(&c, "h5").await;
        // Hosts 1 and 2 against 3, 4 and 5, by both sides' firewalls.
        for id in [1, 2] {
            hosts.cut(id, &[3, 4, 5]);
        }
        for id in [3, 4, 5] {
            hosts.cut(id, &[1, 2]);
        }
        let majority = c.leader_among(&[3, 4, 5], secs(20)).await;
        let index = c.put_ok(majority, "h5/split", "majority side").await;
        // The minority takes no strong write and serves no strong read.
        let r = c.try_put(1, "h5/minority", "lost?", "strong").await;
        assert!(
            r.as_ref().map_or(true, |r| r.status.as_u16() >= 500),
            "{r:?}"
        );
        let r = c.get(2, "h5/split", "strong").await;
        assert!(matches!(r.status.as_u16(), 503 | 504), "{r:?}");
        for id in 1..=5 {
            hosts.heal(id);
        }
        for id in 1..=5 {
            let r = c.read_at_least(id, "h5/split", index).await.expect(200);
            assert_eq!(r.text(), "majority side", "host {id}");
        }
        write_and_read_everywhere(&c, "h5-healed").await;
        // The minority's write was never acknowledged; whether it applied or
        // not, every host agrees on it.
        let first = c.get(1, "h5/minority", "strong").await.status;
        for id in 2..=5 {
            assert_eq!(c.get(id, "h5/minority", "strong").await.status, first);
        }
    })
    .await;
}
