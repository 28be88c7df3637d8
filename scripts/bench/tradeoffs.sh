# shellcheck shell=bash
# The trade-off measurements of scripts/bench.sh --tradeoffs, each on a fresh
# quorumkv cluster (no etcd). Sourced; uses lib.sh.
#
#   staleness   eventual reads on followers under eventual write load
#   loss        acknowledged writes lost when the leader is killed (eventual vs strong)
#   value-size  throughput against value size (64 B .. 64 KiB)
#   key-count   throughput against key count, RSS and disk per node, restart
#               and wiped-follower catch-up (snapshot install) times

TRADEOFF_PARTS=(staleness loss value-size key-count)

# ------------------------------------------------------------------ staleness

tradeoff_staleness() {
    log "== staleness of eventual reads on followers under write load"
    qkv_up staleness "$TRADE_PORT"
    local leader f1 f2 c
    leader="$(qkv_leader)" || die "no leader"
    run_bench preload quorumkv put-strong leader 64 256 10000 \
        --endpoints "$(qkv_url "$leader")" --pin --preload --requests 1 --warmup 0 ||
        die "preload failed"
    for c in "${STALENESS_CONNS[@]}"; do
        leader="$(qkv_leader)" || die "no leader"
        { read -r f1 && read -r f2; } < <(qkv_followers "$leader")
        run_bench staleness quorumkv mixed-eventual followers "$c" 256 10000 \
            --endpoints "$(qkv_url "$f1"),$(qkv_url "$f2")" --op mixed:0.5 --consistency eventual || true
    done
    qkv_down
}

# ------------------------------------------------------------------ loss window

