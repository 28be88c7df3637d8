#!/usr/bin/env bash
# Run a local three-node quorumkv cluster on 127.0.0.1 (see README.md).
#
# Usage: scripts/cluster.sh up [--secure] | down [--wipe] | status
#                           | kill ID | start ID | pause ID | resume ID | logs ID
#                           | add ID | remove ID | replace ID
#
# Environment:
#   QKV_BASE_PORT     first client port (default 7001); nodes 1,2,3 use base, base+1, base+2
#                     for clients and those ports + 1000 (8001-8003) for peers (/raft/*)
#   QKV_CLUSTER_DIR   data root (default <repo>/.cluster): nodeN/ (data), nodeN.pid, nodeN.log
#   QKV_NODE_ARGS     extra flags passed to every node's `quorumkv serve` (split on whitespace)
#   QKV_UP_TIMEOUT    seconds `up` waits for a leader (default 20)
#   QKV_STOP_TIMEOUT  seconds `down` waits after SIGTERM before SIGKILL (default 5)
#   CARGO_TARGET_DIR  honoured when locating/building target/release/quorumkv
#
# `up` records each node's exact arguments in DIR/nodeN.args; `start ID` and `status`
# reuse them, so a restarted node gets the same flags it was first launched with.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROG="scripts/cluster.sh"
FOUNDERS=(1 2 3)
HOST=127.0.0.1

usage() {
    local code="${1:-2}"
    # Help asked for: stdout, exit 0. Bad arguments: stderr, exit 2.
    if [[ "$code" -ne 0 ]]; then exec 1>&2; fi
    cat <<EOF
usage: $PROG <command>

commands:
  up [--secure] build (release), start nodes 1-3, wait for a leader, print examples;
                --secure: TLS (a throwaway CA in DIR/tls, mutual TLS between peers)
                and client tokens (DIR/auth.toml, admin token in DIR/admin-token)
  down [--wipe] stop all nodes (data kept; --wipe also deletes data, logs, pid files,
                token, certificates)
  status        process state and /v1/cluster summary of each node
  kill ID       kill -9 node ID
  start ID      start node ID again with the arguments it was launched with
  pause ID      kill -STOP node ID
  resume ID     kill -CONT node ID
  logs ID       tail node ID's log (follows when stdout is a terminal)
  add ID        start a new node ID (4-9) empty with --join: it is added as a
                learner and promoted to voter once it has caught up
  remove ID     remove member ID (a leader hands over first), stop it, delete its data
  replace ID    remove ID, then add it back empty as a new member (a lost disk)

ID is one of 1-9: nodes 1-3 found the cluster; others join with `add`.
env: QKV_BASE_PORT (default 7001), QKV_CLUSTER_DIR (default $ROOT/.cluster),
     QKV_NODE_ARGS (extra serve flags), QKV_UP_TIMEOUT (20), QKV_STOP_TIMEOUT (5)
EOF
    exit "$code"
}

die() {
    printf '%s: %s\n' "$PROG" "$*" >&2
    exit 1
}

info() { printf '%s\n' "$*"; }

# ---------------------------------------------------------------- configuration

abs_path() {
    case "$1" in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s/%s\n' "$PWD" "$1" ;;
    esac
}

DIR="$(abs_path "${QKV_CLUSTER_DIR:-$ROOT/.cluster}")"
DIR="${DIR%/}"
[[ -n "$DIR" ]] || die "QKV_CLUSTER_DIR must not be /"

# The nodes of this cluster: the founders, but those removed (DIR/nodeN.removed),
# and every node added since (DIR/nodeN.args).
NODES=()
for n in 1 2 3 4 5 6 7 8 9; do
    [[ -f "$DIR/node$n.removed" ]] && continue
    if [[ " ${FOUNDERS[*]} " == *" $n "* || -f "$DIR/node$n.args" ]]; then
        NODES+=("$n")
    fi
done

