//! No write is acknowledged before it is on disk, seen from outside with
//! strace: between reading each PUT and writing its `HTTP/1.1 200` the node
//! must complete an fdatasync (or the stronger fsync) that returned 0; and
//! with those calls failing (EIO injected) a PUT must not be acknowledged.
//! sled's own `flush` only calls sync_file_range on Linux, which does not
//! count: it neither flushes the device cache nor the file's metadata.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{secs, within, Cluster, Options, POLL};

/// These tests prove durability with strace; without it they fail rather
/// than pass having checked nothing (`scripts/deps.sh` installs it).
fn require_strace() {
    let found = Command::new("strace").arg("-V").output().is_ok();
    assert!(
        found,
        "strace is not installed: run scripts/deps.sh (apt-get install strace)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_put_is_acknowledged_before_fdatasync() {
    require_strace();
    within(secs(180), async {
        let calls = "trace=fdatasync,fsync,read,recvfrom,recvmsg,write,writev,sendto,sendmsg";
        let wrapper = ["strace", "-f", "-ttt", "-s", "40", "-e", calls];
        let mut wrapper: Vec<String> = wrapper.map(String::from).to_vec();
        wrapper.extend(["-o".into(), "{dir}/strace-{id}.txt".into()]);
        let opts = Options {
            wrapper,
            ..Options::default()
        };
        let c = Cluster::start_opts(1, opts).await;
        let id = c.leader(secs(20)).await;
        for i in 0..10 {
            c.put_ok(id, &format!("dur-{i}"), format!("v{i}")).await;
        }
        c.kill9(id); // strace exits with its tracee, so the trace is complete

        let trace = std::fs::read_to_string(c.dir().join("strace-1.txt")).expect("trace");
        let (acked, unsynced) = acks_without_sync(&trace);
        assert!(
            unsynced.is_empty(),
            "PUT answered 200 with no successful fdatasync since it was read: {unsynced:#?}"
        );
        assert_eq!(acked, 10, "PUT/200 pairs found in the trace");
    })
    .await;
}

/// Walks the trace in time order. Returns how many PUTs were answered 200
/// and the request lines of those with no fdatasync/fsync returning 0 between
/// the read of the request and the write of the answer.
fn acks_without_sync(trace: &str) -> (usize, Vec<String>) {
    let mut events: Vec<((u64, u64), &str)> = trace.lines().filter_map(parse_line).collect();
    events.sort_by_key(|(at, _)| *at); // stable: equal stamps keep file order
    let mut pending: Option<(&str, bool)> = None;
    let (mut acked, mut unsynced) = (0, Vec::new());
    for (_, call) in events {
        let name = syscall_name(call);
        if ["read", "recvfrom", "recvmsg"].contains(&name) && call.contains("PUT /v1/kv/") {
            pending = Some((call, false));
        } else if ["fdatasync", "fsync"].contains(&name) && returned_zero(call) {
            if let Some((_, synced)) = &mut pending {
                *synced = true;
            }
        } else if ["write", "writev", "sendto", "sendmsg"].contains(&name)
            && call.contains("HTTP/1.1 200")
        {
            if let Some((request, synced)) = pending.take() {
                acked += 1;
                if !synced {
                    unsynced.push(request.to_string());
                }
            }
        }
    }
    (acked, unsynced)
}

/// "[pid] secs.micros call..." (strace -f -ttt) -> ((secs, micros), call).
fn parse_line(line: &str) -> Option<((u64, u64), &str)> {
    let mut rest = line.trim_start();
    let (first, tail) = rest.split_once(' ')?;
    if !first.contains('.') {
        rest = tail.trim_start(); // the pid
    }
    let (stamp, call) = rest.split_once(' ')?;
    let (s, us) = stamp.split_once('.')?;
    Some(((s.parse().ok()?, us.parse().ok()?), call))
}

/// "fdatasync(5) = 0" -> "fdatasync"; "<... fdatasync resumed>) = 0" -> same.
fn syscall_name(call: &str) -> &str {
    match call.strip_prefix("<... ") {
        Some(resumed) => resumed.split(' ').next().unwrap_or(""),
        None => call.split('(').next().unwrap_or(""),
    }
}

fn returned_zero(call: &str) -> bool {
    !call.ends_with("<unfinished ...>")
        && call
            .rsplit_once("= ")
            .is_some_and(|(_, ret)| ret.trim() == "0")
}

/// A strace attached to a running process; killed (which detaches it) on drop.
struct Tracer(Child);

impl Tracer {
    /// Attaches and waits (deadline) until strace says it has attached.
    fn attach(pid: u32, dir: &Path, args: &[&str]) -> Tracer {
        let err_path = dir.join("strace-inject.err");
        let err = std::fs::File::create(&err_path).expect("strace stderr file");
        let child = Command::new("strace")
            .args(["-f", "-p", &pid.to_string(), "-o"])
            .arg(dir.join("strace-inject.txt"))
            .args(args)
            .stdin(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("spawn strace");
        let tracer = Tracer(child);
        let deadline = Instant::now() + secs(10);
        while !std::fs::read_to_string(&err_path).is_ok_and(|s| s.contains("attached")) {
            assert!(Instant::now() < deadline, "strace did not attach to {pid}");
            std::thread::sleep(POLL);
        }
        tracer
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn put_is_not_acknowledged_when_fdatasync_fails() {
    require_strace();
    within(secs(120), async {
        // Started and initialized without strace; the failure is injected
        // only once the node serves, so startup itself is not disturbed.
        let c = Cluster::start(1).await;
        let id = c.leader(secs(10)).await;
        c.put_ok(id, "before", "ok").await;
        let inject = [
            "-e",
            "trace=fdatasync,fsync",
            "-e",
            "inject=fdatasync,fsync:error=EIO",
        ];
        let _tracer = Tracer::attach(c.pid(id), c.dir(), &inject);

        let sent = c.try_put(id, "after", "must not be acked", "strong").await;
        let trace = std::fs::read_to_string(c.dir().join("strace-inject.txt"));
        let trace = trace.unwrap_or_default();
        match sent {
            Ok(r) => {
                assert!(
                    r.status.is_server_error(),
                    "want 5xx when fdatasync/fsync fail: {r:?}\ntrace:\n{trace}"
                );
                if r.status == 500 {
                    assert_eq!(r.error_code(), "internal", "storage failure: {r:?}");
                }
            }
            Err(e) => assert!(!e.is_timeout(), "no answer within 10 s: {e}"),
        }
        // A node whose storage failed must not linger half-alive: its Raft
        // core stops, and the process exits non-zero for a supervisor to see.
        let deadline = Instant::now() + secs(20);
        let status = loop {
            if let Some(status) = c.kit().exit_status(id).expect("node") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "node kept running after a storage failure:\n{}",
                c.kit().log_tail(id, 20)
            );
            tokio::time::sleep(POLL).await;
        };
        assert!(!status.success(), "exit status {status}");
        let log = c.kit().log_tail(id, 100_000);
        assert!(log.contains("raft core stopped"), "log:\n{log}");
    })
    .await;
}

#[test]
fn trace_check_needs_a_successful_sync_between_request_and_answer() {
    let trace = r#"7 100.000001 recvfrom(13, "PUT /v1/kv/a HTTP/1.1\r\nH", 24, 0, NULL, NULL) = 24
8 100.000002 fdatasync(11 <unfinished ...>
7 100.000003 read(5, "\1\0\0\0\0\0\0\0", 8) = 8
8 100.000004 <... fdatasync resumed>) = 0
9 100.000005 writev(13, [{iov_base="HTTP/1.1 200 OK\r\ncontent-type: a"..., iov_len=164}], 1) = 164
7 100.000006 read(13,  <unfinished ...>
7 100.000007 <... read resumed>"PUT /v1/kv/b HTTP/1.1\r\nH"..., 8192) = 90
8 100.000008 fdatasync(11) = -1 EIO (Input/output error) (INJECTED)
8 100.000009 fsync(9 <unfinished ...>
9 100.000010 write(13, "HTTP/1.1 200 OK\r\ncontent-type: a"..., 164) = 164
8 100.000011 <... fsync resumed>) = 0
"#;
    let (acked, unsynced) = acks_without_sync(trace);
    assert_eq!(acked, 2);
    assert_eq!(unsynced.len(), 1, "{unsynced:?}");
    assert!(unsynced[0].contains("PUT /v1/kv/b"), "{unsynced:?}");
}

/// A follower whose every fdatasync takes 150 ms (injected with strace),
/// longer than a heartbeat interval: writes keep committing through the other
/// follower, and the leader sees the slow one catch up while it is still slow.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_follower_disk_neither_stalls_commits_nor_falls_behind_for_good() {
    require_strace();
    within(secs(240), async {
        let c = Cluster::start(3).await;
        let leader = c.leader(secs(10)).await;
        let slow = c.others(leader)[0];
        let inject = [
            "-e",
            "trace=fdatasync",
            "-e",
            "inject=fdatasync:delay_exit=150000",
        ];
        let _tracer = Tracer::attach(c.pid(slow), c.dir(), &inject);

        // Writes for at least 1.5 s (ten of the slow disk's syncs): raft-log
        // gathers every append queued behind a sync into the next one, so a
        // quick burst would meet only a few delayed syncs.
        let started = Instant::now();
        let mut last = 0;
        let mut i = 0;
        while i < 60 || started.elapsed() < Duration::from_millis(1500) {
            last = c.put_ok(leader, &format!("slow/{i}"), "v").await;
            i += 1;
            assert!(i < 100_000, "writes did not end");
        }
        // The leader's own record of the slow follower: it must reach the last
        // write, so that appends to it complete rather than time out forever.
        let deadline = Instant::now() + secs(60);
        loop {
            let info = c.info(leader).await;
            let matched = info["replication"]
                .as_array()
                .and_then(|r| r.iter().find(|f| f["id"] == slow))
                .and_then(|f| f["matched_index"].as_u64());
            if matched >= Some(last) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "leader's matched index for slow node {slow} stayed at {matched:?} < {last}: {info}"
            );
            tokio::time::sleep(POLL).await;
        }
        let trace = std::fs::read_to_string(c.dir().join("strace-inject.txt")).unwrap_or_default();
        let delayed = trace.lines().filter(|l| l.contains("DELAYED")).count();
        assert!(
            delayed >= 5,
            "only {delayed} delayed fdatasyncs on node {slow}:\n{trace}"
        );
    })
    .await;
}
