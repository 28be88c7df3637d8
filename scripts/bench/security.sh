#!/usr/bin/env bash
# What TLS and client tokens cost, measured in one run: the same workloads
# against a plain `scripts/cluster.sh up` cluster and a `scripts/cluster.sh up
# --secure` one (HTTPS on the client port, mutual TLS between peers, a client
# token checked on every request), alternating plain and secure each round.
#
# Usage: scripts/bench/security.sh [--duration S] [--rounds N] [--out FILE]
#
#   --duration S  seconds measured per run (default 10; 2 s of warm-up before)
#   --rounds N    plain/secure pairs (default 2); the table shows medians
#   --out FILE    also write the markdown table there
#
# Workloads: strong PUT and strong GET (on the leader and via a follower for
# GET), 256-byte values over 10,000 preloaded keys, at 1 and 64 connections.
# Environment: SEC_BASE_PORT (default 17501): clients on BASE..BASE+2, peers +1000.
# Everything it starts is stopped and deleted on exit, Ctrl-C included.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DURATION=10
ROUNDS=2
OUT=""
while (($# > 0)); do
    case "$1" in
    --duration) DURATION="${2:?}"; shift ;;
    --rounds) ROUNDS="${2:?}"; shift ;;
    --out) OUT="${2:?}"; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) printf 'unknown argument %s\n' "$1" >&2; exit 2 ;;
    esac
    shift
done

WORK="$(mktemp -d -t quorumkv-security-bench.XXXXXX)"
export QKV_CLUSTER_DIR="$WORK/cluster"
export QKV_BASE_PORT="${SEC_BASE_PORT:-17501}"
CLUSTER="$ROOT/scripts/cluster.sh"
cleanup() {
    local rc=$?
    "$CLUSTER" down --wipe >/dev/null 2>&1 || true
    if ((rc != 0)) && [[ -s "$WORK/bench.stderr" ]]; then
        printf '\nbench stderr (last lines):\n' >&2
        tail -n 20 "$WORK/bench.stderr" >&2
    fi
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

# URL of node $1 in the cluster that runs now.
url() {
    local scheme=http
    [[ -f "$QKV_CLUSTER_DIR/tls/ca.crt" ]] && scheme=https
    printf '%s://127.0.0.1:%s\n' "$scheme" "$((QKV_BASE_PORT + $1 - 1))"
}

leader() {
    local status
    status="$("$CLUSTER" status || true)"
    sed -n 's/^node \([0-9]\).*state=Leader.*/\1/p' <<<"$status" | head -n 1
}

results="$WORK/results.tsv"
: >"$results"

run() {
    local mode="$1" name="$2" conns="$3" ep="$4"
    shift 4
    local -a sec=()
    if [[ "$mode" == secure ]]; then
        sec=(--cacert "$QKV_CLUSTER_DIR/tls/ca.crt" --token-file "$QKV_CLUSTER_DIR/admin-token")
    fi
    local body
    body="$("$BENCH" --json --endpoints "$ep" --pin --connections "$conns" --duration "${DURATION}s" \
        --warmup 2s --value-size 256 --keys 10000 "${sec[@]}" "$@" 2>>"$WORK/bench.stderr")"
    local tput p50 p99
    tput="$(json_field "$body" throughput)"
    p50="$(json_field "$body" p50)"
    p99="$(json_field "$body" p99)"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$name" "$conns" "$tput" "$p50" "$p99" >>"$results"
    printf '%-7s %-22s c=%-3s %9.0f ops/s  p50 %6s us  p99 %6s us\n' "$mode" "$name" "$conns" "$tput" "$p50" "$p99"
}

# Writes the 10,000 keys the reads then find.
preload() {
    local -a sec=()
    if [[ "$1" == secure ]]; then
        sec=(--cacert "$QKV_CLUSTER_DIR/tls/ca.crt" --token-file "$QKV_CLUSTER_DIR/admin-token")
    fi
    "$BENCH" --json --endpoints "$2" --connections 64 --value-size 256 --keys 10000 \
        --preload --requests 1 --op put "${sec[@]}" >/dev/null 2>>"$WORK/bench.stderr"
}

for ((round = 1; round <= ROUNDS; round++)); do
    for mode in plain secure; do
        printf '\n== round %s: %s cluster\n' "$round" "$mode"
        if [[ "$mode" == secure ]]; then
            "$CLUSTER" up --secure >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; exit 1; }
        else
            "$CLUSTER" up >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; exit 1; }
        fi
        # The same leader twice, half a second apart (the first elections may
        # still be settling right after `up`).
        l=""
        for _ in $(seq 40); do
            a="$(leader)"
            sleep 0.5
            b="$(leader)"
            if [[ -n "$a" && "$a" == "$b" ]]; then
                l="$a"
                break
            fi
        done
        [[ -n "$l" ]] || { printf 'no stable leader within 20 s\n' >&2; exit 1; }
        f=1
        [[ "$l" == 1 ]] && f=2
        preload "$mode" "$(url "$l")"
        for c in 1 64; do
            run "$mode" "put strong (leader)" "$c" "$(url "$l")" --op put --consistency strong
            run "$mode" "get strong (leader)" "$c" "$(url "$l")" --op get --consistency strong
            run "$mode" "get strong (follower)" "$c" "$(url "$f")" --op get --consistency strong
        done
        "$CLUSTER" down --wipe >/dev/null
    done
done

table="$(awk -F'\t' '
    {
        k = $2 "\t" $3
        n[$1 "\t" k]++
        t[$1 "\t" k, n[$1 "\t" k]] = $4; p[$1 "\t" k, n[$1 "\t" k]] = $5; q[$1 "\t" k, n[$1 "\t" k]] = $6
        if (!(k in seen)) { seen[k] = 1; order[++m] = k }
    }
    function med(a, key, cnt,   i, j, v, tmp) {
        for (i = 1; i <= cnt; i++) v[i] = a[key, i] + 0
        for (i = 1; i <= cnt; i++) for (j = i + 1; j <= cnt; j++) if (v[j] < v[i]) { tmp = v[i]; v[i] = v[j]; v[j] = tmp }
        return cnt % 2 ? v[(cnt + 1) / 2] : (v[cnt / 2] + v[cnt / 2 + 1]) / 2
    }
    END {
        print "| workload | conns | plain ops/s | secure ops/s | secure/plain | plain p50 / p99 (us) | secure p50 / p99 (us) |"
        print "|---|---|---|---|---|---|---|"
        for (i = 1; i <= m; i++) {
            k = order[i]; split(k, parts, "\t")
            a = "plain\t" k; b = "secure\t" k
            tp = med(t, a, n[a]); ts = med(t, b, n[b])
            printf "| %s | %s | %.0f | %.0f | %.2f | %.0f / %.0f | %.0f / %.0f |\n", parts[1], parts[2], tp, ts, (tp > 0 ? ts / tp : 0), med(p, a, n[a]), med(q, a, n[a]), med(p, b, n[b]), med(q, b, n[b])
        }
    }' "$results")"
printf '\nmedians of %s round(s), %s s each:\n\n%s\n' "$ROUNDS" "$DURATION" "$table"
if [[ -n "$OUT" ]]; then
    printf '%s\n' "$table" >"$OUT"
fi
