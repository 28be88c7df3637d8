//! The comparison matrix: `summary.md` (each quorumkv figure beside etcd's
//! and the ratio, the issue's targets, failed runs) and its SVG plots.

use std::fmt::Write;

use crate::plot::{self, Axis, Chart, Series};
use crate::runs::{Results, Run};

/// A line of the matrix: how the run is named in `runs.tsv` and drawn.
struct Def {
    store: &'static str,
    workload: &'static str,
    placement: &'static str,
    label: &'static str,
    colour: usize,
    write: bool,
}

const fn def(
    store: &'static str,
    workload: &'static str,
    placement: &'static str,
    label: &'static str,
    colour: usize,
    write: bool,
) -> Def {
    Def {
        store,
        workload,
        placement,
        label,
        colour,
        write,
    }
}

const QKV: &str = "quorumkv";
const ETCD: &str = "etcd";

const STRONG_W: Def = def(QKV, "put-strong", "leader", "strong write", 0, true);
const EVENTUAL_W: Def = def(QKV, "put-eventual", "leader", "eventual write", 1, true);
const ALL_W: Def = def(QKV, "put-all", "leader", "all write", 3, true);
const ETCD_PUT: Def = def(ETCD, "put", "leader", "etcd put", 5, true);
const STRONG_RL: Def = def(QKV, "get-strong", "leader", "strong read, leader", 0, false);
const STRONG_RF: Def = def(
    QKV,
    "get-strong",
    "follower",
    "strong read, follower",
    4,
    false,
);
const EVENTUAL_R: Def = def(
    QKV,
    "get-eventual",
    "followers",
    "eventual read, followers",
    1,
    false,
);
const ETCD_LIN_L: Def = def(
    ETCD,
    "get-linearizable",
    "leader",
    "etcd linearizable range, leader",
    0,
    false,
);
const ETCD_LIN_F: Def = def(
    ETCD,
    "get-linearizable",
    "follower",
    "etcd linearizable range, follower",
    4,
    false,
);
const ETCD_SER: Def = def(
    ETCD,
    "get-serializable",
    "followers",
    "etcd serializable range, followers",
    1,
    false,
);

/// A cluster started with `--strong-reads lease`.
const LEASE_RL: Def = def(
    QKV,
    "get-strong-lease",
    "leader",
    "strong read (lease), leader",
    2,
    false,
);
/// 64 KiB values.
const STRONG_W_64K: Def = def(
    QKV,
    "put-strong-64k",
    "leader",
    "strong write 64 KiB",
    0,
    true,
);
const ETCD_PUT_64K: Def = def(ETCD, "put-64k", "leader", "etcd put 64 KiB", 5, true);

/// quorumkv's line and the etcd line it is compared with.
const PAIRS: [(&Def, &Def); 8] = [
    (&STRONG_W, &ETCD_PUT),
    (&EVENTUAL_W, &ETCD_PUT),
    (&ALL_W, &ETCD_PUT),
    (&STRONG_W_64K, &ETCD_PUT_64K),
    (&STRONG_RL, &ETCD_LIN_L),
    (&LEASE_RL, &ETCD_LIN_L),
    (&STRONG_RF, &ETCD_LIN_F),
    (&EVENTUAL_R, &ETCD_SER),
];

const WRITES: [&Def; 4] = [&STRONG_W, &EVENTUAL_W, &ALL_W, &ETCD_PUT];
const READS: [&Def; 7] = [
    &STRONG_RL,
    &LEASE_RL,
    &STRONG_RF,
    &EVENTUAL_R,
    &ETCD_LIN_L,
    &ETCD_LIN_F,
    &ETCD_SER,
];

const PERCENTILES: [(&str, &str); 5] = [
    ("p50", "p50"),
    ("p90", "p90"),
    ("p99", "p99"),
    ("p999", "p99.9"),
    ("max", "max"),
];

fn run<'a>(r: &'a Results, d: &Def, conns: u64) -> Option<&'a Run> {
    r.select("matrix", d.store, d.workload, d.placement)
        .find(|x| x.connections == conns)
}

fn connection_counts(r: &Results) -> Vec<u64> {
    let mut c: Vec<u64> = r
        .runs
        .iter()
        .filter(|x| x.group == "matrix")
        .map(|x| x.connections)
        .collect();
    c.sort_unstable();
    c.dedup();
    c
}

fn num(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) => format!("{v:.decimals$}"),
        None => "—".into(),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn ratio_cell(a: Option<f64>, b: Option<f64>) -> String {
    ratio(a, b).map_or_else(|| "—".into(), |x| format!("{x:.2}×"))
}

/// `⚠` after a figure from a run with failed requests.
fn flag(run: Option<&Run>) -> &'static str {
    if run.is_some_and(Run::had_errors) {
        " ⚠"
    } else {
        ""
    }
}

