//! The command line client, run as a person or a script would: the real
//! binary against a real cluster, its output and its exit codes.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::harness::{secs, within, Cluster};

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `quorumkv <args>` against `endpoints`, feeding `stdin`.
async fn run(endpoints: &str, args: &[&str], stdin: Option<&[u8]>) -> Ran {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_quorumkv"));
    cmd.args(args)
        .env("QUORUMKV_ENDPOINTS", endpoints)
        .env_remove("QUORUMKV_TOKEN_FILE")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("run quorumkv");
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input).await.expect("stdin");
        drop(pipe);
    }
    let out = tokio::time::timeout(secs(60), child.wait_with_output())
        .await
        .expect("quorumkv did not finish within 60 s")
        .expect("wait");
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[track_caller]
fn expect(r: &Ran, code: i32) {
    assert_eq!(
        r.code, code,
        "exit code {} (want {code})\nstdout: {}\nstderr: {}",
        r.code, r.stdout, r.stderr
    );
}

fn endpoints(c: &Cluster) -> String {
    // A dead endpoint first: every command must go on to the next one.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let live: Vec<String> = c.ids().into_iter().map(|id| c.url(id)).collect();
    format!("{dead},{}", live.join(","))
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_reads_writes_and_says_what_happened_in_its_exit_code() {
    within(secs(180), async {
        let c = Cluster::start(3).await;
        let ep = endpoints(&c);
        let ep = ep.as_str();

        expect(&run(ep, &["put", "cli/a", "one"], None).await, 0);
        let got = run(ep, &["get", "cli/a"], None).await;
        expect(&got, 0);
        assert_eq!(got.stdout, "one");
        // Values from stdin and from a file; eventual reads.
        expect(
            &run(ep, &["put", "cli/b", "-"], Some(b"from stdin")).await,
            0,
        );
        let file = c.dir().join("value.bin");
        std::fs::write(&file, [0u8, 159, 146, 150]).unwrap();
        let f = file.to_string_lossy().into_owned();
        expect(&run(ep, &["put", "cli/c", "--file", &f], None).await, 0);
        let got = run(ep, &["get", "cli/b", "-c", "eventual"], None).await;
        assert!(got.code == 0 || got.code == 3, "{}", got.stderr);

        // JSON for scripts: the value, where it was served, its indexes.
        let got = run(ep, &["get", "cli/c", "-o", "json"], None).await;
        expect(&got, 0);
        let v: serde_json::Value = serde_json::from_str(&got.stdout).expect("json");
        assert_eq!(v["encoding"], "base64");
        assert!(
            v["served_by"].as_u64().is_some() && v["mod_index"].as_u64().is_some(),
            "{v}"
        );

        // Exit codes: not found 3, precondition 4, usage 2, unavailable 5.
        expect(&run(ep, &["get", "cli/none"], None).await, 3);
        expect(
            &run(ep, &["put", "cli/a", "x", "--if-absent"], None).await,
            4,
        );
        expect(
            &run(ep, &["put", "cli/a", "x", "--if-match", "1"], None).await,
            4,
        );
        expect(&run(ep, &["get"], None).await, 2);
        expect(
            &run(ep, &["get", "cli/a", "-c", "sometimes"], None).await,
            2,
        );
        let nowhere = format!("http://127.0.0.1:{}", free_port());
        let down = run(&nowhere, &["get", "cli/a"], None).await;
        expect(&down, 5);
        assert!(
            down.stderr.contains("no endpoint answered"),
            "{}",
            down.stderr
        );

        // del, list, txn.
        let del = run(ep, &["del", "cli/b"], None).await;
        expect(&del, 0);
        assert!(del.stdout.contains("it existed"), "{}", del.stdout);
        let list = run(ep, &["list", "cli/", "--keys-only"], None).await;
        expect(&list, 0);
        assert_eq!(list.stdout.lines().collect::<Vec<_>>(), ["cli/a", "cli/c"]);
        let txn = br#"{"compare":[{"key":"cli/a","test":"value_eq","value":"one"}],
                       "success":[{"op":"put","key":"cli/t","value":"yes"}]}"#;
        let ran = run(ep, &["txn", "-o", "json"], Some(txn)).await;
        expect(&ran, 0);
        assert!(ran.stdout.contains("\"succeeded\":true"), "{}", ran.stdout);

        // Leases: grant, attach, inspect, revoke (the key goes).
        let grant = run(ep, &["lease", "grant", "30s"], None).await;
        expect(&grant, 0);
        let id = grant.stdout.trim().to_string();
        expect(
            &run(ep, &["put", "cli/l", "v", "--lease", &id], None).await,
            0,
        );
        let info = run(ep, &["lease", "info", &id], None).await;
        expect(&info, 0);
        assert!(info.stdout.contains("cli/l"), "{}", info.stdout);
        expect(&run(ep, &["lease", "revoke", &id], None).await, 0);
        expect(&run(ep, &["get", "cli/l"], None).await, 3);
        expect(&run(ep, &["lease", "keepalive", &id], None).await, 3);

        // status and members: a table with the three nodes and one leader.
        let status = run(ep, &["status"], None).await;
        expect(&status, 0);
        assert_eq!(
            status.stdout.matches("leader").count(),
            2,
            "{}",
            status.stdout
        );
        assert!(
            status.stdout.contains("unreachable"),
            "the dead endpoint has a row"
        );
        let members = run(ep, &["members", "list", "-o", "json"], None).await;
        expect(&members, 0);
        let v: serde_json::Value = serde_json::from_str(&members.stdout).expect("json");
        assert_eq!(v["members"].as_array().map(Vec::len), Some(3));

        // watch from an index prints the changes since, then stops at --count.
        let watch = run(
            ep,
            &[
                "watch",
                "--prefix",
                "cli/",
                "--from-index",
                "1",
                "--count",
                "4",
            ],
            None,
        )
        .await;
        expect(&watch, 0);
        let lines: Vec<&str> = watch.stdout.lines().collect();
        assert_eq!(lines.len(), 4, "{}", watch.stdout);
        assert!(lines[0].ends_with("put cli/a = one"), "{}", watch.stdout);

        // --help documents the exit codes.
        let help = run(ep, &["--help"], None).await;
        expect(&help, 0);
        assert!(
            help.stdout.contains("precondition failed"),
            "{}",
            help.stdout
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_goes_on_to_the_next_endpoint_when_one_is_killed() {
    within(secs(120), async {
        let c = Cluster::start(3).await;
        let leader = c.leader(secs(10)).await;
        let ep: Vec<String> = std::iter::once(c.url(leader))
            .chain(c.others(leader).into_iter().map(|id| c.url(id)))
            .collect();
        let ep = ep.join(",");
        expect(&run(&ep, &["put", "fo/k", "v1"], None).await, 0);
        c.kill9(leader);
        // Reads and keyed writes go on through the survivors.
        let mut ok = false;
        for _ in 0..50 {
            let r = run(
                &ep,
                &["put", "fo/k", "v2", "--idempotency-key", "fo-1"],
                None,
            )
            .await;
            if r.code == 0 {
                ok = true;
                break;
            }
            expect(&r, 5);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(ok, "no write went through after the leader kill");
        let got = run(&ep, &["get", "fo/k"], None).await;
        expect(&got, 0);
        assert_eq!(got.stdout, "v2");
    })
    .await;
}
