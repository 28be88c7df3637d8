#!/usr/bin/env bash
# What building a snapshot costs the writers and the memory, measured in one
# run on one cluster holding many keys: strong PUT latency at 1 and 64
# connections with no snapshot, and while the leader builds one, alternating
# each round; and the leader's peak RSS in each. The snapshot is asked for 2 s
# into the run as a backup (GET /v1/snapshot) read at 64 KiB/s, so that the
# run measures the build, not the transfer of the file; "snapshot s" is the
# time to the backup's first byte (the build).
#
# Usage: scripts/bench/snapshot.sh [--keys N] [--duration S] [--rounds N] [--out DIR]
#
#   --keys N      keys preloaded (default 1000000), 256-byte values
#   --duration S  seconds measured per run (default 20; 2 s of warm-up before)
#   --rounds N    rounds (default 2); the table shows medians
#   --out DIR     where results.md and the raw reports go
#                 (default docs/bench/<date>-snapshot)
#
# Nodes run with --snapshot-every 1000000000, so no snapshot is built but the
# one asked for; the preload's log stays whole. Targets (issue 11): during a
# snapshot, p99.9 at most 2x the run without, peak RSS under 1.5x steady.
# Environment: BENCH_BASE_PORT (default 17701). Everything it starts is
# stopped and deleted on exit, Ctrl-C included.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KEYS=1000000
DURATION=20
WARMUP=2
ROUNDS=2
OUT="$ROOT/docs/bench/$(date +%Y-%m-%d)-snapshot"
while (($# > 0)); do
    case "$1" in
    --keys) KEYS="${2:?}"; shift ;;
    --duration) DURATION="${2:?}"; shift ;;
    --rounds) ROUNDS="${2:?}"; shift ;;
    --out) OUT="${2:?}"; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) printf 'unknown argument %s\n' "$1" >&2; exit 2 ;;
    esac
    shift
done

# shellcheck source=scripts/bench/lib.sh
source "$ROOT/scripts/bench/lib.sh"
WORK="$(mktemp -d -t quorumkv-snapshot-bench.XXXXXX)"
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$OUT/raw" "$OUT/logs"
: >"$OUT/bench.log"
manifest_init

(cd "$ROOT" && cargo build --release --quiet -p quorumkv -p quorumkv-bench)
BENCH_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/quorumkv-bench"
export QKV_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/quorumkv"

# rss_kib PID: resident set of PID, in KiB.
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# sample_peak PID FILE: writes PID's peak RSS (KiB) to FILE every 100 ms until killed.
sample_peak() {
    local pid="$1" file="$2" peak=0 r
    while :; do
        r="$(rss_kib "$pid")"
        if ((r > peak)); then
            peak="$r"
            printf '%s\n' "$peak" >"$file"
        fi
        sleep 0.1
    done
}

qkv_up snapshot "${BENCH_BASE_PORT:-17701}" "--snapshot-every 1000000000"
leader="$(qkv_leader 20)" || die "no leader"
log "preloading $KEYS keys through node $leader"
RUN_TIMEOUT=3600 run_bench preload quorumkv put-strong leader 64 256 "$KEYS" \
    --endpoints "$(qkv_url "$leader")" --pin --preload --requests 1 --warmup 0 --timeout 30s ||
    die "preload failed"
pid="$(qkv_pid "$leader")"
log "leader RSS after preload: $(($(rss_kib "$pid") / 1024)) MiB"