BASE_PORT="${QKV_BASE_PORT:-7001}"
if ! [[ "$BASE_PORT" =~ ^[0-9]+$ ]] || ((BASE_PORT < 1 || BASE_PORT > 64533)); then
    die "QKV_BASE_PORT must be a port number between 1 and 64533 (peers use +1000), got '$BASE_PORT'"
fi

UP_TIMEOUT="${QKV_UP_TIMEOUT:-20}"
STOP_TIMEOUT="${QKV_STOP_TIMEOUT:-5}"
[[ "$UP_TIMEOUT" =~ ^[0-9]+$ ]] || die "QKV_UP_TIMEOUT must be whole seconds"
[[ "$STOP_TIMEOUT" =~ ^[0-9]+$ ]] || die "QKV_STOP_TIMEOUT must be whole seconds"

target_dir() {
    local t="${CARGO_TARGET_DIR:-target}"
    case "$t" in
    /*) printf '%s\n' "$t" ;;
    *) printf '%s/%s\n' "$ROOT" "$t" ;;
    esac
}
BIN="$(target_dir)/release/quorumkv"

pid_file() { printf '%s/node%s.pid\n' "$DIR" "$1"; }
log_file() { printf '%s/node%s.log\n' "$DIR" "$1"; }
args_file() { printf '%s/node%s.args\n' "$DIR" "$1"; }
data_dir() { printf '%s/node%s\n' "$DIR" "$1"; }

# A secure cluster (`up --secure`) has its CA in DIR/tls: HTTPS for clients,
# mutual TLS for peers, and client tokens from DIR/auth.toml.
tls_dir() { printf '%s/tls\n' "$DIR"; }
is_secure() { [[ -f "$(tls_dir)/ca.crt" ]]; }
scheme() { if is_secure; then printf 'https'; else printf 'http'; fi; }
auth_file() { printf '%s/auth.toml\n' "$DIR"; }
admin_token_file() { printf '%s/admin-token\n' "$DIR"; }

# Client URL for node $1 from the environment/defaults (what `up` would use now).
env_url() { printf '%s://%s:%s\n' "$(scheme)" "$HOST" "$((BASE_PORT + $1 - 1))"; }
# Peer URL (its /raft/* listener) for node $1: the client port + 1000.
env_peer_url() { printf '%s://%s:%s\n' "$(scheme)" "$HOST" "$((BASE_PORT + $1 - 1 + 1000))"; }

# URL node $1 was launched with (recorded by `up`/`start`), else from the environment.
node_url() {
    local f
    f="$(args_file "$1")"
    if [[ -f "$f" ]]; then
        local -a args
        mapfile -d '' -t args <"$f"
        local i
        for ((i = 0; i < ${#args[@]} - 1; i++)); do
            if [[ "${args[i]}" == --advertise-client ]]; then
                printf '%s\n' "${args[i + 1]}"
                return
            fi
        done
    fi
    env_url "$1"
}

initial_cluster() {
    local n out=""
    for n in "${FOUNDERS[@]}"; do
        out+="${out:+,}$n=$(env_peer_url "$n")"
    done
    printf '%s\n' "$out"
}

check_id() {
    local id="${1:-}"
    [[ "$id" =~ ^[1-9]$ ]] && return 0
    printf '%s: invalid node ID %s (expected 1-9)\n\n' "$PROG" "'$id'" >&2
    usage
}

# ---------------------------------------------------------------- processes

# Print the recorded pid of node $1 (nothing if no pid file / garbage).
read_pid() {
    local f pid=""
    f="$(pid_file "$1")"
    [[ -f "$f" ]] || return 0
    read -r pid <"$f" || true
    [[ "$pid" =~ ^[0-9]+$ ]] && printf '%s\n' "$pid"
    return 0
}

# Single-letter process state from /proc (R, S, T, Z, ...), empty if gone.
proc_state() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
    stat="${stat##*) }"
    printf '%s\n' "${stat%% *}"
}

# True if pid $2 is a live (non-zombie) quorumkv process for node $1. Guards against
# pid reuse: the command line must be `... quorumkv serve --id $1 ...`.
is_node_pid() {
    local id="$1" pid="$2" state
    [[ -n "$pid" ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r "/proc/$pid/cmdline" ]]; then
        state="$(proc_state "$pid")"
        [[ "$state" != Z && "$state" != X ]] || return 1
        local -a argv=()
        # The process may exit between the check above and this read.
        mapfile -d '' -t argv 2>/dev/null <"/proc/$pid/cmdline" || return 1
        local i bin=0 idok=0
        for ((i = 0; i < ${#argv[@]}; i++)); do
            [[ "${argv[i]##*/}" == quorumkv ]] && bin=1
            [[ "${argv[i]}" == --id && "${argv[i + 1]:-}" == "$id" ]] && idok=1
        done
        ((bin && idok)) || return 1
    fi
    return 0
}

