#!/usr/bin/env bash
# Benchmark quorumkv against etcd on this machine, and measure its trade-offs.
#
# Usage: scripts/bench.sh [--quick] [--out DIR] [--tradeoffs [--only PARTS] | --all] [--no-etcd]
#                         [--duration S] [--warmup S]
#
#   (default)     the comparison matrix: a fresh 3-node quorumkv cluster, then a
#                 fresh 3-member etcd cluster (default durability), one at a time;
#                 256-byte values, 10k preloaded keys; writes and reads at every
#                 consistency level at 1, 16 and 64 connections
#   --tradeoffs   instead, the trade-off measurements (quorumkv only): staleness,
#                 loss window, cost vs value size and key count, memory and disk,
#                 restart and snapshot install
#   --only PARTS  with --tradeoffs: a comma-separated subset of
#                 staleness,loss,value-size,key-count
#   --all         the matrix, then the trade-offs
#   --quick       a short subset (~2 minutes for the matrix, ~4 for the trade-offs)
#   --out DIR     results directory (default bench-results/<timestamp>/)
#   --no-etcd     skip the etcd half of the matrix
#   --duration S, --warmup S   seconds measured / warmed up per run (default 10 / 2;
#                 --quick 2 / 1)
#
# Output in DIR: raw/*.json (one `quorumkv-bench --json` per run), runs.tsv (what
# each one was), summary.md (matrix: quorumkv beside etcd, ratios, targets),
# tradeoffs.md, *.svg plots, machine.txt, bench.log, logs/ (node, etcd, bench stderr).
#
# Environment: BENCH_BASE_PORT (default 18100): quorumkv on BASE+1..3 (matrix) and
# BASE+11..13 (trade-offs), etcd clients on BASE+21..23, peers on BASE+31..33.
# BENCH_NOTE: a line added to machine.txt (e.g. "noisy: other jobs running").
# Trade-off sizes: BENCH_KEY_COUNTS ("10000 100000 1000000"), BENCH_PRELOAD_BUDGET
# (seconds per key count, 900), BENCH_VALUE_SIZES ("64 256 1024 4096 16384 65536"),
# BENCH_LOSS_KILLS (5). BENCH_NODE_ARGS: extra `quorumkv serve` flags for every
# cluster (default none: the defaults are what is measured); BENCH_KEYS_NODE_ARGS:
# extra flags for the key-count cluster only (e.g. "--snapshot-every 2000" to see
# a wiped follower catch up by snapshot at small key counts).
#
# Everything it starts (nodes, etcd members, writers) is stopped and its data
# deleted on exit, Ctrl-C included.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROG="scripts/bench.sh"

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit "${1:-2}"
}

