# shellcheck shell=bash
# Helpers for scripts/bench.sh: logging, the bench runner and manifest, quorumkv
# and etcd clusters on loopback, cleanup. Sourced, not run.
#
# Expects from bench.sh: ROOT, OUT, WORK (temp root for data), BIN, BASE_PORT,
# DURATION, WARMUP. Every wait has a deadline; every process started here is
# recorded and stopped by cleanup().

# ------------------------------------------------------------------ output

log() {
    local line
    line="$(date '+%H:%M:%S') $*"
    printf '%s\n' "$line"
    printf '%s\n' "$line" >>"$OUT/bench.log"
}

warn() { log "WARNING: $*"; }

die() {
    log "ERROR: $*"
    exit 1
}

# Scalar JSON field (first occurrence) from a one-line JSON document.
json_field() {
    local json="$1" name="$2" re
    re="\"$name\"[[:space:]]*:[[:space:]]*(\"[^\"]*\"|-?[0-9.]+|null|true|false)"
    if [[ "$json" =~ $re ]]; then
        local v="${BASH_REMATCH[1]}"
        v="${v#\"}"
        printf '%s\n' "${v%\"}"
    fi
}

# Milliseconds since the epoch (for timing recoveries).
now_ms() { date +%s%3N; }

# Seconds with 2 decimals between two now_ms values.
secs_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 1000 }'; }

http_get() { curl -fsS --connect-timeout 1 --max-time "${2:-2}" "$1" 2>/dev/null; }

# True if something listens on 127.0.0.1:$1.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

require_free_ports() {
    local p
    for p in "$@"; do
        if port_busy "$p"; then
            die "port $p on 127.0.0.1 is in use; set BENCH_BASE_PORT to another range"
        fi
    done
}

# ------------------------------------------------------------------ bench runs

# runs.tsv names every report; its header must match benchplot's runs::MANIFEST_HEADER.
manifest_init() {
    [[ -f "$OUT/runs.tsv" ]] ||
        printf 'group\tstore\tworkload\tplacement\tconnections\tvalue_size\tkeys\tfile\n' >"$OUT/runs.tsv"
}

# Seconds a bench run may take before it is killed: measure + warmup + slack.
bench_timeout() {
    awk -v d="$DURATION" -v w="$WARMUP" 'BEGIN { printf "%d", d + w + 120 }'
}

# run_bench GROUP STORE WORKLOAD PLACEMENT CONNS VALUE_SIZE KEYS [bench flags...]
# Runs `quorumkv-bench --json`, stores raw/<name>.json, adds a manifest line and
# prints one summary line. A failed run is recorded (benchplot shows a blank)
# and returns 1, but does not stop the script.
run_bench() {
    local group="$1" store="$2" workload="$3" placement="$4" conns="$5" vsize="$6" keys="$7"
    shift 7
    local name="$group.$store.$workload.$placement.c$conns.v$vsize.k$keys"
    local json="raw/$name.json" err="logs/$name.stderr" rc=0
    # Defaults that the caller's flags may replace (clap refuses a flag twice).
    local -a flags=(--json --connections "$conns" --value-size "$vsize" --keys "$keys")
    [[ "$store" == etcd ]] && flags+=(--target etcd)
    [[ " $* " == *" --requests "* ]] || flags+=(--duration "$DURATION")
    [[ " $* " == *" --warmup "* ]] || flags+=(--warmup "$WARMUP")
    local t0
    t0="$(now_ms)"
    timeout --foreground --kill-after=10 "${RUN_TIMEOUT:-$(bench_timeout)}" \
        "$BENCH_BIN" "${flags[@]}" "$@" \
        >"$OUT/$json" 2>"$OUT/$err" </dev/null || rc=$?
    if [[ "$group" != preload ]]; then
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$group" "$store" "$workload" "$placement" \
            "$conns" "$vsize" "$keys" "$json" >>"$OUT/runs.tsv"
    fi
    local body
    body="$(cat "$OUT/$json" 2>/dev/null || true)"
    if ((rc != 0)) || [[ -z "$body" ]]; then
        warn "$name: bench exited $rc; see $OUT/$err"
        sed 's/^/    /' "$OUT/$err" | tail -n 5
        return 1
    fi
    if [[ "$group" == preload ]]; then
        log "$(printf 'preload    %-8s %s keys of %s bytes in %s s; keys not written: %s' \
            "$store" "$keys" "$vsize" "$(secs_between "$t0" "$(now_ms)")" "$(json_field "$body" preload_failed)")"
        return 0
    fi
    local tput p50 p99 errs
    tput="$(json_field "$body" throughput)"
    p50="$(json_field "$body" p50)"
    p99="$(json_field "$body" p99)"
    errs="$(json_field "$body" total)"
    log "$(printf '%-10s %-8s %-17s %-9s c=%-3s %9s ops/s  p50 %7s us  p99 %7s us  errors %s' \
        "$group" "$store" "$workload" "$placement" "$conns" "${tput:-?}" "${p50:-?}" "${p99:-?}" "${errs:-?}")"
    if grep -q '^WARNING' "$OUT/$err"; then
        grep '^WARNING' "$OUT/$err" | sed 's/^/    /' | tee -a "$OUT/bench.log"
    fi
    return 0
}

