#!/usr/bin/env bash
# What watchers cost the writers, measured in one run on one cluster: strong
# PUT throughput with no watcher, with live watchers that read every change,
# and with one stalled watcher (connected, never reading) that the node must
# cut off, alternating the three each round.
#
# Usage: scripts/bench/watch.sh [--duration S] [--rounds N] [--watchers N] [--out FILE]
#
#   --duration S  seconds measured per run (default 8; 2 s of warm-up before)
#   --rounds N    rounds of the three runs (default 2); the table shows medians
#   --watchers N  live watchers in the second run (default 4)
#   --out FILE    also write the markdown table there
#
# Workload: strong PUT of 256-byte values over 10,000 keys, 64 connections,
# to the leader. The watchers watch every key (prefix ""), through a
# follower. The stalled watcher is `curl --limit-rate 1` (it reads nothing
# to speak of); nodes run with QKV_WATCH_MAX_LAG=500, so it is cut off
# within the run, and the script checks that the node logged it.
# Environment: WATCH_BASE_PORT (default 17601): clients on BASE..BASE+2.
# Everything it starts is stopped and deleted on exit, Ctrl-C included.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DURATION=8
ROUNDS=2
WATCHERS=4
OUT=""
while (($# > 0)); do
    case "$1" in
    --duration) DURATION="${2:?}"; shift ;;
    --rounds) ROUNDS="${2:?}"; shift ;;
    --watchers) WATCHERS="${2:?}"; shift ;;
    --out) OUT="${2:?}"; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) printf 'unknown argument %s\n' "$1" >&2; exit 2 ;;
    esac
    shift
done

WORK="$(mktemp -d -t quorumkv-watch-bench.XXXXXX)"
export QKV_CLUSTER_DIR="$WORK/cluster"
export QKV_BASE_PORT="${WATCH_BASE_PORT:-17601}"
export QKV_WATCH_MAX_LAG=500
CLUSTER="$ROOT/scripts/cluster.sh"
PIDS=()
stop_watchers() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}
cleanup() {
    stop_watchers
    "$CLUSTER" down --wipe >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

(cd "$ROOT" && cargo build --release --quiet -p quorumkv-bench --bin quorumkv-bench)
BENCH="${CARGO_TARGET_DIR:-$ROOT/target}/release/quorumkv-bench"

json_field() {
    local re="\"$2\"[[:space:]]*:[[:space:]]*(-?[0-9.]+)"
    [[ "$1" =~ $re ]] && printf '%s\n' "${BASH_REMATCH[1]}" || printf '?\n'
}
url() { printf 'http://127.0.0.1:%s\n' "$((QKV_BASE_PORT + $1 - 1))"; }
leader() {
    "$CLUSTER" status 2>/dev/null | sed -n 's/^node \([0-9]\).*state=Leader.*/\1/p' | head -n 1
}

"$CLUSTER" up >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; exit 1; }
l=""
for _ in $(seq 40); do
    a="$(leader)"; sleep 0.5; b="$(leader)"
    if [[ -n "$a" && "$a" == "$b" ]]; then l="$a"; break; fi
done
[[ -n "$l" ]] || { printf 'no stable leader within 20 s\n' >&2; exit 1; }
f=1
[[ "$l" == 1 ]] && f=2
"$BENCH" --json --endpoints "$(url "$l")" --connections 64 --keys 10000 --preload \
    --requests 1 --op put >/dev/null 2>>"$WORK/bench.stderr"

results="$WORK/results.tsv"
: >"$results"
cut_offs=0
for ((round = 1; round <= ROUNDS; round++)); do
    for mode in none live stalled; do
        case "$mode" in
        live)
            for ((w = 0; w < WATCHERS; w++)); do
                curl -sN "$(url "$f")/v1/watch?prefix=" >/dev/null 2>&1 &
                PIDS+=($!)
            done ;;
        stalled)
            curl -sN --limit-rate 1 "$(url "$f")/v1/watch?prefix=" >/dev/null 2>&1 &
            PIDS+=($!) ;;
        esac
        before="$(grep -c 'client too slow' "$QKV_CLUSTER_DIR/node$f.log" || true)"
        body="$("$BENCH" --json --endpoints "$(url "$l")" --pin --connections 64 \
            --duration "${DURATION}s" --warmup 2s --value-size 256 --keys 10000 --op put \
            --consistency strong 2>>"$WORK/bench.stderr")"
        after="$(grep -c 'client too slow' "$QKV_CLUSTER_DIR/node$f.log" || true)"
        stop_watchers
        tput="$(json_field "$body" throughput)"
        p99="$(json_field "$body" p99)"
        printf '%s\t%s\t%s\n' "$mode" "$tput" "$p99" >>"$results"
        printf 'round %s  %-8s %9.0f puts/s  p99 %6s us\n' "$round" "$mode" "$tput" "$p99"
        if [[ "$mode" == stalled ]]; then
            if ((after > before)); then
                cut_offs=$((cut_offs + 1))
            else
                printf '  (the stalled watcher was not cut off in this run)\n'
            fi
        fi
    done
done

table="$(awk -F'\t' '
    { n[$1]++; t[$1, n[$1]] = $2; q[$1, n[$1]] = $3 }
    function med(a, key, cnt,   i, j, v, tmp) {
        for (i = 1; i <= cnt; i++) v[i] = a[key, i] + 0
        for (i = 1; i <= cnt; i++) for (j = i + 1; j <= cnt; j++) if (v[j] < v[i]) { tmp = v[i]; v[i] = v[j]; v[j] = tmp }
        return cnt % 2 ? v[(cnt + 1) / 2] : (v[cnt / 2] + v[cnt / 2 + 1]) / 2
    }
    END {
        base = med(t, "none", n["none"])
        print "| watchers | puts/s | vs none | p99 (us) |"
        print "|---|---|---|---|"
        split("none live stalled", order, " ")
        for (i = 1; i <= 3; i++) {
            m = order[i]
            v = med(t, m, n[m])
            printf "| %s | %.0f | %.2f | %.0f |\n", m, v, (base > 0 ? v / base : 0), med(q, m, n[m])
        }
    }' "$results")"
printf '\nmedians of %s round(s), %s s each (live = %s watchers; stalled cut off in %s of %s rounds):\n\n%s\n' \
    "$ROUNDS" "$DURATION" "$WATCHERS" "$cut_offs" "$ROUNDS" "$table"
if [[ -n "$OUT" ]]; then
    printf '%s\n\nlive = %s watchers reading every change; stalled = one watcher never reading, cut off in %s of %s rounds\n' \
        "$table" "$WATCHERS" "$cut_offs" "$ROUNDS" >"$OUT"
fi
