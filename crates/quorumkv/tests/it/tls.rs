//! A cluster with TLS everywhere (`quorumkv certs`: mutual TLS between peers,
//! HTTPS with client certificates for clients): it replicates, fails over and
//! catches up like a plain one, and refuses at the handshake whoever does not
//! hold a certificate from the right CA.

use std::path::Path;

use crate::harness::{secs, within, Cluster, NodeId, Options};

fn tls_cluster_opts() -> Options {
    Options {
        tls: true,
        ..Options::default()
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// An HTTPS client that trusts `ca` (a PEM file) and presents
/// `<stem>.crt` + `<stem>.key` when given.
fn https(ca: &Path, identity: Option<(&Path, &str)>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&read(ca)).expect("CA"))
        .timeout(secs(5))
        .no_proxy();
    if let Some((dir, stem)) = identity {
        let mut pem = read(&dir.join(format!("{stem}.crt")));
        pem.extend(read(&dir.join(format!("{stem}.key"))));
        b = b.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
    }
    b.build().expect("client")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_cluster_replicates_fails_over_and_catches_up() {
    within(secs(120), async {
        let c = Cluster::start_opts(3, tls_cluster_opts()).await;
        assert!(c.url(1).starts_with("https://"), "{}", c.url(1));
        let leader = c.leader(secs(10)).await;
        let follower = c.others(leader)[0];
        let index = c.put_ok(follower, "tls/a", "through a follower").await;
        for id in c.ids() {
            c.read_at_least(id, "tls/a", index).await.expect(200);
        }
        c.kill9(leader);
        let survivors = c.others(leader);
        let new_leader = ok_leader(&c, &survivors).await;
        let index = c.put_ok(new_leader, "tls/b", "after the kill").await;
        c.restart(leader).await;
        c.read_at_least(leader, "tls/b", index).await.expect(200);
    })
    .await;
}

async fn ok_leader(c: &Cluster, among: &[NodeId]) -> NodeId {
    c.kit()
        .leader_among(among, secs(20))
        .await
        .expect("a new leader")
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_from_elsewhere_are_refused_at_the_handshake() {
    within(secs(120), async {
        let c = Cluster::start_opts(3, tls_cluster_opts()).await;
        let leader = c.leader(secs(10)).await;
        let term = c.info(leader).await["term"].clone();
        let tls = c.dir().join("tls");
        // Another cluster's CAs and certificates, made the same way.
        let other = c.dir().join("other-tls");
        let made = std::process::Command::new(env!("CARGO_BIN_EXE_quorumkv"))
            .arg("certs")
            .arg("--out")
            .arg(&other)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("quorumkv certs");
        assert!(made.success());
        let client_url = c.url(leader);
        let peer_url = c.kit().peer_url(leader).expect("peer url");

        // Clients: our client certificate is served; none, another CA's, or
        // plain HTTP is not.
        let ours = https(&tls.join("ca.crt"), Some((&tls, "client")));
        let r = ours
            .get(format!("{client_url}/v1/cluster"))
            .send()
            .await
            .expect("our client certificate is accepted");
        assert_eq!(r.status(), 200);
        let refused = [
            ("no client certificate", https(&tls.join("ca.crt"), None)),
            (
                "another CA's client certificate",
                https(&tls.join("ca.crt"), Some((&other, "client"))),
            ),
        ];
        for (what, client) in refused {
            let r = client.get(format!("{client_url}/v1/cluster")).send().await;
            assert!(r.is_err(), "{what} got an answer: {r:?}");
        }
        let plain = format!("http://{}/v1/cluster", c.kit().listen_addr(leader).unwrap());
        let r = reqwest::Client::new().get(&plain).send().await;
        assert!(
            r.is_err() || !r.as_ref().unwrap().status().is_success(),
            "plain HTTP on a TLS port: {r:?}"
        );

        // Peers: a certificate the peer CA did not sign is refused at the
        // handshake, even a valid client certificate or another cluster's
        // node certificate.
        let probe = |client: reqwest::Client, token: Option<String>| {
            let url = format!("{peer_url}/raft/probe");
            async move {
                let mut req = client.post(url).body(quorumkv::raft::encode(&()).unwrap());
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                req.send().await
            }
        };
        let token = c.kit().cluster_token().to_owned();
        let peer_ca = tls.join("peer-ca.crt");
        for (what, client) in [
            (
                "our client certificate",
                https(&peer_ca, Some((&tls, "client"))),
            ),
            (
                "another cluster's node certificate",
                https(&peer_ca, Some((&other, "node-1-peer"))),
            ),
            ("no certificate", https(&peer_ca, None)),
        ] {
            let r = probe(client, Some(token.clone())).await;
            assert!(r.is_err(), "{what} reached the peer routes: {r:?}");
        }
        // Our own node certificate does get through, and then the cluster
        // token and the cluster id are still required.
        let node_cert = || https(&peer_ca, Some((&tls, "node-2-peer")));
        let r = probe(node_cert(), None).await.expect("handshake");
        assert_eq!(r.status(), 401);
        let r = probe(node_cert(), Some(token.clone()))
            .await
            .expect("handshake");
        assert_eq!(r.status(), 409, "and the cluster id");
        let id_file = c.kit().data_dir(leader).unwrap().join("cluster-id");
        let cluster = std::fs::read_to_string(id_file).expect("cluster-id");
        let r = node_cert()
            .post(format!("{peer_url}/raft/probe"))
            .bearer_auth(token)
            .header("x-quorumkv-cluster", cluster.trim())
            .body(quorumkv::raft::encode(&()).unwrap())
            .send()
            .await
            .expect("handshake");
        assert_eq!(r.status(), 200);

        let log = c.kit().log_tail(leader, 2000);
        assert!(
            log.contains("peer listener: refused a TLS handshake"),
            "{log}"
        );
        assert!(
            log.contains("client listener: refused a TLS handshake"),
            "{log}"
        );
        // Nothing changed.
        let info = c.info(leader).await;
        assert_eq!(info["term"], term, "{info}");
        c.put_ok(leader, "tls/after", "served").await;
    })
    .await;
}
