//! The attacker's view of a real 3-node cluster: forged Raft messages with no
//! token or a wrong one, and with the right token (a compromised or buggy
//! peer) absurd terms, forged length prefixes, oversized bodies and damaged
//! or oversized snapshot streams. Every one
//! is refused with a JSON 4xx; afterwards no node has panicked, the term has
//! not jumped, the data is intact and the replicas are identical.

use quorumkv::command::Write;
use quorumkv::raft::{encode, Vote, VoteRequest};
use quorumkv_testkit::ConsistencyLevel;
use reqwest::StatusCode;

use crate::harness::{secs, within, Cluster, NodeId};
use crate::http::Resp;

/// The cluster id node `id` wrote at its first start.
fn cluster_id(c: &Cluster, id: NodeId) -> String {
    let path = c.kit().data_dir(id).expect("data dir").join("cluster-id");
    let text = std::fs::read_to_string(&path).expect("cluster-id file");
    text.trim().to_owned()
}

/// POSTs `body` to `/raft/<path>` on node `id`'s peer listener, with `token`
/// as the bearer if given, and then the node's own cluster id.
async fn raft_post(
    c: &Cluster,
    id: NodeId,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> Resp {
    let cluster = token.map(|_| cluster_id(c, id));
    raft_post_as(c, id, path, token, cluster.as_deref(), body).await
}

async fn raft_post_as(
    c: &Cluster,
    id: NodeId,
    path: &str,
    token: Option<&str>,
    cluster: Option<&str>,
    body: Vec<u8>,
) -> Resp {
    let url = format!("{}/raft/{path}", c.kit().peer_url(id).expect("peer url"));
    let mut req = c.http.post(url).timeout(secs(30)).body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(cluster) = cluster {
        req = req.header("x-quorumkv-cluster", cluster);
    }
    Resp::fetch(req)
        .await
        .unwrap_or_else(|e| panic!("POST /raft/{path} on node {id}: {e}"))
}

#[track_caller]
fn refused(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, StatusCode::from_u16(status).unwrap(), "{r:?}");
    assert_eq!(r.error_code(), code, "{r:?}");
}