# Print pid of node $1 if it is running (possibly paused); fail otherwise.
live_pid() {
    local pid
    pid="$(read_pid "$1")"
    is_node_pid "$1" "$pid" || return 1
    printf '%s\n' "$pid"
}

is_paused() { [[ "$(proc_state "$1")" == T || "$(proc_state "$1")" == t ]]; }

# ---------------------------------------------------------------- HTTP helpers

# curl's options for this cluster: the CA and the admin token when secure.
curl_opts() {
    if is_secure; then
        printf '%s\0' --cacert "$(tls_dir)/ca.crt" \
            -H "Authorization: Bearer $(cat "$(admin_token_file)")"
    fi
}

# GET $1 with a short timeout; prints the body, fails when unreachable / non-2xx.
http_get() {
    local -a opts
    mapfile -d '' -t opts < <(curl_opts)
    curl -fsS "${opts[@]}" --connect-timeout 1 --max-time "${2:-2}" "$1" 2>/dev/null
}

# Extract a scalar JSON field ("name":value) from a flat-ish JSON document.
json_field() {
    local json="$1" name="$2" re
    re="\"$name\"[[:space:]]*:[[:space:]]*(\"[^\"]*\"|-?[0-9]+|null|true|false)"
    if [[ "$json" =~ $re ]]; then
        local v="${BASH_REMATCH[1]}"
        v="${v#\"}"
        printf '%s\n' "${v%\"}"
    else
        printf '?\n'
    fi
}

# ---------------------------------------------------------------- build

ensure_built() {
    command -v curl >/dev/null 2>&1 || die "curl is required (apt-get install curl)"
    # Always ask cargo: it knows what changed (a no-op takes under a second), while
    # comparing file times misses a binary built from a half-edited tree.
    info "cargo build --release"
    (cd "$ROOT" && cargo build --release --quiet -p quorumkv --bin quorumkv) || die "cargo build --release failed"
    [[ -x "$BIN" ]] || die "build succeeded but $BIN not found"
}

# ---------------------------------------------------------------- node control

# Launch node $1 with the given serve arguments (everything after `quorumkv`).
launch() {
    local id="$1"
    shift
    local pid
    if pid="$(live_pid "$id")"; then
        printf '%s: refusing to start node %s: already running (pid %s)\n' "$PROG" "$id" "$pid" >&2
        return 1
    fi
    mkdir -p "$DIR" "$(data_dir "$id")"
    local log
    log="$(log_file "$id")"
    printf '%s\0' "$@" >"$(args_file "$id")"
    {
        printf '\n===== %s: %s: starting node %s:' "$(date '+%Y-%m-%d %H:%M:%S')" "$PROG" "$id"
        printf ' %q' "$BIN" "$@"
        printf '\n'
    } >>"$log"
    # New session: the node survives the terminal closing and is not hit by Ctrl-C
    # sent to whatever shell ran this script. Without job control `setsid` execs in
    # place, so $! is the node's pid.
    if command -v setsid >/dev/null 2>&1; then
        setsid "$BIN" "$@" </dev/null >>"$log" 2>&1 &
    else
        nohup "$BIN" "$@" </dev/null >>"$log" 2>&1 &
    fi
    pid=$!
    printf '%s\n' "$pid" >"$(pid_file "$id")"
    info "node $id: started pid $pid, $(node_url "$id"), data $(data_dir "$id"), log $log"
}

