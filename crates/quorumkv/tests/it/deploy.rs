//! The deployment files in `deploy/` work as shipped: the systemd unit
//! passes `systemd-analyze verify`, and a node starts from the example
//! configuration file (its addresses moved to loopback) and stops on SIGTERM.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::secs;

fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(repo().join("deploy/systemd/quorumkv.service")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_quorumkv");
    let unit = unit.replace("/usr/local/bin/quorumkv", bin);
    let path = dir.path().join("quorumkv.service");
    std::fs::write(&path, unit).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian's systemd) must be installed: run scripts/deps.sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Only what concerns this unit: the host's own units may warn too.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("quorumkv")).collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_starts_from_the_example_config_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let free = || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (client, peer) = (free(), free());
    let example = std::fs::read_to_string(repo().join("deploy/node.toml.example")).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "example-cluster-token-0123456789").unwrap();
    let config = example
        .replace("10.0.0.1:7001", &format!("127.0.0.1:{client}"))
        .replace("10.0.0.1:8001", &format!("127.0.0.1:{peer}"))
        .replace(
            "/var/lib/quorumkv",
            &dir.path().join("data").display().to_string(),
        )
        .replace("/etc/quorumkv/token", &token.display().to_string());
    assert!(
        config.contains(&format!("1=http://127.0.0.1:{peer}")),
        "{config}"
    );
    let path = dir.path().join("node.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_quorumkv"))
        .args(["serve", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = reqwest::Client::builder()
        .timeout(secs(2))
        .no_proxy()
        .build()
        .unwrap();
    let deadline = Instant::now() + secs(30);
    loop {
        let r = http
            .get(format!("http://127.0.0.1:{client}/health"))
            .send()
            .await;
        if r.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "the node never answered /health");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = child.id().expect("pid") as i32;
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(secs(20), child.wait())
        .await
        .expect("exit within 20 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}
