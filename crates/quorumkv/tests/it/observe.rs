//! What operators look at: `/metrics` scraped under load and checked with
//! `promtool check metrics` (Debian's `prometheus`; scripts/deps.sh installs
//! it), its counters moving; the leader-change log line; `/ui` rendered by
//! headless Chromium (Debian's `chromium`) before and after a leader kill.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::Method;

use crate::harness::{secs, within, Cluster, NodeId, POLL};

async fn scrape(c: &Cluster, id: NodeId) -> String {
    let r = c.call(id, Method::GET, "/metrics", &[], Vec::new()).await;
    let r = r.expect(200);
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{r:?}"
    );
    r.text()
}

/// The value of the sample `name{labels}` whose labels include all of `want`.
fn sample(text: &str, name: &str, want: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| want.iter().all(|w| l.contains(w)))
        .map(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        })
        .reduce(|a, b| a + b)
}

fn require(cmd: &str) {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{cmd} not found: run scripts/deps.sh (it installs it)"
    );
}

fn promtool_check(text: &str, dir: &Path) {
    require("promtool");
    let file = dir.join("metrics.txt");
    std::fs::write(&file, text).unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("promtool check metrics < {}", file.display()))
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_pass_promtool_and_move_under_load() {
    within(secs(120), async {
        let c = Cluster::start(3).await;
        let leader = c.leader(secs(10)).await;
        let follower = c.others(leader)[0];
        let before = scrape(&c, leader).await;
        for i in 0..40 {
            c.put_ok(leader, &format!("m/{i}"), "v").await;
            c.get(follower, &format!("m/{i}"), "strong")
                .await
                .expect(200);
            c.get(follower, &format!("m/{i}"), "eventual").await;
        }
        let after = scrape(&c, leader).await;
        promtool_check(&after, c.dir());
        let on_follower = scrape(&c, follower).await;
        promtool_check(&on_follower, c.dir());

        let puts = |t: &str| {
            sample(
                t,
                "quorumkv_http_requests_total",
                &[
                    "method=\"PUT\"",
                    "status=\"200\"",
                    "route=\"/v1/kv/{*key}\"",
                ],
            )
            .unwrap_or(0.0)
        };
        assert!(puts(&after) >= puts(&before) + 40.0, "{after}");
        let fsyncs =
            |t: &str| sample(t, "quorumkv_log_fsync_duration_seconds_count", &[]).unwrap_or(0.0);
        assert!(fsyncs(&after) > fsyncs(&before), "fsyncs did not move");
        assert!(sample(&after, "quorumkv_proposals_total", &[]).unwrap_or(0.0) >= 40.0);
        assert_eq!(sample(&after, "quorumkv_is_leader", &[]), Some(1.0));
        assert_eq!(sample(&on_follower, "quorumkv_is_leader", &[]), Some(0.0));
        let term = sample(&after, "quorumkv_raft_term", &[]).unwrap_or(0.0);
        assert!(term >= 1.0);
        assert!(
            sample(&after, "quorumkv_replication_lag_entries", &["follower=\""]).is_some(),
            "per-follower lag on the leader"
        );
        let strong_reads = sample(
            &on_follower,
            "quorumkv_http_request_duration_seconds_count",
            &["method=\"GET\"", "consistency=\"strong\""],
        );
        assert!(strong_reads.unwrap_or(0.0) >= 40.0, "{on_follower}");
        assert!(
            sample(
                &on_follower,
                "quorumkv_eventual_read_staleness_seconds_count",
                &[]
            )
            .unwrap_or(0.0)
                >= 40.0
        );
        assert!(sample(&after, "quorumkv_read_index_rounds_total", &[]).unwrap_or(0.0) >= 1.0);
    })
    .await;
}