pub fn write_summary(r: &Results, out: &mut String) {
    let conns = connection_counts(r);
    let have_etcd = r
        .runs
        .iter()
        .any(|x| x.group == "matrix" && x.store == ETCD);
    let _ = writeln!(out, "# quorumkv vs etcd\n");
    if let Some(m) = r.text("machine.txt") {
        let _ = writeln!(out, "```text\n{}\n```\n", m.trim_end());
    }
    if !have_etcd {
        let _ = writeln!(
            out,
            "**etcd was not measured in this run** (see bench.log): the etcd columns are empty.\n"
        );
    }
    let _ = writeln!(
        out,
        "Closed loop: each connection has one request in flight. Writes go to the leader; \
         `follower` reads are pinned to one follower, `followers` reads spread over both. \
         Ratios are quorumkv ÷ etcd: above 1 is better for throughput, below 1 is better \
         for latency. ⚠ marks a run with failed requests (listed below).\n"
    );
    let _ = writeln!(
        out,
        "| quorumkv | etcd | conns | quorumkv ops/s | etcd ops/s | ratio | quorumkv p50 ms | etcd p50 ms | ratio | quorumkv p99 ms | etcd p99 ms | ratio |"
    );
    let _ = writeln!(out, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for (q, e) in PAIRS {
        for &c in &conns {
            let (qr, er) = (run(r, q, c), run(r, e, c));
            if qr.is_none() && er.is_none() {
                continue;
            }
            let t = |x: Option<&Run>| x.and_then(Run::throughput);
            let l = |x: Option<&Run>, p: &str| x.and_then(|x| x.latency_ms(p));
            let _ = writeln!(
                out,
                "| {} | {} | {c} | {}{} | {}{} | {} | {} | {} | {} | {} | {} | {} |",
                q.label,
                e.label.trim_start_matches("etcd "),
                num(t(qr), 0),
                flag(qr),
                num(t(er), 0),
                flag(er),
                ratio_cell(t(qr), t(er)),
                num(l(qr, "p50"), 2),
                num(l(er, "p50"), 2),
                ratio_cell(l(qr, "p50"), l(er, "p50")),
                num(l(qr, "p99"), 2),
                num(l(er, "p99"), 2),
                ratio_cell(l(qr, "p99"), l(er, "p99")),
            );
        }
    }
    out.push('\n');
    write_targets(r, out);
    write_failures(r, out);
    let _ = writeln!(out, "## Plots\n");
    for name in plot_names(r) {
        let _ = writeln!(out, "![{name}]({name})\n");
    }
}

/// The issue's targets (issue 11), each with the figures it is judged on.
fn write_targets(r: &Results, out: &mut String) {
    let t = |d: &Def, n: u64| run(r, d, n).and_then(Run::throughput);
    let l = |d: &Def, n: u64, p: &str| run(r, d, n).and_then(|x| x.latency_ms(p));
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "**met**",
        Some(false) => "**not met**",
        None => "not measured",
    };
    let both = |a: Option<bool>, b: Option<bool>| Some(a? && b?);
    let at_least = |x: Option<f64>, k: f64| x.map(|x| x >= k);
    let at_most = |x: Option<f64>, k: f64| x.map(|x| x <= k);
    let _ = writeln!(out, "## Targets (issue 11)\n");

    let p50 = ratio(l(&STRONG_W, 1, "p50"), l(&ETCD_PUT, 1, "p50"));
    let _ = writeln!(
        out,
        "- strong write, 1 connection, p50 ≤ 0.6× etcd put's: {} ({} vs {} ms, {})",
        verdict(at_most(p50, 0.6)),
        num(l(&STRONG_W, 1, "p50"), 2),
        num(l(&ETCD_PUT, 1, "p50"), 2),
        ratio_cell(l(&STRONG_W, 1, "p50"), l(&ETCD_PUT, 1, "p50"))
    );
    let ev = l(&EVENTUAL_W, 1, "p50");
    let _ = writeln!(
        out,
        "- eventual write, 1 connection, p50 ≤ 0.4 ms: {} ({} ms)",
        verdict(at_most(ev, 0.4)),
        num(ev, 2)
    );
    let w = ratio(t(&STRONG_W, 64), t(&ETCD_PUT, 64));
    let p99 = ratio(l(&STRONG_W, 64, "p99"), l(&ETCD_PUT, 64, "p99"));
    let _ = writeln!(
        out,
        "- strong write, 64 connections, ≥ 2.5× etcd put, p99 ≤ 0.5× etcd's: {} ({}; p99 {} vs {} ms, {})",
        verdict(both(at_least(w, 2.5), at_most(p99, 0.5))),
        ratio_cell(t(&STRONG_W, 64), t(&ETCD_PUT, 64)),
        num(l(&STRONG_W, 64, "p99"), 2),
        num(l(&ETCD_PUT, 64, "p99"), 2),
        ratio_cell(l(&STRONG_W, 64, "p99"), l(&ETCD_PUT, 64, "p99"))
    );
    for (q, e, n, k, what) in [
        (
            &ALL_W,
            &ETCD_PUT,
            64,
            1.2,
            "`all` write, 64 connections, ≥ 1.2× etcd put",
        ),
        (
            &STRONG_RL,
            &ETCD_LIN_L,
            64,
            4.0,
            "strong read on the leader (readindex), 64 connections, ≥ 4× etcd linearizable range",
        ),
        (
            &LEASE_RL,
            &ETCD_LIN_L,
            64,
            6.0,
            "strong read on the leader (lease), 64 connections, ≥ 6× etcd linearizable range",
        ),
        (
            &STRONG_W_64K,
            &ETCD_PUT_64K,
            16,
            2.0,
            "strong write of 64 KiB values, 16 connections, ≥ 2× etcd put",
        ),
    ] {
        let x = ratio(t(q, n), t(e, n));
        let _ = writeln!(
            out,
            "- {what}: {} ({}: {} vs {} ops/s)",
            verdict(at_least(x, k)),
            ratio_cell(t(q, n), t(e, n)),
            num(t(q, n), 0),
            num(t(e, n), 0)
        );
    }
    let _ = writeln!(
        out,
        "- leader kill to new leader: measured by `scripts/failover-bench.sh`, not by this run\n"
    );
}

