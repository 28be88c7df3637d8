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
step cargo test --workspace --all-targets -- --test-threads 2
printf '\n==> all checks passed\n' >&2