# Stops background writer $1 (SIGTERM, then SIGKILL after 30 s).
stop_writer() {
    local pid="$1" deadline=$((SECONDS + 30))
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# loss_run LEVEL: steady writes at LEVEL while the leader is killed LOSS_KILLS times.
loss_run() {
    local level="$1" endpoints="" id k
    for id in 1 2 3; do
        endpoints+="${endpoints:+,}$(qkv_url "$id")"
    done
    local acked="$OUT/raw/loss-$level.acked"
    local wjson="raw/loss-$level-write.json" vjson="raw/loss-$level-verify.json"
    log "loss: $level writes from 16 connections through all nodes; $LOSS_KILLS leader kills"
    "$LOSS_BIN" write --endpoints "$endpoints" --consistency "$level" --connections 16 \
        --prefix "loss/$level" --acked "$acked" --max-duration 10m \
        >"$OUT/$wjson" 2>"$OUT/logs/loss-$level-write.stderr" </dev/null &
    local wpid=$!
    BG_PIDS+=("$wpid")
    sleep "$LOSS_STEADY"
    local failovers="" kills=0
    for ((k = 1; k <= LOSS_KILLS; k++)); do
        local leader t0 t1 next
        leader="$(qkv_leader 15)" || {
            warn "loss: no leader before kill $k"
            break
        }
        t0="$(now_ms)"
        cluster_sh kill "$leader" >>"$OUT/logs/loss.log" 2>&1 || true
        kills=$((kills + 1))
        next=""
        while [[ -z "$next" ]] && (($(now_ms) - t0 < 20000)); do
            for id in $(qkv_followers "$leader"); do
                if [[ "$(qkv_cluster_field "$id" state)" == Leader ]]; then
                    next="$id"
                fi
            done
            [[ -n "$next" ]] || sleep 0.05
        done
        t1="$(now_ms)"
        if [[ -n "$next" ]]; then
            failovers+="${failovers:+,}$(secs_between "$t0" "$t1")"
            log "loss: kill $k: leader $leader killed; node $next led after $(secs_between "$t0" "$t1") s"
        else
            failovers+="${failovers:+,}>20"
            warn "loss: kill $k: no new leader within 20 s"
        fi
        sleep "$LOSS_STEADY"
        cluster_sh start "$leader" >>"$OUT/logs/loss.log" 2>&1 || warn "loss: node $leader did not restart"
        qkv_wait_ready "$leader" 60 || warn "loss: node $leader not ready 60 s after restart"
        sleep "$LOSS_STEADY"
    done
    stop_writer "$wpid"
    for id in 1 2 3; do
        qkv_wait_ready "$id" 60 || warn "loss: node $id not ready before verification"
    done
    log "loss: verifying every acknowledged $level write with a strong read"
    "$LOSS_BIN" verify --endpoints "$endpoints" --acked "$acked" --deadline 3m \
        >"$OUT/$vjson" 2>"$OUT/logs/loss-$level-verify.stderr" </dev/null ||
        warn "loss: verify failed (see $OUT/logs/loss-$level-verify.stderr)"
    printf '%s\t%s\t%s\t%s\t%s\n' "$level" "$kills" "$wjson" "$vjson" "$failovers" >>"$OUT/loss.tsv"
    log "loss: $level: write $(cat "$OUT/$wjson" 2>/dev/null)"
    log "loss: $level: verify $(cat "$OUT/$vjson" 2>/dev/null)"
}

tradeoff_loss() {
    log "== loss window of acknowledged writes under kill -9 of the leader"
    printf 'consistency\tkills\twrite\tverify\tfailover_s\n' >"$OUT/loss.tsv"
    qkv_up loss "$TRADE_PORT"
    loss_run eventual
    loss_run strong
    qkv_down
}

# ------------------------------------------------------------------ cost sweeps

# The three cost runs at one (value size, key count) point.
cost_runs() {
    local group="$1" vsize="$2" keys="$3" leader f1 f2
    leader="$(qkv_leader)" || die "no leader"
    { read -r f1 && read -r f2; } < <(qkv_followers "$leader")
    run_bench "$group" quorumkv put-strong leader "$COST_CONNS" "$vsize" "$keys" \
        --endpoints "$(qkv_url "$leader")" --pin --op put --consistency strong || true
    run_bench "$group" quorumkv get-strong all "$COST_CONNS" "$vsize" "$keys" \
        --endpoints "$(qkv_url 1),$(qkv_url 2),$(qkv_url 3)" --op get --consistency strong || true
    run_bench "$group" quorumkv get-eventual followers "$COST_CONNS" "$vsize" "$keys" \
        --endpoints "$(qkv_url "$f1"),$(qkv_url "$f2")" --op get --consistency eventual || true
}

tradeoff_value_size() {
    log "== cost against value size (${VALUE_SIZES[*]} bytes; $VALUE_KEYS keys)"
    qkv_up value-size "$TRADE_PORT"
    local v leader
    for v in "${VALUE_SIZES[@]}"; do
        leader="$(qkv_leader)" || die "no leader"
        run_bench preload quorumkv put-strong leader 64 "$v" "$VALUE_KEYS" \
            --endpoints "$(qkv_url "$leader")" --pin --preload --requests 1 --warmup 0 ||
            warn "preload of $VALUE_KEYS keys of $v bytes failed"
        cost_runs value-size "$v" "$VALUE_KEYS"
    done
    qkv_down
}

# RSS and data-directory size of every node at KEYS.
record_resources() {
    local keys="$1" leader="$2" id pid rss disk role
    for id in 1 2 3; do
        pid="$(qkv_pid "$id")"
        rss="$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)"
        disk="$(du -sb "$QKV_DIR/node$id" 2>/dev/null | awk '{ print $1 }')"
        role=follower
        [[ "$id" == "$leader" ]] && role=leader
        printf '%s\t%s\t%s\t%s\t%s\n' "$keys" "$id" "$role" "${rss:-}" "${disk:-}" >>"$OUT/resources.tsv"
        log "resources: $keys keys: node $id ($role) RSS ${rss:-?} KiB, disk ${disk:-?} bytes"
    done
}

# recover_follower KEYS KIND: kill -9 a follower and start it with its flags
# (KIND=wiped: replace it instead, with an empty data dir), time until it is
# ready and applied the commit index.
recover_follower() {
    local keys="$1" kind="$2" leader f committed purged t0 t1 disk how
    leader="$(qkv_leader)" || die "no leader"
    f="$(qkv_followers "$leader" | head -n 1)"
    committed="$(qkv_cluster_field "$leader" committed_index)"
    purged="$(qkv_cluster_field "$leader" purged_index)"
    disk="$(du -sb "$QKV_DIR/node$f" 2>/dev/null | awk '{ print $1 }')"
    cluster_sh kill "$f" >>"$OUT/logs/recovery.log" 2>&1 || true
    how="restart from its own data"
    local -a start=(start "$f")
    if [[ "$kind" == wiped ]]; then
        # A node that lost its data may not vote under its old identity (it
        # forgot its votes): it is replaced, as an operator would do it
        # (cluster.sh replace: removed, wiped, added back empty with --join).
        start=(replace "$f")
        if [[ "$purged" =~ ^[0-9]+$ ]]; then
            how="by snapshot: the leader had purged its log up to $purged"
        else
            how="by log replay: the leader had purged nothing"
        fi
    fi
    local offset rc=0
    offset="$(wc -c <"$QKV_DIR/node$f.log" 2>/dev/null || echo 0)"
    t0="$(now_ms)"
    if cluster_sh "${start[@]}" >>"$OUT/logs/recovery.log" 2>&1; then
        qkv_wait_applied "$f" "${committed:-0}" "$RECOVERY_DEADLINE" "$offset" || rc=$?
    else
        warn "node $f did not start; see logs/recovery.log"
        rc=3
    fi
    t1="$(now_ms)"
    local secs
    secs="$(secs_between "$t0" "$t1")"
    case "$rc" in
    0)
        log "recovery: $keys keys: $kind follower $f caught up to index $committed in $secs s ($how)"
        printf '%s\t%s\t%s\t%s\t%s\n' "$keys" "${disk:-}" "$kind" "$secs" "$how" >>"$OUT/recovery.tsv"
        return 0
        ;;
    2)
        warn "recovery: $keys keys: $kind follower $f PANICKED after $secs s ($how); see logs/${QKV_DIR##*/}-node$f.log"
        how="FAILED, the node panicked catching up $how"
        ;;
    3)
        how="FAILED, the node did not start ($how)"
        ;;
    *)
        warn "recovery: $keys keys: $kind follower $f not caught up within $RECOVERY_DEADLINE s ($how)"
        how="FAILED, not caught up within $RECOVERY_DEADLINE s catching up $how"
        ;;
    esac
    printf '%s\t%s\t%s\t%s\t%s\n' "$keys" "${disk:-}" "$kind" "—" "$how" >>"$OUT/recovery.tsv"
    tail -c "+$((offset + 1))" "$QKV_DIR/node$f.log" 2>/dev/null | grep -m 1 -A 1 'panicked at' \
        >>"$OUT/logs/recovery.log" || true
    # Bring the node back, so the sweep goes on with three healthy nodes: a
    # restart once more, or a second replacement.
    cluster_sh kill "$f" >>"$OUT/logs/recovery.log" 2>&1 || true
    offset="$(wc -c <"$QKV_DIR/node$f.log" 2>/dev/null || echo 0)"
    cluster_sh "${start[@]}" >>"$OUT/logs/recovery.log" 2>&1 || true
    qkv_wait_applied "$f" "${committed:-0}" "$RECOVERY_DEADLINE" "$offset" ||
        die "node $f did not come back a second time either"
    log "recovery: node $f came back and caught up on a second try; the sweep goes on"
    return 1
}

