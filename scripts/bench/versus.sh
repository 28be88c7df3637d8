#!/usr/bin/env bash
# The same workloads against the working tree's build and an older commit's,
# alternating in one run: what a change cost or gained, as a ratio measured
# on the same machine at the same time.
#
# Usage: scripts/bench/versus.sh REV [--duration S] [--rounds N] [--out FILE]
#                                    [--conns "1 64"] [--ops "put:strong get:eventual"]
#
#   REV           the commit to compare with (built in a temporary git
#                 worktree with its own target dir: a full release build)
#   --duration S  seconds measured per run (default 8; 2 s of warm-up before)
#   --rounds N    old/new pairs (default 3); the table shows medians
#   --out FILE    also write the markdown table there
#   --conns LIST  connection counts (default 64)
#   --ops LIST    op:consistency pairs (default "put:strong get:strong")
#
# Workloads: the ops on the leader, 256-byte values over 10,000 preloaded
# keys, at each connection count. Each side's own scripts/cluster.sh
# starts its three nodes. Environment: VS_BASE_PORT (default 17701).
# Everything it starts is stopped and deleted on exit, Ctrl-C included.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
REV="${1:?usage: versus.sh REV [--duration S] [--rounds N] [--out FILE]}"
shift
DURATION=8
ROUNDS=3
OUT=""
CONNS="64"
OPS="put:strong get:strong"
while (($# > 0)); do
    case "$1" in
    --duration) DURATION="${2:?}"; shift ;;
    --rounds) ROUNDS="${2:?}"; shift ;;
    --out) OUT="${2:?}"; shift ;;
    --conns) CONNS="${2:?}"; shift ;;
    --ops) OPS="${2:?}"; shift ;;
    *) printf 'unknown argument %s\n' "$1" >&2; exit 2 ;;
    esac
    shift
done

WORK="$(mktemp -d -t quorumkv-versus.XXXXXX)"
export QKV_CLUSTER_DIR="$WORK/cluster"
export QKV_BASE_PORT="${VS_BASE_PORT:-17701}"
OLD="$WORK/old"
cleanup() {
    "$ROOT/scripts/cluster.sh" down --wipe >/dev/null 2>&1 || true
    [[ -x "$OLD/scripts/cluster.sh" ]] && CARGO_TARGET_DIR="$WORK/old-target" \
        "$OLD/scripts/cluster.sh" down --wipe >/dev/null 2>&1 || true
    git -C "$ROOT" worktree remove --force "$OLD" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

git -C "$ROOT" worktree add --detach "$OLD" "$REV" >/dev/null
printf 'building %s (release, in %s)...\n' "$REV" "$WORK/old-target"
(cd "$OLD" && CARGO_TARGET_DIR="$WORK/old-target" cargo build --release --quiet -p quorumkv --bin quorumkv)
(cd "$ROOT" && cargo build --release --quiet -p quorumkv --bin quorumkv -p quorumkv-bench --bin quorumkv-bench)
BENCH="${CARGO_TARGET_DIR:-$ROOT/target}/release/quorumkv-bench"

json_field() {
    local re="\"$2\"[[:space:]]*:[[:space:]]*(-?[0-9.]+)"
    [[ "$1" =~ $re ]] && printf '%s\n' "${BASH_REMATCH[1]}" || printf '?\n'
}
url() { printf 'http://127.0.0.1:%s\n' "$((QKV_BASE_PORT + $1 - 1))"; }

# Runs cluster.sh of side $1 (old or new) with the rest as arguments.
cluster() {
    local side="$1"
    shift
    if [[ "$side" == old ]]; then
        CARGO_TARGET_DIR="$WORK/old-target" "$OLD/scripts/cluster.sh" "$@"
    else
        "$ROOT/scripts/cluster.sh" "$@"
    fi
}

results="$WORK/results.tsv"
: >"$results"
for ((round = 1; round <= ROUNDS; round++)); do
    for side in old new; do
        cluster "$side" up >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; exit 1; }
        l=""
        for _ in $(seq 40); do
            a="$(cluster "$side" status 2>/dev/null | sed -n 's/^node \([0-9]\).*state=Leader.*/\1/p' | head -n 1)"
            sleep 0.5
            b="$(cluster "$side" status 2>/dev/null | sed -n 's/^node \([0-9]\).*state=Leader.*/\1/p' | head -n 1)"
            if [[ -n "$a" && "$a" == "$b" ]]; then l="$a"; break; fi
        done
        [[ -n "$l" ]] || { printf 'no stable leader within 20 s\n' >&2; exit 1; }
        "$BENCH" --json --endpoints "$(url "$l")" --connections 64 --keys 10000 --preload \
            --requests 1 --op put >/dev/null 2>>"$WORK/bench.stderr"
        for c in $CONNS; do
            for pair in $OPS; do
                op="${pair%%:*}" level="${pair#*:}"
                body="$("$BENCH" --json --endpoints "$(url "$l")" --pin --connections "$c" \
                    --duration "${DURATION}s" --warmup 2s --value-size 256 --keys 10000 --op "$op" \
                    --consistency "$level" 2>>"$WORK/bench.stderr")"
                tput="$(json_field "$body" throughput)"
                p50="$(json_field "$body" p50)"
                p99="$(json_field "$body" p99)"
                k="$op $level, $c conn"
                printf '%s\t%s\t%s\t%s\t%s\n' "$side" "$k" "$tput" "$p99" "$p50" >>"$results"
                printf 'round %s  %-4s %-22s %9.0f ops/s  p50 %6s us  p99 %6s us\n' "$round" "$side" "$k" "$tput" "$p50" "$p99"
            done
        done
        cluster "$side" down --wipe >/dev/null
    done
done

table="$(awk -F'\t' -v rev="$REV" '
    { k = $2; n[$1, k]++; t[$1, k, n[$1, k]] = $3; q[$1, k, n[$1, k]] = $4; h[$1, k, n[$1, k]] = $5; if (!(k in seen)) { seen[k] = 1; order[++m] = k } }
    function med(a, s, k, cnt,   i, j, v, tmp) {
        for (i = 1; i <= cnt; i++) v[i] = a[s, k, i] + 0
        for (i = 1; i <= cnt; i++) for (j = i + 1; j <= cnt; j++) if (v[j] < v[i]) { tmp = v[i]; v[i] = v[j]; v[j] = tmp }
        return cnt % 2 ? v[(cnt + 1) / 2] : (v[cnt / 2] + v[cnt / 2 + 1]) / 2
    }
    END {
        print "| workload | " rev " ops/s | this tree ops/s | new/old | old p50 / new p50 (us) | old p99 / new p99 (us) |"
        print "|---|---|---|---|---|---|"
        for (i = 1; i <= m; i++) {
            k = order[i]
            o = med(t, "old", k, n["old", k]); w = med(t, "new", k, n["new", k])
            printf "| %s | %.0f | %.0f | %.2f | %.0f / %.0f | %.0f / %.0f |\n", k, o, w, (o > 0 ? w / o : 0), med(h, "old", k, n["old", k]), med(h, "new", k, n["new", k]), med(q, "old", k, n["old", k]), med(q, "new", k, n["new", k])
        }
    }' "$results")"
printf '\nmedians of %s round(s), %s s each:\n\n%s\n' "$ROUNDS" "$DURATION" "$table"
[[ -z "$OUT" ]] || printf '%s\n' "$table" >"$OUT"
