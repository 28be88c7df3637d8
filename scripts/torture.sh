#!/usr/bin/env bash
# The torture suite, longer and harder than CI's profile: a real 3-node cluster
# (release build) behind peer proxies, 10 sequential clients, and every fault
# kind (kill -9 of a node / the leader / all, SIGSTOP of the leader, leader
# isolated, 1|2 partition, bridge, snapshot catch-up) over and over; then the
# checks: linearizability, eventual reads, indexes, lost writes, replicas, panics,
# 500 answers, watch streams.
#
# Usage: scripts/torture.sh [--minutes N] [torture run flags...]
#   --minutes N   load time (default 5); faults every 0.3-1.2 s, held 1-3 s
#   --seed S      replay a run's random choices
#   --faults a,b  only these kinds; --keep keeps the run directory when it passes
#   (all flags: target/release/torture run --help)
#
# Prints counts of operations (ok / fail / info by kind), faults injected by
# kind and anomalies by check; exits 1 on any anomaly, keeping the run's
# directory (node logs and data, history.jsonl, nemesis.jsonl, report.txt).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

args=("$@")
if [[ " ${args[*]-} " != *" --minutes "* ]]; then
    args=(--minutes 5 "${args[@]}")
fi

cargo build --release --bin quorumkv --bin torture >&2
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
exec "$TARGET/release/torture" run "${args[@]}"