tradeoff_key_count() {
    log "== cost against key count (${KEY_COUNTS[*]}; load budget $PRELOAD_BUDGET s each)"
    printf 'keys\tload_s\tstatus\n' >"$OUT/keycount.tsv"
    printf 'keys\tnode\trole\trss_kib\tdisk_bytes\n' >"$OUT/resources.tsv"
    printf 'keys\tdisk_bytes\tkind\tseconds\thow\n' >"$OUT/recovery.tsv"
    qkv_up key-count "$TRADE_PORT" "${BENCH_KEYS_NODE_ARGS:-}"
    local n leader t0 t1 status
    for n in "${KEY_COUNTS[@]}"; do
        leader="$(qkv_leader)" || die "no leader"
        log "key-count: loading $n keys (strong, 64 connections, budget $PRELOAD_BUDGET s)"
        t0="$(now_ms)"
        status=ok
        RUN_TIMEOUT="$PRELOAD_BUDGET" run_bench preload quorumkv put-strong leader 64 256 "$n" \
            --endpoints "$(qkv_url "$leader")" --pin --preload --requests 1 --warmup 0 --timeout 30s ||
            status="not loaded within $PRELOAD_BUDGET s"
        t1="$(now_ms)"
        local failed
        failed="$(json_field "$(cat "$OUT/raw/preload.quorumkv.put-strong.leader.c64.v256.k$n.json" 2>/dev/null)" preload_failed)"
        if [[ "$status" == ok && "$failed" != 0 ]]; then
            status="${failed:-?} keys failed to load"
        fi
        printf '%s\t%s\t%s\n' "$n" "$(secs_between "$t0" "$t1")" "$status" >>"$OUT/keycount.tsv"
        log "key-count: $n keys: load took $(secs_between "$t0" "$t1") s: $status"
        if [[ "$status" != ok ]]; then
            warn "key-count: stopping the sweep at $n keys ($status)"
            break
        fi
        cost_runs key-count 256 "$n"
        leader="$(qkv_leader)" || die "no leader"
        record_resources "$n" "$leader"
        recover_follower "$n" restart || true
        recover_follower "$n" wiped || true
    done
    qkv_down
}

tradeoffs() {
    local part
    for part in "${PARTS[@]}"; do
        case "$part" in
        staleness) tradeoff_staleness ;;
        loss) tradeoff_loss ;;
        value-size) tradeoff_value_size ;;
        key-count) tradeoff_key_count ;;
        *) die "unknown trade-off part '$part' (known: ${TRADEOFF_PARTS[*]})" ;;
        esac
    done
}