QUICK=0
MODE=matrix
WITH_ETCD=1
OUT=""
DURATION=""
WARMUP=""
ONLY=""
while (($# > 0)); do
    case "$1" in
    --quick) QUICK=1 ;;
    --tradeoffs) MODE=tradeoffs ;;
    --all) MODE=all ;;
    --no-etcd) WITH_ETCD=0 ;;
    --out)
        [[ $# -ge 2 ]] || usage
        OUT="$2"
        shift
        ;;
    --only)
        [[ $# -ge 2 ]] || usage
        ONLY="$2"
        shift
        ;;
    --duration)
        [[ $# -ge 2 && "$2" =~ ^[0-9]+(\.[0-9]+)?$ ]] || usage
        DURATION="$2"
        shift
        ;;
    --warmup)
        [[ $# -ge 2 && "$2" =~ ^[0-9]+(\.[0-9]+)?$ ]] || usage
        WARMUP="$2"
        shift
        ;;
    -h | --help) usage 0 ;;
    *)
        printf '%s: unknown argument %s\n\n' "$PROG" "$1" >&2
        usage
        ;;
    esac
    shift
done
if [[ -n "$ONLY" && "$MODE" == matrix ]]; then
    printf '%s: --only needs --tradeoffs or --all\n' "$PROG" >&2
    exit 2
fi

if ((QUICK)); then
    DURATION="${DURATION:-2}"
    WARMUP="${WARMUP:-1}"
    CONNS=(1 16 64)
    STALENESS_CONNS=(16)
    LOSS_KILLS="${BENCH_LOSS_KILLS:-2}"
    LOSS_STEADY=1.5
    read -r -a VALUE_SIZES <<<"${BENCH_VALUE_SIZES:-64 4096 65536}"
    read -r -a KEY_COUNTS <<<"${BENCH_KEY_COUNTS:-10000 50000}"
    PRELOAD_BUDGET="${BENCH_PRELOAD_BUDGET:-120}"
else
    DURATION="${DURATION:-10}"
    WARMUP="${WARMUP:-2}"
    CONNS=(1 16 64)
    STALENESS_CONNS=(16 64)
    LOSS_KILLS="${BENCH_LOSS_KILLS:-5}"
    LOSS_STEADY=3
    read -r -a VALUE_SIZES <<<"${BENCH_VALUE_SIZES:-64 256 1024 4096 16384 65536}"
    read -r -a KEY_COUNTS <<<"${BENCH_KEY_COUNTS:-10000 100000 1000000}"
    PRELOAD_BUDGET="${BENCH_PRELOAD_BUDGET:-900}"
fi
VALUE_KEYS=1000 # key space of the value-size sweep: 1000 x 64 KiB = 64 MiB per copy
COST_CONNS=16
RECOVERY_DEADLINE=600

BASE="${BENCH_BASE_PORT:-18100}"
if ! [[ "$BASE" =~ ^[0-9]+$ ]] || ((BASE < 1024 || BASE > 65000)); then
    printf '%s: BENCH_BASE_PORT must be a port number from 1024 to 65000\n' "$PROG" >&2
    exit 2
fi
BASE_PORT=$((BASE + 1))
TRADE_PORT=$((BASE + 11))
ETCD_CLIENT_BASE=$((BASE + 21))
ETCD_PEER_BASE=$((BASE + 31))

PARTS=()
if [[ "$MODE" != matrix ]]; then
    IFS=',' read -r -a PARTS <<<"${ONLY:-staleness,loss,value-size,key-count}"
    for part in "${PARTS[@]}"; do
        case "$part" in
        staleness | loss | value-size | key-count) ;;
        *)
            printf '%s: unknown trade-off %s (known: staleness, loss, value-size, key-count)\n' "$PROG" "'$part'" >&2
            exit 2
            ;;
        esac
    done
fi

OUT="${OUT:-$ROOT/bench-results/$(date '+%Y%m%d-%H%M%S')}"
mkdir -p "$OUT/raw" "$OUT/logs"
OUT="$(cd "$OUT" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/qkv-bench.XXXXXX")"

# shellcheck source=scripts/bench/lib.sh
source "$ROOT/scripts/bench/lib.sh"
# shellcheck source=scripts/bench/matrix.sh
source "$ROOT/scripts/bench/matrix.sh"
# shellcheck source=scripts/bench/tradeoffs.sh
source "$ROOT/scripts/bench/tradeoffs.sh"

trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

command -v curl >/dev/null 2>&1 || die "curl is required (apt-get install curl)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ "$TARGET_DIR" == /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
BENCH_BIN="$TARGET_DIR/release/quorumkv-bench"
LOSS_BIN="$TARGET_DIR/release/benchloss"
PLOT_BIN="$TARGET_DIR/release/benchplot"

log "$PROG: mode $MODE$( ((QUICK)) && echo ' (quick)'); results in $OUT"
log "cargo build --release --bins"
(cd "$ROOT" && cargo build --release --bins --quiet) >>"$OUT/logs/build.log" 2>&1 ||
    { tail -n 30 "$OUT/logs/build.log"; die "cargo build --release failed"; }

manifest_init
describe_machine
log "machine: $(sed -n 2p "$OUT/machine.txt" | sed 's/^machine: *//'); fsync $(cat "$OUT/fsync.txt")"

case "$MODE" in
matrix) matrix ;;
tradeoffs) tradeoffs ;;
all)
    matrix
    tradeoffs
    ;;
esac

log "writing tables and plots"
"$PLOT_BIN" "$OUT" >>"$OUT/bench.log" 2>&1 || warn "benchplot failed (see $OUT/bench.log)"
for f in summary.md tradeoffs.md; do
    [[ -f "$OUT/$f" ]] && log "  $OUT/$f"
done
if [[ -f "$OUT/summary.md" ]]; then
    sed -n '/^| quorumkv | etcd/,/^$/p' "$OUT/summary.md"
    sed -n '/^## Targets/,/^## /p' "$OUT/summary.md" | sed '$d'
fi
log "done"