# ------------------------------------------------------------------ quorumkv

QKV_DIR=""  # data root of the running quorumkv cluster ("" = none)
QKV_PORT="" # its first port
QKV_ARGS="" # extra `serve` flags of its nodes (BENCH_NODE_ARGS and per-cluster ones)

cluster_sh() {
    QKV_CLUSTER_DIR="$QKV_DIR" QKV_BASE_PORT="$QKV_PORT" QKV_NODE_ARGS="$QKV_ARGS" \
        "$ROOT/scripts/cluster.sh" "$@"
}

qkv_url() { printf 'http://127.0.0.1:%s\n' "$((QKV_PORT + $1 - 1))"; }

qkv_pid() {
    local pid=""
    read -r pid <"$QKV_DIR/node$1.pid" 2>/dev/null || true
    printf '%s\n' "$pid"
}

# qkv_up NAME PORT [FLAGS]: a fresh 3-node cluster; its nodes get BENCH_NODE_ARGS
# and FLAGS on top of the defaults (the caller's QKV_NODE_ARGS is not used).
qkv_up() {
    [[ -z "$QKV_DIR" ]] || die "a quorumkv cluster is already running ($QKV_DIR)"
    QKV_DIR="$WORK/qkv-$1"
    QKV_PORT="$2"
    QKV_ARGS="${BENCH_NODE_ARGS:-}${3:+ $3}"
    require_free_ports "$QKV_PORT" "$((QKV_PORT + 1))" "$((QKV_PORT + 2))"
    log "quorumkv: starting 3 nodes on 127.0.0.1:$QKV_PORT-$((QKV_PORT + 2)), data in $QKV_DIR${QKV_ARGS:+, flags: $QKV_ARGS}"
    if ! QKV_UP_TIMEOUT=30 cluster_sh up >>"$OUT/logs/cluster-$1.log" 2>&1; then
        tail -n 20 "$OUT/logs/cluster-$1.log"
        die "quorumkv cluster did not come up (see $OUT/logs/cluster-$1.log)"
    fi
    local id
    for id in 1 2 3; do
        qkv_wait_ready "$id" 30 || die "quorumkv node $id not ready within 30 s"
    done
}

# Stops the cluster, keeps its node logs in OUT/logs, deletes its data.
qkv_down() {
    [[ -n "$QKV_DIR" ]] || return 0
    local name="${QKV_DIR##*/}" id
    cluster_sh down >>"$OUT/logs/$name.log" 2>&1 || true
    for id in 1 2 3; do
        if [[ -f "$QKV_DIR/node$id.log" ]]; then
            cp "$QKV_DIR/node$id.log" "$OUT/logs/$name-node$id.log" || true
        fi
    done
    rm -rf "$QKV_DIR"
    QKV_DIR=""
    log "quorumkv: cluster stopped, data deleted"
}

qkv_ready() { http_get "$(qkv_url "$1")/ready" 1 >/dev/null; }

qkv_wait_ready() {
    local id="$1" deadline=$((SECONDS + $2))
    while ((SECONDS < deadline)); do
        qkv_ready "$id" && return 0
        sleep 0.1
    done
    return 1
}