fn vote_with_term(term: u64) -> Vec<u8> {
    encode(&VoteRequest::new(Vote::new(term, 1), None)).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_peer_messages_change_nothing() {
    within(secs(180), async {
        let c = Cluster::start_with(3, &["--max-snapshot-bytes", "1000000"]).await;
        let leader = c.leader(secs(10)).await;
        let index = c.put_ok(leader, "vault", "intact").await;
        for id in c.ids() {
            c.read_at_least(id, "vault", index).await.expect(200);
        }
        let term_before = c.info(leader).await["term"].as_u64().expect("term");
        let token = c.kit().cluster_token().to_owned();
        let forged_write = encode(&Write {
            command: quorumkv::command::Command::Delete {
                key: quorumkv::kv::Key::parse("vault".into(), 4096).unwrap(),
                precondition: None,
            },
            level: ConsistencyLevel::Strong,
            idempotency_key: None,
        })
        .unwrap();

        for id in c.ids() {
            // No token, then a wrong one: refused before the body is read.
            for bad in [None, Some("not-the-cluster-token-at-all")] {
                for (path, body) in [
                    ("vote", vote_with_term(1 << 40)),
                    ("vote", vote_with_term(u64::MAX)),
                    ("pre_vote", vote_with_term(u64::MAX)),
                    ("append", vec![0u8; 26]),
                    ("snapshot", vec![0u8; 64]),
                    ("forward", forged_write.clone()),
                    ("read_index", encode(&()).unwrap()),
                    ("probe", encode(&()).unwrap()),
                ] {
                    let r = raft_post(&c, id, path, bad, body).await;
                    refused(&r, 401, "unauthorized");
                }
            }
            // The right token from another cluster, or with no cluster id:
            // refused before openraft sees anything.
            for other in [None, Some("0123456789abcdef"), Some("not-an-id")] {
                for (path, body) in [
                    ("vote", vote_with_term(1 << 40)),
                    ("append", vec![0u8; 26]),
                    ("probe", encode(&()).unwrap()),
                ] {
                    let r = raft_post_as(&c, id, path, Some(&token), other, body).await;
                    refused(&r, 409, "cluster_mismatch");
                }
            }
            // The right token, absurd terms: refused before openraft sees them.
            for term in [1 << 40, u64::MAX] {
                for path in ["vote", "pre_vote"] {
                    let r = raft_post(&c, id, path, Some(&token), vote_with_term(term)).await;
                    refused(&r, 400, "invalid_body");
                }
            }
            // A length prefix claiming 2^40 bytes, and bodies that are no message.
            let mut forged = (1u64 << 40).to_le_bytes().to_vec();
            forged.extend_from_slice(&[7; 32]);
            for path in ["append", "vote", "snapshot", "forward"] {
                let r = raft_post(&c, id, path, Some(&token), forged.clone()).await;
                refused(&r, 400, "invalid_body");
            }
        }
        // Snapshots at a plausible term whose file is damaged, or larger
        // than --max-snapshot-bytes: refused before openraft sees them.
        let (whole, header) = forged_snapshot(&c, leader).await;
        let mut flipped = whole.clone();
        flipped[header + (whole.len() - header) / 2] ^= 1;
        let truncated = whole[..whole.len() - 10].to_vec();
        let mut oversized = whole[..header].to_vec();
        oversized.resize(2_000_000, 7);
        for (body, status, code) in [
            (flipped, 400, "invalid_body"),
            (truncated, 400, "invalid_body"),
            (oversized, 413, "value_too_large"),
        ] {
            let r = raft_post(&c, leader, "snapshot", Some(&token), body).await;
            refused(&r, status, code);
        }

        // Past the body limit of a bounded peer route.
        let huge = vec![0u8; quorumkv::peer::router::MAX_MESSAGE_BYTES + 1];
        let r = raft_post(&c, leader, "append", Some(&token), huge).await;
        refused(&r, 413, "value_too_large");

        // Nothing moved: the term, the data, the replicas; no node panicked.
        let index = c.put_ok(leader, "after", "still-serving").await;
        let leader_now = c.leader(secs(10)).await;
        let term_after = c.info(leader_now).await["term"].as_u64().expect("term");
        assert!(
            term_after < term_before + 3,
            "term went from {term_before} to {term_after}"
        );
        for id in c.ids() {
            let r = c.read_at_least(id, "after", index).await.expect(200);
            assert_eq!(r.text(), "still-serving");
            let r = c.get(id, "vault", "eventual").await.expect(200);
            assert_eq!(r.text(), "intact", "node {id}");
            let log = c.kit().log_tail(id, 100_000);
            assert!(!log.contains("panicked"), "node {id} panicked:\n{log}");
            assert!(
                log.contains("refused a peer request"),
                "node {id} did not log the refusals"
            );
        }
    })
    .await;
}

/// A `/raft/snapshot` body at the cluster's term (header, then a snapshot
/// file of a few thousand pairs), and where the file starts in it.
async fn forged_snapshot(c: &Cluster, leader: NodeId) -> (Vec<u8>, usize) {
    use quorumkv::peer::messages::SnapshotHeader;
    use quorumkv::raft::snapshot::Writer;
    use quorumkv::raft::SnapshotMeta;
    let term = c.info(leader).await["term"].as_u64().expect("term");
    let header = encode(&SnapshotHeader {
        vote: Vote::new(term, leader),
        meta: SnapshotMeta::default(),
    })
    .unwrap();
    let path = c.dir().join("forged-snapshot");
    let mut w = Writer::create(&path, &SnapshotMeta::default()).unwrap();
    for i in 0..5000u32 {
        w.push(format!("dforged/{i:05}").into_bytes(), vec![1; 64])
            .unwrap();
    }
    w.finish().unwrap();
    let mut body = (header.len() as u32).to_be_bytes().to_vec();
    body.extend_from_slice(&header);
    let start = body.len();
    body.extend_from_slice(&std::fs::read(&path).unwrap());
    (body, start)
}

/// Kills the process on drop.
struct Rogue(Option<std::process::Child>);

impl Drop for Rogue {
    fn drop(&mut self) {
        if let Some(child) = self.0.take() {
            quorumkv_testkit::process::kill_child(child, false, None);
        }
    }
}

/// A node of another cluster that knows the token and a member's peer URL
/// (another --initial-cluster: e.g. pointed at the wrong peers) asks for
/// votes again and again: every request is refused as from another cluster
/// and logged, and the real cluster's term does not move.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_of_another_cluster_is_refused_not_merged() {
    within(secs(60), async {
        let c = Cluster::start(3).await;
        let leader = c.leader(secs(10)).await;
        let target = c.others(leader)[0];
        let term = c.info(leader).await["term"].clone();
        let port = quorumkv_testkit::process::free_port().expect("port");
        let peer_port = quorumkv_testkit::process::free_port().expect("port");
        let dir = c.dir().join("rogue");
        let log = std::fs::File::create(c.dir().join("rogue.log")).expect("log");
        let initial = format!(
            "4=http://127.0.0.1:{peer_port},{target}={}",
            c.kit().peer_url(target).unwrap()
        );
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_quorumkv"))
            .args([
                "serve",
                "--id",
                "4",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args(["--peer-listen", &format!("127.0.0.1:{peer_port}")])
            .arg("--data-dir")
            .arg(&dir)
            .args(["--initial-cluster", &initial])
            .env("QKV_CLUSTER_TOKEN", c.kit().cluster_token())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn the rogue node");
        let _rogue = Rogue(Some(child));
        let deadline = std::time::Instant::now() + secs(20);
        while !c
            .kit()
            .log_tail(target, 1000)
            .contains("refused a peer request from cluster")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "node {target} logged no refusal"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        // Give it a few more election rounds, then look.
        tokio::time::sleep(secs(2)).await;
        let info = c.info(leader).await;
        assert_eq!(info["term"], term, "the rogue moved the term: {info}");
        assert_eq!(info["leader"], leader, "{info}");
        let members = info["members"].as_array().expect("members").len();
        assert_eq!(members, 3, "{info}");
        c.put_ok(leader, "after-rogue", "fine").await;
    })
    .await;
}