/// Runs headless Chromium with `args` then `url`; its stdout.
async fn chromium(dir: &Path, args: &[&str], url: &str) -> String {
    require("chromium");
    let profile = dir.join(format!("chromium-{}", rand_suffix()));
    let mut cmd = tokio::process::Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--virtual-time-budget=4000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .arg(url)
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .kill_on_drop(true);
    let out = tokio::time::timeout(secs(60), cmd.output())
        .await
        .expect("chromium did not finish within 60 s")
        .expect("run chromium");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The rows of the members table in a dumped DOM: (id, role).
fn member_rows(dom: &str) -> Vec<(String, String)> {
    let Some(start) = dom.find("<table id=\"members\">") else {
        return Vec::new();
    };
    let table = &dom[start..];
    let table = &table[..table.find("</table>").unwrap_or(table.len())];
    table
        .split("<tr data-id=\"")
        .skip(1)
        .map(|row| {
            let id = row.split('"').next().unwrap_or("").to_string();
            let cells: Vec<&str> = row
                .split("<td")
                .skip(1)
                .map(|c| {
                    let c = &c[c.find('>').map_or(0, |i| i + 1)..];
                    &c[..c.find("</td>").unwrap_or(c.len())]
                })
                .collect();
            (id, cells.get(2).copied().unwrap_or("").to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_the_members_and_a_new_leader_after_a_kill() {
    within(secs(240), async {
        let c = Cluster::start(3).await;
        let leader = c.leader(secs(10)).await;
        let follower = c.others(leader)[0];
        // Served by the node itself, from a follower too.
        let page = c
            .call(follower, Method::GET, "/ui", &[], Vec::new())
            .await
            .expect(200);
        assert!(page
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/html")));

        let dom = chromium(c.dir(), &["--dump-dom"], &format!("{}/ui", c.url(follower))).await;
        let rows = member_rows(&dom);
        assert_eq!(rows.len(), 3, "three members rendered:\n{dom}");
        let leaders: Vec<_> = rows.iter().filter(|(_, role)| role == "leader").collect();
        assert_eq!(leaders.len(), 1, "{rows:?}");
        assert_eq!(leaders[0].0, leader.to_string());

        c.kill9(leader);
        let new = c.leader_among(&c.others(leader), secs(20)).await;
        // The survivors' page shows the new leader and the change.
        let deadline = Instant::now() + secs(60);
        let dom = loop {
            let dom = chromium(c.dir(), &["--dump-dom"], &format!("{}/ui", c.url(follower))).await;
            let rows = member_rows(&dom);
            if rows
                .iter()
                .any(|(id, role)| role == "leader" && *id == new.to_string())
            {
                break dom;
            }
            assert!(
                Instant::now() < deadline,
                "the new leader never showed:\n{dom}"
            );
            tokio::time::sleep(POLL * 10).await;
        };
        assert!(
            dom.contains(&format!("node {new}")),
            "header names the new leader"
        );
        // Some load, so the charts have something to draw.
        let stop = std::sync::atomic::AtomicBool::new(false);
        let load = async {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                i += 1;
                let _ = c
                    .try_put(follower, &format!("ui/{}", i % 50), "v", "strong")
                    .await;
                let _ = c.get(follower, &format!("ui/{}", i % 50), "eventual").await;
            }
        };
        let shot = c.dir().join("ui-after-leader-kill.png");
        let arg = format!("--screenshot={}", shot.display());
        let take = async {
            let url = format!("{}/ui", c.url(follower));
            chromium(c.dir(), &[&arg, "--window-size=1280,900"], &url).await;
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        };
        tokio::join!(load, take);
        let png = std::fs::read(&shot).expect("screenshot written");
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "a real screenshot"
        );
        if let Ok(to) = std::env::var("QKV_UI_SCREENSHOT") {
            std::fs::copy(&shot, to).expect("copy the screenshot");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_change_is_one_log_line_with_old_and_new_leader() {
    within(secs(90), async {
        let c = Cluster::start(3).await;
        let leader = c.leader(secs(10)).await;
        c.kill9(leader);
        let new = c.leader_among(&c.others(leader), secs(20)).await;
        let survivor = c
            .others(leader)
            .into_iter()
            .find(|id| *id != new)
            .unwrap_or(new);
        let deadline = Instant::now() + secs(10);
        loop {
            let log =
                std::fs::read_to_string(c.kit().log_path(survivor).unwrap()).unwrap_or_default();
            let line = log.lines().find(|l| {
                l.contains("leader changed")
                    && l.contains(&format!("from={leader}"))
                    && l.contains(&format!("to={new}"))
            });
            if let Some(line) = line {
                assert!(line.contains("term="), "{line}");
                break;
            }
            assert!(Instant::now() < deadline, "no leader-change line:\n{log}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}