# Leader id: a node that reports itself Leader. Waits up to $1 seconds (default 10).
qkv_leader() {
    local deadline=$((SECONDS + ${1:-10})) id body
    while ((SECONDS < deadline)); do
        for id in 1 2 3; do
            body="$(http_get "$(qkv_url "$id")/v1/cluster" 1)" || continue
            if [[ "$(json_field "$body" state)" == Leader ]]; then
                printf '%s\n' "$id"
                return 0
            fi
        done
        sleep 0.1
    done
    return 1
}

qkv_followers() {
    local id
    for id in 1 2 3; do
        [[ "$id" == "$1" ]] || printf '%s\n' "$id"
    done
}

# Field of node $1's /v1/cluster, empty if unreachable.
qkv_cluster_field() {
    local body
    body="$(http_get "$(qkv_url "$1")/v1/cluster" 1)" || return 0
    json_field "$body" "$2"
}

# Waits until node $1 is ready and has applied index $2; up to $3 seconds.
# Returns 2 at once if the node's log shows a panic after byte offset $4.
qkv_wait_applied() {
    local id="$1" want="$2" deadline=$((SECONDS + $3)) offset="${4:-0}" applied
    while ((SECONDS < deadline)); do
        applied="$(qkv_cluster_field "$id" applied_index)"
        if [[ "$applied" =~ ^[0-9]+$ ]] && ((applied >= want)) && qkv_ready "$id"; then
            return 0
        fi
        if tail -c "+$((offset + 1))" "$QKV_DIR/node$id.log" 2>/dev/null | grep -q 'panicked at'; then
            return 2
        fi
        sleep 0.05
    done
    return 1
}

# ------------------------------------------------------------------ etcd

ETCD_PIDS=()
ETCD_DIR=""
ETCD_CLIENT_PORT="" # member i (1..3) serves clients on ETCD_CLIENT_PORT+i-1
ETCD_PEER_PORT=""

etcd_url() { printf 'http://127.0.0.1:%s\n' "$((ETCD_CLIENT_PORT + $1 - 1))"; }

# True if etcd is (or could be made) available; installs Debian's etcd-server as root.
etcd_available() {
    command -v etcd >/dev/null 2>&1 && return 0
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "etcd: not found; installing Debian's etcd-server (apt-get)"
        if ! { apt-get install -y -q etcd-server || { apt-get update -q && apt-get install -y -q etcd-server; }; } \
            >>"$OUT/logs/apt-get.log" 2>&1; then
            warn "apt-get install etcd-server failed (see $OUT/logs/apt-get.log)"
        fi
    fi
    command -v etcd >/dev/null 2>&1
}

# etcd_up CLIENT_PORT PEER_PORT: a fresh 3-member cluster, default durability.
etcd_up() {
    ETCD_CLIENT_PORT="$1"
    ETCD_PEER_PORT="$2"
    ETCD_DIR="$WORK/etcd"
    require_free_ports "$1" "$(($1 + 1))" "$(($1 + 2))" "$2" "$(($2 + 1))" "$(($2 + 2))"
    local i cluster="" token="qkv-bench-$$-$RANDOM"
    for i in 1 2 3; do
        cluster+="${cluster:+,}e$i=http://127.0.0.1:$((ETCD_PEER_PORT + i - 1))"
    done
    log "etcd $(etcd --version 2>/dev/null | head -n 1 | awk '{print $3}'): starting 3 members, clients on 127.0.0.1:$1-$(($1 + 2)), data in $ETCD_DIR"
    mkdir -p "$ETCD_DIR"
    for i in 1 2 3; do
        local c="http://127.0.0.1:$((ETCD_CLIENT_PORT + i - 1))" p="http://127.0.0.1:$((ETCD_PEER_PORT + i - 1))"
        setsid etcd --name "e$i" --data-dir "$ETCD_DIR/e$i" \
            --listen-client-urls "$c" --advertise-client-urls "$c" \
            --listen-peer-urls "$p" --initial-advertise-peer-urls "$p" \
            --initial-cluster "$cluster" --initial-cluster-token "$token" \
            --initial-cluster-state new \
            </dev/null >"$OUT/logs/etcd-e$i.log" 2>&1 &
        ETCD_PIDS+=("$!")
    done
    local deadline=$((SECONDS + 30))
    for i in 1 2 3; do
        until http_get "$(etcd_url "$i")/health" 1 | grep -q '"health":"true"'; do
            ((SECONDS < deadline)) || die "etcd member $i not healthy within 30 s (see $OUT/logs/etcd-e$i.log)"
            sleep 0.2
        done
    done
    etcd_leader >/dev/null || die "etcd elected no leader within 10 s"
}