fn write_failures(r: &Results, out: &mut String) {
    let bad: Vec<&Run> = r
        .runs
        .iter()
        .filter(|x| x.group == "matrix" && (x.report.is_none() || x.had_errors()))
        .collect();
    if bad.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Runs with failures\n");
    for x in bad {
        let what = match &x.report {
            None => "no report (the bench failed; see logs/)".to_string(),
            Some(_) => format!(
                "{} of {} requests failed: {}",
                x.errors().unwrap_or(0),
                x.requests().unwrap_or(0),
                x.field(&["errors"])
                    .map(|v| v.to_string())
                    .unwrap_or_default()
            ),
        };
        let _ = writeln!(
            out,
            "- {} {} ({}) at {} connections: {what}",
            x.store, x.workload, x.placement, x.connections
        );
    }
    out.push('\n');
}

fn plot_names(r: &Results) -> Vec<String> {
    let mut names = vec![
        "throughput-writes.svg".to_string(),
        "throughput-reads.svg".to_string(),
    ];
    for c in connection_counts(r) {
        names.push(format!("latency-writes-c{c}.svg"));
        names.push(format!("latency-reads-c{c}.svg"));
    }
    names
        .into_iter()
        .filter(|n| r.dir.join(n).exists())
        .collect()
}

fn label(d: &Def) -> String {
    if d.store == QKV {
        format!("quorumkv {}", d.label)
    } else {
        d.label.to_string()
    }
}

pub fn draw_plots(r: &Results) -> Result<(), Box<dyn std::error::Error>> {
    // Connections as evenly spaced categories: 1, 16, 64.
    let conns = connection_counts(r);
    let names: Vec<String> = conns.iter().map(u64::to_string).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let position = |c: u64| conns.iter().position(|&x| x == c).unwrap_or(0) as f64;
    for (name, defs, what) in [
        ("throughput-writes.svg", &WRITES[..], "writes"),
        ("throughput-reads.svg", &READS[..], "reads"),
    ] {
        let series = defs
            .iter()
            .map(|d| Series {
                name: label(d),
                points: r
                    .select("matrix", d.store, d.workload, d.placement)
                    .filter_map(|x| Some((position(x.connections), x.throughput()?)))
                    .collect(),
                dashed: d.store == ETCD,
                colour: d.colour,
            })
            .collect();
        plot::draw(
            &r.dir.join(name),
            &Chart {
                title: &format!("Throughput of {what} against connections"),
                x: Axis::categories("connections", &names),
                y: Axis::linear("ops/s"),
                series,
            },
        )?;
    }
    let cats: Vec<&str> = PERCENTILES.iter().map(|p| p.1).collect();
    for c in connection_counts(r) {
        for (kind, defs) in [("writes", &WRITES[..]), ("reads", &READS[..])] {
            let series = defs
                .iter()
                .filter(|d| d.write == (kind == "writes"))
                .map(|d| Series {
                    name: label(d),
                    points: run(r, d, c)
                        .map(|x| {
                            PERCENTILES
                                .iter()
                                .enumerate()
                                .filter_map(|(i, p)| Some((i as f64, x.latency_ms(p.0)?)))
                                .collect()
                        })
                        .unwrap_or_default(),
                    dashed: d.store == ETCD,
                    colour: d.colour,
                })
                .collect();
            plot::draw(
                &r.dir.join(format!("latency-{kind}-c{c}.svg")),
                &Chart {
                    title: &format!(
                        "Latency of {kind} at {c} connection{}",
                        if c == 1 { "" } else { "s" }
                    ),
                    x: Axis::categories("percentile", &cats),
                    y: Axis::log("latency, ms"),
                    series,
                },
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_and_cells() {
        assert_eq!(ratio_cell(Some(3.0), Some(2.0)), "1.50×");
        assert_eq!(ratio_cell(Some(3.0), None), "—");
        assert_eq!(ratio_cell(Some(3.0), Some(0.0)), "—");
        assert_eq!(num(Some(1.234), 2), "1.23");
        assert_eq!(num(None, 0), "—");
    }
}
