//! `tradeoffs.md`: what each consistency level buys and costs, one table per
//! question (staleness, loss window, value size, key count, memory and disk,
//! restart and snapshot install), and the two cost plots.

use std::fmt::Write;

use serde_json::Value;

use crate::plot::{self, Axis, Chart, Series};
use crate::runs::{Results, Run};

fn cell(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{v:.decimals$}"))
}

fn int(v: Option<&Value>) -> String {
    v.and_then(Value::as_u64)
        .map_or_else(|| "—".into(), |v| v.to_string())
}

fn p3(r: &Run, path: &[&str]) -> String {
    let get = |p: &str| {
        let mut full = path.to_vec();
        full.push(p);
        int(r.field(&full))
    };
    format!("{} / {} / {}", get("p50"), get("p99"), get("max"))
}

fn bytes(b: f64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Workloads of the cost sweeps, in table order.
const COST: [(&str, &str, &str, usize); 3] = [
    ("put-strong", "leader", "strong write", 0),
    ("get-strong", "all", "strong read", 4),
    ("get-eventual", "followers", "eventual read", 1),
];

pub fn write(r: &Results, out: &mut String) -> Result<(), Box<dyn std::error::Error>> {
    let _ = writeln!(out, "# quorumkv: the trade-off in numbers\n");
    if let Some(m) = r.text("machine.txt") {
        let _ = writeln!(out, "```text\n{}\n```\n", m.trim_end());
    }
    staleness(r, out);
    loss(r, out);
    cost(r, out, "value-size", "value size", |x| x.value_size)?;
    cost(r, out, "key-count", "keys", |x| x.keys)?;
    preload_times(r, out);
    resources(r, out);
    recovery(r, out);
    Ok(())
}

fn staleness(r: &Results, out: &mut String) {
    let runs: Vec<&Run> = r.runs.iter().filter(|x| x.group == "staleness").collect();
    if runs.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "## Staleness of eventual reads on followers, under write load\n\n\
         Half reads, half writes (both `eventual`), spread over the two followers (writes are \
         forwarded to the leader). Index lag: the highest write index the load generator had \
         seen acknowledged when it sent the read, minus the applied index the read was served \
         at (`X-Raft-Index`), in log entries. Last contact: the follower's `X-Last-Contact-Ms`.\n"
    );
    let _ = writeln!(
        out,
        "| connections | ops/s | eventual reads | on followers | index lag p50 / p99 / max (entries) | last contact p50 / p99 / max (ms) | errors |"
    );
    let _ = writeln!(out, "|--:|--:|--:|--:|--:|--:|--:|");
    for x in runs {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            x.connections,
            cell(x.throughput(), 0),
            int(x.field(&["staleness", "reads"])),
            int(x.field(&["staleness", "on_followers"])),
            p3(x, &["staleness", "index_lag"]),
            p3(x, &["staleness", "last_contact_ms"]),
            x.errors()
                .map_or_else(|| "no report".into(), |e| e.to_string()),
        );
    }
    out.push('\n');
}

fn loss(r: &Results, out: &mut String) {
    let rows = r.table("loss.tsv");
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "## Loss window: acknowledged writes missing after `kill -9` of the leader\n\n\
         Writers put fresh keys through all three nodes; the leader is killed with `kill -9` \
         and restarted, several times. Afterwards every acknowledged key is read back strongly. \
         *Uncertain* writes got no definite answer (error status or no answer) and are not \
         counted as acknowledged.\n"
    );
    let _ = writeln!(
        out,
        "| consistency | leader kills | new leader after, s | writes sent | acknowledged | lost | wrong value | unreadable | uncertain |"
    );
    let _ = writeln!(out, "|---|--:|---|--:|--:|--:|--:|--:|--:|");
    for row in rows {
        let [level, kills, wfile, vfile, rest @ ..] = row.as_slice() else {
            continue;
        };
        let failovers = rest.first().map_or("—", |f| f.as_str()).replace(',', ", ");
        let (w, v) = (r.json(wfile), r.json(vfile));
        let g = |j: &Option<Value>, k: &str| int(j.as_ref().and_then(|j| j.get(k)));
        let uncertain = w.as_ref().map(|w| {
            let status: u64 = w
                .get("uncertain_status")
                .and_then(Value::as_object)
                .map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
            status
                + w.get("uncertain_transport")
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
        });
        let _ = writeln!(
            out,
            "| {level} | {kills} | {failovers} | {} | {} | **{}** | {} | {} | {} |",
            g(&w, "sent"),
            g(&w, "acked"),
            g(&v, "lost"),
            g(&v, "wrong_value"),
            g(&v, "unknown"),
            uncertain.map_or_else(|| "—".into(), |u| u.to_string()),
        );
    }
    out.push('\n');
}