# Member number (1..3) of the etcd leader, by /v3/maintenance/status.
etcd_leader() {
    local deadline=$((SECONDS + 10)) i body
    while ((SECONDS < deadline)); do
        for i in 1 2 3; do
            body="$(curl -fsS --max-time 2 -X POST -d '{}' "$(etcd_url "$i")/v3/maintenance/status" 2>/dev/null)" || continue
            local me leader
            me="$(json_field "$body" member_id)"
            leader="$(json_field "$body" leader)"
            if [[ -n "$me" && "$me" == "$leader" ]]; then
                printf '%s\n' "$i"
                return 0
            fi
        done
        sleep 0.2
    done
    return 1
}

etcd_down() {
    ((${#ETCD_PIDS[@]} > 0)) || return 0
    local pid deadline=$((SECONDS + 10))
    for pid in "${ETCD_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${ETCD_PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    ETCD_PIDS=()
    rm -rf "$ETCD_DIR"
    log "etcd: members stopped, data deleted"
}

# ------------------------------------------------------------------ cleanup

BG_PIDS=() # other background processes (benchloss writers)

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid
    for pid in "${BG_PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    qkv_down || true
    etcd_down || true
    [[ -n "${WORK:-}" && -d "$WORK" ]] && rm -rf "$WORK"
    exit "$rc"
}

# ------------------------------------------------------------------ machine

# machine.txt (what ran where) and fsync.txt (the disk's synchronous write time).
describe_machine() {
    local rev cpu mem disk fsync
    rev="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    if [[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
        rev+=" (with uncommitted changes)"
    fi
    cpu="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)"
    mem="$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null)"
    disk="$(df -hT "$WORK" 2>/dev/null | awk 'NR == 2 { print $1 " (" $2 ", " $3 ")" }')"
    fsync="$(fsync_probe)"
    printf '%s\n' "$fsync" >"$OUT/fsync.txt"
    {
        printf 'date:     %s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
        printf 'machine:  %s, %s cores, %s RAM, %s\n' "${cpu:-unknown CPU}" "$(nproc)" "${mem:-?}" "$(uname -sr)"
        printf 'disk:     %s; 4 KiB O_DSYNC write %s\n' "${disk:-?}" "$fsync"
        printf 'quorumkv: %s, release build; %s\n' "$rev" "${BENCH_NODE_ARGS:-default flags}"
        if command -v etcd >/dev/null 2>&1; then
            printf 'etcd:     %s, default flags (fsync on)\n' "$(etcd --version 2>/dev/null | awk 'NR == 1 { print $3 }')"
        fi
        printf 'runs:     %s s measured after %s s warmup; 256-byte values, 10000 keys unless said%s\n' \
            "$DURATION" "$WARMUP" "$([[ "$QUICK" == 1 ]] && echo '; --quick')"
        if [[ -n "${BENCH_NOTE:-}" ]]; then
            printf 'note:     %s\n' "$BENCH_NOTE"
        fi
    } >"$OUT/machine.txt"
}

# Mean time of a 4 KiB write with O_DSYNC on the data disk (what one fdatasync costs).
fsync_probe() {
    local f="$WORK/fsync.probe" n=300 out secs
    out="$(LC_ALL=C dd if=/dev/zero of="$f" bs=4k count="$n" oflag=dsync 2>&1)" || true
    rm -f "$f"
    secs="$(printf '%s\n' "$out" | awk '/copied/ { for (i = 1; i <= NF; i++) if ($i ~ /^s,?$/) { print $(i - 1); exit } }')"
    if [[ -n "$secs" ]]; then
        awk -v s="$secs" -v n="$n" 'BEGIN { printf "%.3f ms\n", s * 1000 / n }'
    else
        printf 'unknown\n'
    fi
}
