#!/usr/bin/env bash
# The failover figure: kill -9 the leader N times (default 20) under steady
# strong writes through the followers (release build), and report the
# unavailability after each kill -- from the kill to the first acknowledged
# write invoked after it, through another node: min / median / p90 / max.
#
# Usage: scripts/failover-bench.sh [N] [torture failover flags...]
#   e.g. scripts/failover-bench.sh 50 --writers 8
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

kills=20
if [[ $# -gt 0 && "$1" =~ ^[0-9]+$ ]]; then
    kills="$1"
    shift
fi

cargo build --release --bin quorumkv --bin torture >&2
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
exec "$TARGET/release/torture" failover --kills "$kills" "$@"