fn cost(
    r: &Results,
    out: &mut String,
    group: &str,
    what: &str,
    x_of: fn(&Run) -> u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let runs: Vec<&Run> = r.runs.iter().filter(|x| x.group == group).collect();
    if runs.is_empty() {
        return Ok(());
    }
    let mut xs: Vec<u64> = runs.iter().map(|x| x_of(x)).collect();
    xs.sort_unstable();
    xs.dedup();
    let conns = runs.first().map_or(0, |x| x.connections);
    let _ = writeln!(
        out,
        "## Cost against {what}\n\n{conns} connections; strong writes to the leader, strong reads \
         spread over all nodes, eventual reads over the followers. Throughput in ops/s, p99 in ms.\n"
    );
    let mut head = format!("| {what} |");
    let mut rule = String::from("|--:|");
    for (_, _, name, _) in COST {
        let _ = write!(head, " {name} ops/s | {name} p99 |");
        rule.push_str("--:|--:|");
    }
    let _ = writeln!(out, "{head}\n{rule}");
    for &x in &xs {
        let label = if group == "value-size" {
            bytes(x as f64)
        } else {
            x.to_string()
        };
        let _ = write!(out, "| {label} |");
        for (w, p, _, _) in COST {
            let run = runs
                .iter()
                .find(|r| r.workload == w && r.placement == p && x_of(r) == x);
            let warn = if run.is_some_and(|r| r.had_errors()) {
                " ⚠"
            } else {
                ""
            };
            let _ = write!(
                out,
                " {}{warn} | {} |",
                cell(run.and_then(|r| r.throughput()), 0),
                cell(run.and_then(|r| r.latency_ms("p99")), 2)
            );
        }
        out.push('\n');
    }
    let file = format!("{group}.svg");
    let series = COST
        .iter()
        .map(|&(w, p, name, colour)| Series {
            name: name.into(),
            points: runs
                .iter()
                .filter(|r| r.workload == w && r.placement == p)
                .filter_map(|r| Some((x_of(r) as f64, r.throughput()?)))
                .collect(),
            dashed: false,
            colour,
        })
        .collect();
    let x_label = if group == "value-size" {
        "value size, bytes"
    } else {
        "keys"
    };
    if plot::draw(
        &r.dir.join(&file),
        &Chart {
            title: &format!("Throughput against {what}"),
            x: Axis::log(x_label),
            y: Axis::linear("ops/s"),
            series,
        },
    )? {
        let _ = writeln!(out, "\n![{file}]({file})");
    }
    out.push('\n');
    Ok(())
}

fn preload_times(r: &Results, out: &mut String) {
    let rows = r.table("keycount.tsv");
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "### Loading the key space\n\nEvery key written once, strongly, at 64 connections, \
         within a time budget; a count not reached in it ends the sweep.\n"
    );
    let _ = writeln!(out, "| keys | load time, s | outcome |\n|--:|--:|---|");
    for row in rows {
        if let [keys, secs, status, ..] = row.as_slice() {
            let _ = writeln!(out, "| {keys} | {secs} | {status} |");
        }
    }
    out.push('\n');
}

fn resources(r: &Results, out: &mut String) {
    let rows = r.table("resources.tsv");
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "## Memory and disk per node\n\nResident memory (`VmRSS`) and the size of the data \
         directory (log, state machine, snapshot), after loading and the cost runs.\n"
    );
    let _ = writeln!(
        out,
        "| keys | node | role | RSS | disk |\n|--:|--:|---|--:|--:|"
    );
    for row in rows {
        if let [keys, node, role, rss_kib, disk, ..] = row.as_slice() {
            let rss = rss_kib.parse::<f64>().map(|k| bytes(k * 1024.0));
            let disk = disk.parse::<f64>().map(bytes);
            let _ = writeln!(
                out,
                "| {keys} | {node} | {role} | {} | {} |",
                rss.unwrap_or_else(|_| "—".into()),
                disk.unwrap_or_else(|_| "—".into())
            );
        }
    }
    out.push('\n');
}

fn recovery(r: &Results, out: &mut String) {
    let rows = r.table("recovery.tsv");
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "## Restart and snapshot install\n\n*restart*: a follower is killed with `kill -9` and \
         started again; time from its start until `/ready` and it has applied the leader's \
         commit index of the moment it was killed. *wiped*: a follower's data directory is \
         deleted and the node started again with the same flags; time until it has caught up \
         the same way. *how* says whether it caught up from a snapshot sent by the leader or \
         from the log.\n"
    );
    let _ = writeln!(
        out,
        "| keys | data per node | case | seconds | how |\n|--:|--:|---|--:|---|"
    );
    for row in rows {
        if let [keys, disk, kind, secs, how, ..] = row.as_slice() {
            let disk = disk.parse::<f64>().map_or_else(|_| "—".into(), bytes);
            let _ = writeln!(out, "| {keys} | {disk} | {kind} | {secs} | {how} |");
        }
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(bytes(64.0), "64 B");
        assert_eq!(bytes(65536.0), "64.0 KiB");
        assert_eq!(bytes(3.5 * 1024.0 * 1024.0), "3.5 MiB");
    }
}