# The cluster token every node requires of peer requests: made once per cluster
# directory (random, readable by its owner only), kept across down/up.
token_file() { printf '%s/token\n' "$DIR"; }

ensure_token() {
    local file
    file="$(token_file)"
    [[ -s "$file" ]] && return 0
    mkdir -p "$DIR"
    (umask 077 && od -An -vtx1 -N32 /dev/urandom | tr -d ' \n' >"$file") ||
        die "cannot write the cluster token to $file"
    info "cluster token: $file"
}

# `up --secure`: a throwaway CA and certificates (quorumkv certs) and an
# auth file with one admin token, made once per cluster directory.
ensure_secure() {
    mkdir -p "$DIR"
    if ! is_secure; then
        if compgen -G "$DIR/node*/*" >/dev/null; then
            die "the cluster in $DIR has data from a plain (non-TLS) start; run '$PROG down --wipe' first"
        fi
        "$BIN" certs --out "$(tls_dir)" --nodes 9 --hosts "$HOST,localhost" >/dev/null ||
            die "quorumkv certs failed"
        info "certificates: $(tls_dir) (clients trust ca.crt)"
    fi
    local token_path
    token_path="$(admin_token_file)"
    if [[ ! -s "$token_path" ]]; then
        (umask 077 && od -An -vtx1 -N32 /dev/urandom | tr -d ' \n' >"$token_path") ||
            die "cannot write $token_path"
    fi
    if [[ ! -s "$(auth_file)" ]]; then
        (umask 077 && printf '[[token]]\nname = "admin"\nsecret = "%s"\nrole = "admin"\n' \
            "$(cat "$token_path")" >"$(auth_file)") || die "cannot write $(auth_file)"
        info "client tokens: $(auth_file) (admin token in $token_path)"
    fi
}

