//! Slow, idle and too many clients hold nothing for long: the node keeps
//! serving others, closes a connection that has not sent its headers within
//! --header-read-timeout-ms, and closes connections past --max-connections at
//! once.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{secs, within, Cluster};

/// Whether the server has closed `s` (EOF or reset) within `wait`.
async fn closed_by_server(s: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 512];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408 or similar before the close is fine; keep reading.
            Ok(Ok(_)) => continue,
        }
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_and_idle_clients_neither_stop_the_node_nor_stay_open() {
    within(secs(120), async {
        let c = Cluster::start_with(3, &["--header-read-timeout-ms", "1500"]).await;
        let leader = c.leader(secs(10)).await;
        let addr = c.kit().listen_addr(leader).expect("addr");

        // 150 slowloris connections (a partial request, then a byte now and
        // then) and 150 that send nothing at all.
        let mut slow = Vec::new();
        for _ in 0..150 {
            let mut s = connect(addr).await;
            s.write_all(b"PUT /v1/kv/slow HTTP/1.1\r\nHo")
                .await
                .expect("write");
            slow.push(s);
        }
        let mut idle = Vec::new();
        for _ in 0..150 {
            idle.push(connect(addr).await);
        }
        // Meanwhile the node serves everyone else.
        for i in 0..20 {
            c.put_ok(leader, &format!("meanwhile/{i}"), "served").await;
        }
        for s in &mut slow {
            let _ = s.write_all(b"s").await;
        }
        // Past the header-read timeout, the server has closed every one.
        for (what, conns) in [("slow", &mut slow), ("idle", &mut idle)] {
            for (n, s) in conns.iter_mut().enumerate() {
                assert!(
                    closed_by_server(s, secs(10)).await,
                    "{what} connection {n} still open 10 s after a 1.5 s header-read timeout"
                );
            }
        }
        c.put_ok(leader, "after", "served").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_past_the_limit_are_closed_at_once() {
    within(secs(60), async {
        let c = Cluster::start_with(1, &["--max-connections", "16"]).await;
        let id = c.leader(secs(10)).await;
        let addr = c.kit().listen_addr(id).expect("addr");
        let mut held = Vec::new();
        for _ in 0..40 {
            held.push(connect(addr).await);
        }
        let mut closed = 0;
        for s in &mut held {
            closed += closed_by_server(s, Duration::from_millis(300)).await as usize;
        }
        assert!(
            closed >= 40 - 16,
            "only {closed} of 40 connections closed with a limit of 16"
        );
        drop(held);
        // Freed slots serve again (the harness's client may need a retry).
        let deadline = tokio::time::Instant::now() + secs(10);
        loop {
            match c.try_put(id, "after", "served", "strong").await {
                Ok(r) if r.status == 200 => break,
                other => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "no write after freeing slots: {other:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let log = c.kit().log_tail(id, 1000);
        assert!(log.contains("connection limit reached"), "log:\n{log}");
    })
    .await;
}

/// Peers have their own listener: a leader whose client listener is full
/// still replicates, and a write through a follower (forwarded to the leader
/// on the peer listener) still commits.
#[tokio::test(flavor = "multi_thread")]
async fn a_flooded_client_port_does_not_starve_raft() {
    within(secs(90), async {
        let c = Cluster::start_with(3, &["--max-connections", "16"]).await;
        let leader = c.leader(secs(10)).await;
        let follower = c.kit().others(leader)[0];
        let term = c.info(follower).await["term"].clone();
        let addr = c.kit().listen_addr(leader).expect("addr");
        let mut held = Vec::new();
        for _ in 0..64 {
            held.push(connect(addr).await);
        }
        for i in 0..20 {
            let index = c.put_ok(follower, &format!("flood/{i}"), "through").await;
            c.read_at_least(follower, &format!("flood/{i}"), index)
                .await
                .expect(200);
        }
        let info = c.info(follower).await;
        assert_eq!(info["leader"], leader, "{info}");
        assert_eq!(
            info["term"], term,
            "the flood cost the leader its term: {info}"
        );
        drop(held);
    })
    .await;
}

/// A client that sends its headers at once and then trickles the body is cut
/// off at --request-timeout-ms with a JSON 408, and nothing is written.
#[tokio::test(flavor = "multi_thread")]
async fn a_trickled_body_times_out_with_408() {
    within(secs(60), async {
        let c = Cluster::start_with(
            1,
            &[
                "--request-timeout-ms",
                "2000",
                "--leader-wait-ms",
                "500",
                "--read-wait-ms",
                "500",
                "--all-wait-ms",
                "500",
            ],
        )
        .await;
        let id = c.leader(secs(10)).await;
        let mut s = connect(c.kit().listen_addr(id).expect("addr")).await;
        s.write_all(b"PUT /v1/kv/trickle HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
            .await
            .expect("headers");
        let started = tokio::time::Instant::now();
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let _ = s.write_all(b"x").await;
            match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}}") {
                        break;
                    }
                }
                Err(_) => {}
            }
            assert!(started.elapsed() < secs(20), "no answer to a trickled body");
        }
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("\"request_timeout\""), "{text}");
        assert_eq!(c.get(id, "trickle", "strong").await.status, 404);
    })
    .await;
}
