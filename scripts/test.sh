#!/usr/bin/env bash
# The project's whole test command (the README's and CI's): formatting, lints, all tests.
# Installs missing test dependencies first (see scripts/deps.sh). Fails fast.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() {
    printf '\n==> %s\n' "$*" >&2
    "$@"
}

step "$ROOT/scripts/deps.sh"
step cargo fmt --all -- --check
step cargo clippy --workspace --all-targets -- -D warnings
# Keep the output to count the tests of every crate in one closing line.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
step cargo test --workspace --all-targets -- --test-threads 2 2>&1 | tee "$log"
printf '\n==> all checks passed\n' >&2
awk '/^test result:/ { passed += $4; failed += $6 }
     END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
