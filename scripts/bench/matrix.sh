# shellcheck shell=bash
# The comparison matrix of scripts/bench.sh: quorumkv, then etcd, one at a time,
# same machine, same values (256 B), same key space (10k keys, preloaded), same
# durations. Sourced; uses lib.sh.
#
# quorumkv: writes at strong, eventual, all (to the leader); reads at strong on
# the leader and on a follower, eventual on the followers; strong writes of
# 64 KiB values at 16 connections; then a second cluster with --strong-reads
# lease for strong reads on the leader.
# etcd: put (to the leader); linearizable range on the leader and on a
# follower, serializable range on the followers; puts of 64 KiB values at 16
# connections.

MATRIX_KEYS=10000
MATRIX_VALUE=256
# Writes of 64 KiB values (16 connections) go to a key space of their own size.
BIG_KEYS=1000

# Writes the matrix's key space once, strongly, through the running cluster's leader.
matrix_preload_quorumkv() {
    local leader
    leader="$(qkv_leader)" || die "quorumkv: no leader"
    log "quorumkv: preloading $MATRIX_KEYS keys through the leader (node $leader)"
    run_bench preload quorumkv put-strong leader 64 "$MATRIX_VALUE" "$MATRIX_KEYS" \
        --endpoints "$(qkv_url "$leader")" --pin --preload --requests 1 --warmup 0 ||
        die "quorumkv preload failed"
}

matrix_quorumkv() {
    qkv_up matrix "$BASE_PORT"
    local leader f1 f2 c level
    matrix_preload_quorumkv
    for level in strong eventual all; do
        for c in "${CONNS[@]}"; do
            leader="$(qkv_leader)" || die "quorumkv: no leader"
            run_bench matrix quorumkv "put-$level" leader "$c" "$MATRIX_VALUE" "$MATRIX_KEYS" \
                --endpoints "$(qkv_url "$leader")" --pin --op put --consistency "$level" || true
        done
    done
    for c in "${CONNS[@]}"; do
        leader="$(qkv_leader)" || die "quorumkv: no leader"
        { read -r f1 && read -r f2; } < <(qkv_followers "$leader")
        run_bench matrix quorumkv get-strong leader "$c" "$MATRIX_VALUE" "$MATRIX_KEYS" \
            --endpoints "$(qkv_url "$leader")" --pin --op get --consistency strong || true
        run_bench matrix quorumkv get-strong follower "$c" "$MATRIX_VALUE" "$MATRIX_KEYS" \
            --endpoints "$(qkv_url "$f1")" --pin --op get --consistency strong || true
        run_bench matrix quorumkv get-eventual followers "$c" "$MATRIX_VALUE" "$MATRIX_KEYS" \
            --endpoints "$(qkv_url "$f1"),$(qkv_url "$f2")" --op get --consistency eventual || true
    done
    leader="$(qkv_leader)" || die "quorumkv: no leader"
    run_bench matrix quorumkv put-strong-64k leader 16 65536 "$BIG_KEYS" \
        --endpoints "$(qkv_url "$leader")" --pin --op put --consistency strong || true
    qkv_down
    # Strong reads served under a leader lease (--strong-reads lease).
    qkv_up matrix-lease "$BASE_PORT" "--strong-reads lease"
    matrix_preload_quorumkv
    for c in "${CONNS[@]}"; do
        leader="$(qkv_leader)" || die "quorumkv: no leader"
        run_bench matrix quorumkv get-strong-lease leader "$c" "$MATRIX_VALUE" "$MATRIX_KEYS" \
            --endpoints "$(qkv_url "$leader")" --pin --op get --consistency strong || true
    done
    qkv_down
}

matrix_etcd() {
    etcd_up "$ETCD_CLIENT_BASE" "$ETCD_PEER_BASE"
    local leader f1 f2 c i
    leader="$(etcd_leader)" || die "etcd: no leader"
    f1="" f2=""
    for i in 1 2 3; do
        [[ "$i" == "$leader" ]] && continue
        if [[ -z "$f1" ]]; then f1="$i"; else f2="$i"; fi
    done
    log "etcd: preloading $MATRIX_KEYS keys through the leader (member $leader)"
    run_bench preload etcd put leader 64 "$MATRIX_VALUE" "$MATRIX_KEYS" \
        --endpoints "$(etcd_url "$leader")" --pin --preload --requests 1 --warmup 0 ||
        die "etcd preload failed"
    for c in "${CONNS[@]}"; do
        run_bench matrix etcd put leader "$c" "$MATRIX_VALUE" "$MATRIX_KEYS" \
            --endpoints "$(etcd_url "$leader")" --pin --op put || true
    done
    for c in "${CONNS[@]}"; do
        run_bench matrix etcd get-linearizable leader "$c" "$MATRIX_VALUE" "$MATRIX_KEYS" \
            --endpoints "$(etcd_url "$leader")" --pin --op get --consistency strong || true
        run_bench matrix etcd get-linearizable follower "$c" "$MATRIX_VALUE" "$MATRIX_KEYS" \
            --endpoints "$(etcd_url "$f1")" --pin --op get --consistency strong || true
        run_bench matrix etcd get-serializable followers "$c" "$MATRIX_VALUE" "$MATRIX_KEYS" \
            --endpoints "$(etcd_url "$f1"),$(etcd_url "$f2")" --op get --consistency eventual || true
    done
    run_bench matrix etcd put-64k leader 16 65536 "$BIG_KEYS" \
        --endpoints "$(etcd_url "$leader")" --pin --op put || true
    local now
    now="$(etcd_leader)" || true
    [[ "$now" == "$leader" ]] || warn "etcd leadership moved during the runs (member $leader -> ${now:-none})"
    etcd_down
}

matrix() {
    log "== matrix: connections ${CONNS[*]}; $DURATION s per run after $WARMUP s warmup"
    matrix_quorumkv
    if [[ "$WITH_ETCD" == 0 ]]; then
        log "etcd: skipped (--no-etcd)"
    elif etcd_available; then
        matrix_etcd
    else
        log "etcd: NOT AVAILABLE — skipping the etcd half (install Debian's etcd-server, or run as root so this script can)"
        printf 'etcd not available: the etcd half was skipped\n' >>"$OUT/machine.txt"
    fi
}
