#!/usr/bin/env bash
# What `make bench` needs besides the project: Debian's nmap (the probe benchmark runs its
# smtp-open-relay, http-open-proxy and socks-open-proxy scripts side by side with our scanner).
# Idempotent and silent when nmap is there; apt's chatter is shown only when it fails. Without
# root or apt it says what is missing and carries on (the benchmark then notes "nmap skipped").
set -euo pipefail

command -v nmap >/dev/null 2>&1 && [ -d /usr/share/nmap/scripts ] && exit 0

log() { echo "bench-deps: $*" >&2; }
quietly() {
    local out
    out="$(mktemp)"
    if ! "$@" >"$out" 2>&1; then
        cat "$out" >&2
        rm -f "$out"
        log "failed: $*"
        return 1
    fi
    rm -f "$out"
}

if ! command -v apt-get >/dev/null 2>&1; then
    log "nmap missing and no apt-get here; the probe benchmark will skip nmap"
    exit 0
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        log "nmap missing and not root; the probe benchmark will skip nmap (apt-get install nmap)"
        exit 0
    fi
fi
log "installing nmap"
export DEBIAN_FRONTEND=noninteractive
# nmap-common carries the NSE scripts; no recommends (ndiff, python) needed.
if ! quietly "${SUDO[@]}" apt-get install -y -qq --no-install-recommends nmap; then
    quietly "${SUDO[@]}" apt-get update -qq || true
    quietly "${SUDO[@]}" apt-get install -y -qq --no-install-recommends nmap \
        || { log "could not install nmap; the probe benchmark will skip nmap"; exit 0; }
fi