printf 'round\tconns\tsnapshot\tp999_us\tp99_us\tops\tpeak_rss_kib\tsnapshot_s\n' >"$OUT/runs-snapshot.tsv"
for round in $(seq "$ROUNDS"); do
    for conns in 1 64; do
        for with in no yes; do
            leader="$(qkv_leader 20)" || die "no leader"
            pid="$(qkv_pid "$leader")"
            peak_file="$WORK/peak"
            printf '0\n' >"$peak_file"
            sample_peak "$pid" "$peak_file" &
            sampler=$!
            BG_PIDS+=("$sampler")
            snap_s="-"
            if [[ "$with" == yes ]]; then
                (
                    sleep $((WARMUP + 2))
                    curl -sS --max-time "$DURATION" --limit-rate 64k -o /dev/null \
                        -w '%{time_starttransfer}\n' "$(qkv_url "$leader")/v1/snapshot" \
                        >"$WORK/snap_s" 2>/dev/null || true
                ) &
                snapper=$!
                BG_PIDS+=("$snapper")
            fi
            run_bench "snap-$with-r$round" quorumkv put-strong leader "$conns" 256 "$KEYS" \
                --endpoints "$(qkv_url "$leader")" --pin || true
            if [[ "$with" == yes ]]; then
                wait "$snapper" || true
                snap_s="$(head -n 1 "$WORK/snap_s" 2>/dev/null || echo '?')"
                rm -f "$WORK/snap_s"
            fi
            kill "$sampler" 2>/dev/null || true
            wait "$sampler" 2>/dev/null || true
            body="$(cat "$OUT/raw/snap-$with-r$round.quorumkv.put-strong.leader.c$conns.v256.k$KEYS.json")"
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$conns" "$with" \
                "$(json_field "$body" p999)" "$(json_field "$body" p99)" \
                "$(json_field "$body" throughput)" "$(cat "$peak_file")" "$snap_s" \
                >>"$OUT/runs-snapshot.tsv"
            log "round $round c=$conns snapshot=$with: peak RSS $(($(cat "$peak_file") / 1024)) MiB, snapshot ${snap_s} s"
        done
    done
done
grep -h "built snapshot" "$QKV_DIR"/node*.log | tail -n 4 | sed 's/^/    /' | tee -a "$OUT/bench.log" || true

# Medians per (conns, snapshot) and the ratios.
awk -F'\t' 'NR > 1 {
        k = $2 "\t" $3; n[k]++
        p999[k, n[k]] = $4; p99[k, n[k]] = $5; ops[k, n[k]] = $6; rss[k, n[k]] = $7; s[k, n[k]] = $8
    }
    function med(a, k, c,   i, j, t, v) {
        for (i = 1; i <= c; i++) v[i] = a[k, i]
        for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
        return (c % 2) ? v[(c + 1) / 2] : (v[c / 2] + v[c / 2 + 1]) / 2
    }
    END {
        print "| connections | snapshot | ops/s | p99 ms | p99.9 ms | leader peak RSS MiB | snapshot s |"
        print "|---|---|---|---|---|---|---|"
        for (c = 1; c <= 64; c *= 64) for (w = 0; w < 2; w++) {
            k = c "\t" (w ? "yes" : "no")
            m[k, "p999"] = med(p999, k, n[k]); m[k, "rss"] = med(rss, k, n[k])
            printf "| %d | %s | %.0f | %.2f | %.2f | %.0f | %s |\n", c, (w ? "during one" : "none"),
                med(ops, k, n[k]), med(p99, k, n[k]) / 1000, m[k, "p999"] / 1000, m[k, "rss"] / 1024,
                (w ? med(s, k, n[k]) : "-")
        }
        print ""
        for (c = 1; c <= 64; c *= 64) {
            y = c "\tyes"; x = c "\tno"
            printf "- %d connection(s): p99.9 during a snapshot / without: %.2f; peak RSS during / without: %.2f\n",
                c, m[y, "p999"] / m[x, "p999"], m[y, "rss"] / m[x, "rss"]
        }
    }' "$OUT/runs-snapshot.tsv" >"$OUT/table.md"
{
    printf '# Snapshot cost: %s keys, %s rounds of %s s (%s)\n\n' "$KEYS" "$ROUNDS" "$DURATION" "$(git -C "$ROOT" rev-parse --short HEAD)"
    printf 'Command: `scripts/bench/snapshot.sh --keys %s --rounds %s --duration %s`\n\n' "$KEYS" "$ROUNDS" "$DURATION"
    cat "$OUT/table.md"
} >"$OUT/results.md"
rm -f "$OUT/table.md"
cat "$OUT/results.md"