serve_args() {
    local id="$1" url peer
    shift
    # The way in: --initial-cluster for a founder, or what the caller gives
    # (`add`: --join URLS).
    local -a way_in=("$@")
    ((${#way_in[@]} > 0)) || way_in=(--initial-cluster "$(initial_cluster)")
    url="$(env_url "$id")"
    peer="$(env_peer_url "$id")"
    local -a extra=()
    if [[ -n "${QKV_NODE_ARGS:-}" ]]; then
        read -r -a extra <<<"$QKV_NODE_ARGS"
    fi
    local -a secure=()
    if is_secure; then
        local t
        t="$(tls_dir)"
        secure=(--cert "$t/node-$id.crt" --key "$t/node-$id.key"
            --peer-cert "$t/node-$id-peer.crt" --peer-key "$t/node-$id-peer.key"
            --peer-ca "$t/peer-ca.crt" --auth-file "$(auth_file)")
    fi
    printf '%s\0' serve --id "$id" --listen "${url#*://}" --advertise-client "$url" \
        --peer-listen "${peer#*://}" "${secure[@]}" \
        --data-dir "$(data_dir "$id")" "${way_in[@]}" \
        --cluster-token-file "$(token_file)" "${extra[@]}"
}

# Warn when a node has state from a cluster with different addresses: a node with
# existing state ignores --initial-cluster, so new ports would not take effect.
warn_stale_membership() {
    local id="$1" old new
    [[ -f "$(args_file "$id")" && -d "$(data_dir "$id")" ]] || return 0
    [[ -n "$(ls -A "$(data_dir "$id")" 2>/dev/null)" ]] || return 0
    old="$(node_url "$id")"
    new="$(env_url "$id")"
    if ! tr '\0' '\n' <"$(args_file "$id")" | grep -qx -- --peer-listen; then
        printf '%s: node %s has state from before peers had their own port;\n' "$PROG" "$id" >&2
        printf '    run "%s down --wipe" to start a fresh cluster\n' "$PROG" >&2
        exit 1
    fi
    if [[ "$old" != "$new" ]]; then
        printf '%s: warning: node %s has existing state from a cluster at %s (now %s);\n' "$PROG" "$id" "$old" "$new" >&2
        printf '    existing state ignores --initial-cluster; use "%s down --wipe" to start fresh\n' "$PROG" >&2
    fi
}

tail_logs() {
    local n
    for n in "${NODES[@]}"; do
        if [[ -f "$(log_file "$n")" ]]; then
            printf '\n----- tail of %s -----\n' "$(log_file "$n")" >&2
            tail -n "${1:-30}" "$(log_file "$n")" >&2
        fi
    done
}

# Leader id if some reachable node reports one and that node confirms it is Leader.
find_leader() {
    local n body leader lbody
    for n in "${NODES[@]}"; do
        body="$(http_get "$(node_url "$n")/v1/cluster" 1)" || continue
        leader="$(json_field "$body" leader)"
        [[ "$leader" =~ ^[0-9]+$ ]] || continue
        lbody="$(http_get "$(node_url "$leader")/v1/cluster" 1)" || continue
        if [[ "$(json_field "$lbody" state)" == Leader ]]; then
            printf '%s\n' "$leader"
            return 0
        fi
    done
    return 1
}

print_examples() {
    local leader="$1" lurl furl n follower=""
    lurl="$(node_url "$leader")"
    for n in "${NODES[@]}"; do
        if [[ "$n" != "$leader" ]]; then
            follower="$n"
            break
        fi
    done
    furl="$(node_url "${follower:-$leader}")"
    local curl="curl"
    local cli_opts=""
    if ((BASE_PORT != 7001)) || is_secure; then
        cli_opts=" --endpoints $(node_url 1),$(node_url 2),$(node_url 3)"
    fi
    if is_secure; then
        cli_opts="$cli_opts --cacert $(tls_dir)/ca.crt --token-file $(admin_token_file)"
        curl="curl --cacert $(tls_dir)/ca.crt -H \"Authorization: Bearer \$QKV_TOKEN\""
        cat <<EOF

Secure cluster: HTTPS with a throwaway CA, mutual TLS between peers, client tokens.
  export QKV_TOKEN=\$(cat $(admin_token_file))
  # more tokens (roles read/write/admin, key prefixes): edit $(auth_file), then
  # kill -HUP the nodes; the README's Security section shows the format.
EOF
    fi
    cat <<EOF

Examples (writes go to the leader; any node accepts them and forwards):

  # strong PUT (default consistency): 200 {"index":N,"consistency":"strong"} after quorum commit
  $curl -sS -X PUT -H 'X-Consistency: strong' --data-binary 'world' $lurl/v1/kv/hello

  # strong GET on a follower (read index from the leader; see X-Raft-Index, X-Served-By)
  $curl -sS -i $furl/v1/kv/hello

  # eventual PUT: 202 {"index":N,"consistency":"eventual"} once the leader accepted it
  IDX=\$($curl -sS -X PUT -H 'X-Consistency: eventual' --data-binary 'world2' $lurl/v1/kv/hello | sed -E 's/.*"index":([0-9]+).*/\\1/'); echo "\$IDX"

  # eventual GET on a follower: wait until applied >= \$IDX, 503 if leader contact older than 2s
  $curl -sS -i -H 'X-Consistency: eventual' -H "X-Min-Index: \$IDX" -H 'X-Max-Staleness: 2s' $furl/v1/kv/hello

  # all PUT: 200 once every voter applied it (504 not_fully_replicated otherwise)
  $curl -sS -X PUT -H 'X-Consistency: all' --data-binary 'everywhere' $lurl/v1/kv/hello/all

  # prefix list
  $curl -sS '$lurl/v1/kv?prefix=hello&limit=10'

  # cluster state
  $curl -sS $lurl/v1/cluster

The same binary is the client (quorumkv --help), and every node serves a dashboard:
  $BIN status$cli_opts
  $BIN put hello world$cli_opts && $BIN get hello$cli_opts
  open $lurl/ui
EOF
}

# ---------------------------------------------------------------- commands

cmd_up() {
    local secure=0
    case "${1:-}" in
    "") ;;
    --secure) secure=1 ;;
    *) usage ;;
    esac
    ensure_built
    mkdir -p "$DIR"
    ensure_token
    if ((secure)); then
        ensure_secure
    elif is_secure; then
        info "this cluster directory is secure (TLS, tokens): starting it so"
    fi
    local n pid started=0
    for n in "${NODES[@]}"; do
        if pid="$(live_pid "$n")"; then
            printf '%s: refusing to start node %s: already running (pid %s)\n' "$PROG" "$n" "$pid" >&2
            continue
        fi
        warn_stale_membership "$n"
        local -a args
        if [[ " ${FOUNDERS[*]} " != *" $n "* && -f "$(args_file "$n")" ]]; then
            # A node added with `add`: it resumes with the flags it joined with.
            mapfile -d '' -t args <"$(args_file "$n")"
        else
            mapfile -d '' -t args < <(serve_args "$n")
        fi
        launch "$n" "${args[@]}"
        started=$((started + 1))
    done

    info "waiting up to ${UP_TIMEOUT}s for a leader..."
    local deadline=$((SECONDS + UP_TIMEOUT)) leader=""
    while ((SECONDS < deadline)); do
        if leader="$(find_leader)"; then
            break
        fi
        leader=""
        local alive=0
        for n in "${NODES[@]}"; do
            live_pid "$n" >/dev/null && alive=$((alive + 1))
        done
        if ((alive == 0)); then
            printf '%s: all nodes exited\n' "$PROG" >&2
            tail_logs 30
            exit 1
        fi
        sleep 0.3
    done

    if [[ -z "$leader" ]]; then
        printf '%s: no leader elected within %ss\n' "$PROG" "$UP_TIMEOUT" >&2
        for n in "${NODES[@]}"; do
            live_pid "$n" >/dev/null || printf '%s: node %s is not running\n' "$PROG" "$n" >&2
        done
        tail_logs 30
        exit 1
    fi

    info ""
    info "cluster up ($started node(s) started), data root $DIR"
    for n in "${NODES[@]}"; do
        local role=follower
        [[ "$n" == "$leader" ]] && role=leader
        live_pid "$n" >/dev/null || role="NOT RUNNING (see $(log_file "$n"))"
        info "  node $n  $(node_url "$n")  pid $(read_pid "$n")  $role"
    done
    info "leader: node $leader ($(node_url "$leader"))"
    print_examples "$leader"
}

