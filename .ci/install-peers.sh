#!/usr/bin/env bash
# Installs the real servers that tests/peers starts on loopback: Postfix, Squid, tinyproxy,
# Dante and microsocks from Debian, none of them started; Exim (which conflicts with Postfix)
# is only unpacked into var/peers/exim. Idempotent, and quiet when everything is present.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXIM_DIR="$ROOT/var/peers/exim"
DEB_DIR="$ROOT/var/peers/debs"
# sasl2-bin: saslpasswd2 builds the SASL database of the auth Postfix (saslauthd stays off).
PACKAGES=(postfix squid tinyproxy dante-server microsocks sasl2-bin)
# Exim's shared libraries that a Debian 12 base lacks; plain libraries, safe to install.
EXIM_LIBS=(libidn12 libgnutls-dane0 libpcre2-8-0 libdb5.3 libgnutls30 libnsl2 libcrypt1)
EXIM_DEBS=(exim4-base exim4-daemon-light exim4-config)

log() { echo "install-peers: $*" >&2; }
# apt is chatty even with -qq (debconf notes on stderr); show its output only when it fails.
quietly() {
    local out
    out="$(mktemp)"
    if ! "$@" >"$out" 2>&1; then
        cat "$out" >&2
        rm -f "$out"
        log "failed: $*"
        exit 1
    fi
    rm -f "$out"
}

missing=()
for pkg in "${PACKAGES[@]}" "${EXIM_LIBS[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$' \
        || missing+=("$pkg")
done
need_exim=0
[ -x "$EXIM_DIR/usr/sbin/exim4" ] || need_exim=1
# Exim resolves its compiled-in user at start, before reading any configuration.
need_exim_user=0
getent passwd Debian-exim >/dev/null || need_exim_user=1

if [ "${#missing[@]}" -eq 0 ] && [ "$need_exim" -eq 0 ] && [ "$need_exim_user" -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root to install: ${missing[*]:-exim}"
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
updated=0
apt_update() {
    if [ "$updated" -eq 0 ]; then
        quietly apt-get update -qq
        updated=1
    fi
}

if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    # No daemon may start on install: invoke-rc.d asks policy-rc.d, and 101 means "not allowed".
    policy=/usr/sbin/policy-rc.d
    saved=""
    if [ -e "$policy" ] && ! grep -qx 'exit 101' "$policy"; then
        saved="$(mktemp)"
        cp -p "$policy" "$saved"
    fi
    if [ -n "$saved" ] || [ ! -e "$policy" ]; then
        created=$([ -e "$policy" ] && echo 0 || echo 1)
        restore() {
            if [ -n "$saved" ]; then
                mv -f "$saved" "$policy"
            elif [ "$created" = 1 ]; then
                rm -f "$policy"
            fi
        }
        trap restore EXIT
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
    fi
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt_update
    quietly apt-get install -y -qq --no-install-recommends "${missing[@]}"
    # Debian without systemd may still have started something; stop it by its own PID file.
    for pidfile in /var/spool/postfix/pid/master.pid /run/squid.pid /var/run/squid.pid \
        /run/tinyproxy/tinyproxy.pid /run/danted.pid /var/run/danted.pid \
        /run/saslauthd/saslauthd.pid; do
        if [ -s "$pidfile" ]; then
            pid="$(tr -dc '0-9' <"$pidfile")"
            if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
                log "stopping daemon started by the install (pid $pid from $pidfile)"
                kill "$pid" || true
            fi
        fi
    done
fi

if [ "$need_exim_user" -eq 1 ]; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin Debian-exim
fi

if [ "$need_exim" -eq 1 ]; then
    log "unpacking Exim into $EXIM_DIR"
    apt_update
    rm -rf "$DEB_DIR" "$EXIM_DIR.tmp"
    mkdir -p "$DEB_DIR" "$EXIM_DIR.tmp"
    (cd "$DEB_DIR" && quietly apt-get download -qq -o APT::Sandbox::User=root "${EXIM_DEBS[@]}")
    for deb in "$DEB_DIR"/*.deb; do
        dpkg -x "$deb" "$EXIM_DIR.tmp"
    done
    rm -rf "$EXIM_DIR"
    mv "$EXIM_DIR.tmp" "$EXIM_DIR"
    rm -rf "$DEB_DIR"
    "$EXIM_DIR/usr/sbin/exim4" -C /dev/null -bV >/dev/null 2>&1 || {
        log "unpacked exim4 does not run:"
        "$EXIM_DIR/usr/sbin/exim4" -C /dev/null -bV >&2 || true
        exit 1
    }
fi
