#!/usr/bin/env bash
# Install what the test suite needs and may be missing on a fresh Debian machine:
#   - strace, curl, iptables, ip (iproute2), systemd-analyze (systemd), promtool
#     (package prometheus: `promtool check metrics`) and
#     chromium (headless, for the dashboard test) (apt-get, only when missing;
#     no service is started by the install)
#   - the rustfmt and clippy components (rustup, only when missing)
# Safe to run repeatedly: when everything is present it only checks and exits.
# Used by .ci/run and scripts/test.sh.
set -euo pipefail

log() { printf '[deps] %s\n' "$*" >&2; }

# Commands that must be on PATH -> Debian package that provides them.
declare -A APT_PKG_FOR=([strace]=strace [curl]=curl [promtool]=prometheus [chromium]=chromium [iptables]=iptables [ip]=iproute2 [systemd-analyze]=systemd)

missing_pkgs=()
for cmd in "${!APT_PKG_FOR[@]}"; do
    if ! command -v "$cmd" >/dev/null 2>&1; then
        missing_pkgs+=("${APT_PKG_FOR[$cmd]}")
    fi
done

if ((${#missing_pkgs[@]} > 0)); then
    log "missing: ${missing_pkgs[*]}"
    if ! command -v apt-get >/dev/null 2>&1; then
        log "apt-get not found; please install these with your package manager: ${missing_pkgs[*]}"
        exit 1
    fi
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            log "not root and sudo not available; run as root or install: ${missing_pkgs[*]}"
            exit 1
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    # The prometheus package would start its server: we want only promtool.
    # A policy-rc.d that says "no" keeps the install from starting services.
    policy=/usr/sbin/policy-rc.d
    made_policy=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod +x "$policy"
        made_policy=1
    fi
    log "apt-get update"
    "${sudo[@]}" apt-get update
    log "apt-get install -y --no-install-recommends ${missing_pkgs[*]}"
    status=0
    "${sudo[@]}" apt-get install -y --no-install-recommends "${missing_pkgs[@]}" || status=$?
    if ((made_policy)); then
        "${sudo[@]}" rm -f "$policy"
    fi
    ((status == 0)) || exit "$status"
fi

# cargo fmt / cargo clippy are part of the test command; a minimal rustup profile lacks them.
missing_components=()
cargo fmt --version >/dev/null 2>&1 || missing_components+=(rustfmt)
cargo clippy --version >/dev/null 2>&1 || missing_components+=(clippy)
if ((${#missing_components[@]} > 0)); then
    if command -v rustup >/dev/null 2>&1; then
        log "rustup component add ${missing_components[*]}"
        rustup component add "${missing_components[@]}"
    else
        log "cargo components missing (${missing_components[*]}) and rustup not found; please install them"
        exit 1
    fi
fi

log "ok: strace, curl, iptables, ip, systemd-analyze, promtool, chromium, cargo fmt, cargo clippy present"