cmd_down() {
    local wipe=0
    case "${1:-}" in
    "") ;;
    --wipe) wipe=1 ;;
    *) usage ;;
    esac
    [[ $# -le 1 ]] || usage

    local n pid
    local -a ids=() pids=()
    for n in "${NODES[@]}"; do
        if pid="$(live_pid "$n")"; then
            kill -CONT "$pid" 2>/dev/null || true
            kill -TERM "$pid" 2>/dev/null || true
            ids+=("$n")
            pids+=("$pid")
            info "node $n: SIGTERM sent to pid $pid"
        fi
    done

    local deadline=$((SECONDS + STOP_TIMEOUT)) i remaining
    while :; do
        remaining=0
        for i in "${!pids[@]}"; do
            is_node_pid "${ids[i]}" "${pids[i]}" && remaining=$((remaining + 1))
        done
        ((remaining == 0 || SECONDS >= deadline)) && break
        sleep 0.1
    done
    for i in "${!pids[@]}"; do
        if is_node_pid "${ids[i]}" "${pids[i]}"; then
            info "node ${ids[i]}: still running after ${STOP_TIMEOUT}s, SIGKILL pid ${pids[i]}"
            kill -KILL "${pids[i]}" 2>/dev/null || true
        fi
    done
    for n in "${NODES[@]}"; do
        rm -f "$(pid_file "$n")"
    done
    ((${#pids[@]} > 0)) || info "no running nodes"

    if ((wipe)); then
        # Every node ever here, removed ones included: 1-9.
        for n in 1 2 3 4 5 6 7 8 9; do
            rm -rf "$(data_dir "$n")"
            rm -f "$(log_file "$n")" "$(args_file "$n")" "$(pid_file "$n")" "$DIR/node$n.removed"
        done
        rm -f "$(token_file)" "$(auth_file)" "$(admin_token_file)"
        rm -rf "$(tls_dir)"
        rmdir "$DIR" 2>/dev/null || true
        info "cluster down; data, logs and pid files in $DIR removed"
    else
        info "cluster down; data and logs kept in $DIR (use '$PROG down --wipe' to delete them)"
    fi
}

cmd_status() {
    local n pid proc body url
    info "cluster dir: $DIR"
    for n in "${NODES[@]}"; do
        url="$(node_url "$n")"
        pid="$(read_pid "$n")"
        if is_node_pid "$n" "$pid"; then
            if is_paused "$pid"; then
                proc="paused (pid $pid)"
            else
                proc="alive (pid $pid)"
            fi
        elif [[ -n "$pid" ]]; then
            proc="dead (pid $pid)"
        else
            proc="not started"
        fi
        if body="$(http_get "$url/v1/cluster" 1)"; then
            printf 'node %s  %-22s  %-24s  state=%s leader=%s term=%s applied=%s\n' \
                "$n" "$url" "$proc" "$(json_field "$body" state)" "$(json_field "$body" leader)" \
                "$(json_field "$body" term)" "$(json_field "$body" applied_index)"
        else
            printf 'node %s  %-22s  %-24s  unreachable\n' "$n" "$url" "$proc"
        fi
    done
    local via
    if via="$(other_live_url 0)" && body="$(http_get "$via/v1/cluster/members" 2)"; then
        info "members (as the leader sees them):"
        local re='"id":([0-9]+),"peer_url":"([^"]*)","voter":(true|false),"leader":(true|false),"matched_index":([0-9]+|null),"lag":([0-9]+|null)'
        while [[ "$body" =~ $re ]]; do
            local role=learner
            [[ "${BASH_REMATCH[3]}" == true ]] && role=voter
            [[ "${BASH_REMATCH[4]}" == true ]] && role="voter, leader"
            printf '  %s  %-24s  %-14s  lag=%s\n' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" "$role" "${BASH_REMATCH[6]}"
            body="${body#*"${BASH_REMATCH[0]}"}"
        done
    fi
}

cmd_kill() {
    local pid
    pid="$(live_pid "$1")" || die "node $1 is not running"
    kill -KILL "$pid"
    # Wait until the process is really gone, not just unrecognisable: a big
    # process keeps its files (and sled's lock on them) while the kernel tears
    # down its memory, and a `start` in that window fails to open its data.
    local deadline=$((SECONDS + 30)) state
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        state="$(proc_state "$pid")"
        [[ "$state" == Z || "$state" == X ]] && break
        sleep 0.05
    done
    info "node $1: killed (SIGKILL pid $pid)"
}

cmd_start() {
    local id="$1" pid
    if pid="$(live_pid "$id")"; then
        die "refusing to start node $id: already running (pid $pid)"
    fi
    [[ -x "$BIN" ]] || ensure_built
    ensure_token
    local -a args
    if [[ -f "$(args_file "$id")" ]]; then
        mapfile -d '' -t args <"$(args_file "$id")"
    else
        mapfile -d '' -t args < <(serve_args "$id")
    fi
    launch "$id" "${args[@]}"
    # Report an immediate failure (bad flag, port in use) instead of claiming success.
    sleep 0.3
    if ! live_pid "$id" >/dev/null; then
        printf '%s: node %s exited right after start; log tail:\n' "$PROG" "$id" >&2
        tail -n 20 "$(log_file "$id")" >&2
        exit 1
    fi
}

# `METHOD URL` with this cluster's curl options; prints the body, fails on non-2xx.
http_call() {
    local -a opts
    mapfile -d '' -t opts < <(curl_opts)
    curl -fsS "${opts[@]}" --connect-timeout 1 --max-time 30 -X "$1" "$2"
}

# Client URL of a live node other than $1.
other_live_url() {
    local n
    for n in "${NODES[@]}"; do
        [[ "$n" == "$1" ]] && continue
        if live_pid "$n" >/dev/null && http_get "$(node_url "$n")/health" 1 >/dev/null; then
            node_url "$n"
            return 0
        fi
    done
    return 1
}

cmd_add() {
    local id="$1" via peers="" n
    live_pid "$id" >/dev/null && die "node $id is already running"
    via="$(other_live_url "$id")" || die "no running node to join: start the cluster first ($PROG up)"
    [[ -x "$BIN" ]] || ensure_built
    ensure_token
    if http_get "$via/v1/cluster/members" 2 | grep -q "\"id\":$id,"; then
        die "node $id is already a member; '$PROG replace $id' gives it a fresh start"
    fi
    for n in "${NODES[@]}"; do
        [[ "$n" == "$id" ]] && continue
        live_pid "$n" >/dev/null && peers+="${peers:+,}$(env_peer_url "$n")"
    done
    rm -rf "$(data_dir "$id")"
    rm -f "$DIR/node$id.removed"
    local -a args
    mapfile -d '' -t args < <(serve_args "$id" --join "$peers")
    launch "$id" "${args[@]}"
    info "node $id: joining through $peers; waiting up to 60s to become a voter..."
    local deadline=$((SECONDS + 60))
    while ((SECONDS < deadline)); do
        if ! live_pid "$id" >/dev/null; then
            printf '%s: node %s exited; log tail:\n' "$PROG" "$id" >&2
            tail -n 20 "$(log_file "$id")" >&2
            exit 1
        fi
        if http_get "$via/v1/cluster/members" 2 | grep -q "\"id\":$id,[^}]*\"voter\":true"; then
            info "node $id: a voter ($(node_url "$id"))"
            return 0
        fi
        sleep 0.5
    done
    die "node $id did not become a voter within 60s (see $(log_file "$id"))"
}

cmd_remove() {
    local id="$1" via pid
    via="$(other_live_url "$id")" || die "no other running node to ask"
    http_call DELETE "$via/v1/cluster/members/$id" >/dev/null ||
        die "removing node $id was refused (see the message above)"
    info "node $id: removed from the cluster"
    if pid="$(live_pid "$id")"; then
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + STOP_TIMEOUT))
        while is_node_pid "$id" "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
        is_node_pid "$id" "$pid" && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -rf "$(data_dir "$id")"
    rm -f "$(pid_file "$id")" "$(args_file "$id")"
    mkdir -p "$DIR"
    : >"$DIR/node$id.removed"
    info "node $id: stopped, data deleted"
}

cmd_replace() {
    cmd_remove "$1"
    cmd_add "$1"
}

cmd_pause() {
    local pid
    pid="$(live_pid "$1")" || die "node $1 is not running"
    kill -STOP "$pid"
    info "node $1: paused (SIGSTOP pid $pid)"
}

cmd_resume() {
    local pid
    pid="$(live_pid "$1")" || die "node $1 is not running"
    kill -CONT "$pid"
    info "node $1: resumed (SIGCONT pid $pid)"
}

cmd_logs() {
    local f
    f="$(log_file "$1")"
    [[ -f "$f" ]] || die "no log for node $1 ($f)"
    if [[ -t 1 ]]; then
        exec tail -n 100 -f "$f"
    else
        exec tail -n 200 "$f"
    fi
}

main() {
    local cmd="${1:-}"
    case "$cmd" in
    up)
        shift
        [[ $# -le 1 ]] || usage
        cmd_up "$@"
        ;;
    status)
        [[ $# -eq 1 ]] || usage
        "cmd_$cmd"
        ;;
    down)
        shift
        cmd_down "$@"
        ;;
    kill | start | pause | resume | logs | add | remove | replace)
        [[ $# -eq 2 ]] || usage
        check_id "$2"
        "cmd_$cmd" "$2"
        ;;
    -h | --help | help)
        usage 0
        ;;
    *)
        usage
        ;;
    esac
}

main "$@"
