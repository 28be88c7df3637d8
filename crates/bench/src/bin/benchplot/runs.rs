//! The results directory `scripts/bench.sh` writes: `runs.tsv` names every
//! `quorumkv-bench --json` report in `raw/` with what the report itself does
//! not know (which store, which workload, leader or follower); the trade-off
//! modes add small TSV files of their own. Everything is read leniently: a
//! missing or failed run becomes a blank cell, never a crash.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// One line of `runs.tsv` and the report it points at.
#[derive(Debug, Clone)]
pub struct Run {
    /// `matrix`, `staleness`, `value-size`, `key-count`.
    pub group: String,
    /// `quorumkv` or `etcd`.
    pub store: String,
    /// `put-strong`, `get-eventual`, `put` (etcd), `get-linearizable`, ...
    pub workload: String,
    /// `leader`, `follower`, `followers`, `all`.
    pub placement: String,
    pub connections: u64,
    pub value_size: u64,
    pub keys: u64,
    /// `None` when the report is missing or not JSON (the run failed).
    pub report: Option<Value>,
}

pub const MANIFEST_HEADER: &str =
    "group\tstore\tworkload\tplacement\tconnections\tvalue_size\tkeys\tfile";

impl Run {
    pub fn throughput(&self) -> Option<f64> {
        self.report.as_ref()?.get("throughput")?.as_f64()
    }

    /// A latency percentile in milliseconds: `p50`, `p90`, `p99`, `p999`, `max`.
    pub fn latency_ms(&self, p: &str) -> Option<f64> {
        let us = self.report.as_ref()?.get("latency_us")?.get(p)?.as_f64()?;
        Some(us / 1e3)
    }

    /// Failed requests (transport errors and non-2xx answers).
    pub fn errors(&self) -> Option<u64> {
        self.report.as_ref()?.get("errors")?.get("total")?.as_u64()
    }

    pub fn requests(&self) -> Option<u64> {
        self.report.as_ref()?.get("requests")?.as_u64()
    }

    /// A nested field, e.g. `["staleness", "index_lag", "p99"]`.
    pub fn field(&self, path: &[&str]) -> Option<&Value> {
        path.iter()
            .try_fold(self.report.as_ref()?, |v, key| v.get(key))
    }

    /// True when the report exists and says something went wrong.
    pub fn had_errors(&self) -> bool {
        self.errors().is_some_and(|e| e > 0)
    }
}

/// Everything in one results directory.
pub struct Results {
    pub dir: PathBuf,
    pub runs: Vec<Run>,
}

impl Results {
    pub fn load(dir: &Path) -> Result<Results, String> {
        let manifest = dir.join("runs.tsv");
        let text = std::fs::read_to_string(&manifest)
            .map_err(|e| format!("{}: {e}", manifest.display()))?;
        let mut runs = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.is_empty() || line.starts_with("group\t") || line.starts_with('#') {
                continue;
            }
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() != 8 {
                return Err(format!(
                    "{}:{}: expected 8 tab-separated fields ({MANIFEST_HEADER}), got {}",
                    manifest.display(),
                    n + 1,
                    f.len()
                ));
            }
            let num = |s: &str| s.parse::<u64>().unwrap_or(0);
            let report = std::fs::read_to_string(dir.join(f[7]))
                .ok()
                .and_then(|t| serde_json::from_str(t.trim()).ok());
            runs.push(Run {
                group: f[0].into(),
                store: f[1].into(),
                workload: f[2].into(),
                placement: f[3].into(),
                connections: num(f[4]),
                value_size: num(f[5]),
                keys: num(f[6]),
                report,
            });
        }
        Ok(Results {
            dir: dir.to_path_buf(),
            runs,
        })
    }

    /// The runs of `group` matching store, workload and placement.
    pub fn select<'a>(
        &'a self,
        group: &'a str,
        store: &'a str,
        workload: &'a str,
        placement: &'a str,
    ) -> impl Iterator<Item = &'a Run> + 'a {
        self.runs.iter().filter(move |r| {
            r.group == group
                && r.store == store
                && r.workload == workload
                && r.placement == placement
        })
    }

    pub fn has_group(&self, group: &str) -> bool {
        self.runs.iter().any(|r| r.group == group)
    }

    /// Rows of a TSV file in the directory (header line skipped), if present.
    pub fn table(&self, name: &str) -> Vec<Vec<String>> {
        let Ok(text) = std::fs::read_to_string(self.dir.join(name)) else {
            return Vec::new();
        };
        text.lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect()
    }

    /// A JSON file in the directory, if present and valid.
    pub fn json(&self, name: &str) -> Option<Value> {
        let text = std::fs::read_to_string(self.dir.join(name)).ok()?;
        serde_json::from_str(text.trim()).ok()
    }

    /// The first line of a text file in the directory, if present.
    pub fn text(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.join(name)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_manifest_and_reports() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("raw")).unwrap();
        std::fs::write(
            dir.path().join("raw/a.json"),
            r#"{"throughput":1234.5,"requests":10,"latency_us":{"p50":1500,"p99":9000},"errors":{"total":2}}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("runs.tsv"),
            format!(
                "{MANIFEST_HEADER}\nmatrix\tquorumkv\tput-strong\tleader\t16\t256\t10000\traw/a.json\n\
                 matrix\tetcd\tput\tleader\t16\t256\t10000\traw/missing.json\n"
            ),
        )
        .unwrap();
        let r = Results::load(dir.path()).unwrap();
        assert_eq!(r.runs.len(), 2);
        let a = r
            .select("matrix", "quorumkv", "put-strong", "leader")
            .next()
            .unwrap();
        assert_eq!(a.throughput(), Some(1234.5));
        assert_eq!(a.latency_ms("p50"), Some(1.5));
        assert!(a.had_errors());
        let b = r.select("matrix", "etcd", "put", "leader").next().unwrap();
        assert!(b.report.is_none() && b.throughput().is_none() && !b.had_errors());
    }

    #[test]
    fn rejects_malformed_manifest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("runs.tsv"), "matrix\tonly-two\n").unwrap();
        assert!(Results::load(dir.path()).is_err());
    }
}
