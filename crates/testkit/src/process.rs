//! Process-level helpers of [`LocalCluster`](super::LocalCluster): free
//! loopback ports, fresh directories, signals, and finding a wrapped node's
//! pid in /proc.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cluster::POLL;
use crate::Error;

/// Kills a child (SIGCONT first if `stopped`) and reaps it. `inner` is the
/// real node pid when the child is a wrapper (strace exits once its tracee died).
pub fn kill_child(mut child: Child, stopped: bool, inner: Option<u32>) {
    let pid = inner.unwrap_or(child.id());
    if stopped {
        let _ = signal(pid, "CONT");
    }
    if let Some(pid) = inner {
        let _ = signal(pid, "KILL");
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

pub fn signal(pid: u32, sig: &str) -> Result<(), Error> {
    let status = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .map_err(Error::io(format!("kill -{sig} {pid}")))?;
    match status.success() {
        true => Ok(()),
        false => Err(Error::Unexpected(format!("kill -{sig} {pid}: {status}"))),
    }
}

/// A child process of `parent` whose command name is `name` (or `parent`
/// itself, when the wrapper exec'd it), from /proc.
pub fn child_named(parent: u32, name: &str) -> Option<u32> {
    // A wrapper that execs its command (`ip netns exec`) becomes it.
    let own = std::fs::read_to_string(format!("/proc/{parent}/comm")).unwrap_or_default();
    if own.trim_end() == name {
        return Some(parent);
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ..."; comm may contain spaces, so split at ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let ppid = stat[close + 1..].split_whitespace().nth(1);
        if comm == name && ppid == Some(&parent.to_string()) {
            return Some(pid);
        }
    }
    None
}

/// A fresh directory `<parent>/<prefix><pid>-<time>-<n>`; never reuses one.
pub fn make_dir(parent: &Path, prefix: &str) -> Result<PathBuf, Error> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    for _ in 0..1000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}{}-{nanos:08x}-{n}", std::process::id());
        let path = parent.join(name);
        match std::fs::create_dir(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(format!("create {}", path.display()))(e)),
        }
    }
    Err(Error::Unexpected(format!(
        "no fresh directory name under {}",
        parent.display()
    )))
}

/// A loopback port that nothing listens on, below Linux's ephemeral range
/// (so outgoing connections do not take it) and distinct within this process.
pub fn free_port() -> Result<u16, Error> {
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = (std::process::id() % SPAN) * 37 % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (base + n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(Error::NoFreePort)
}
