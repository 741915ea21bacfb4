#!/usr/bin/env bash
# Debian packages the test suite uses: headless Chromium for page tests, and the real servers the
# probe tests talk to (installed with their services' auto-start disabled).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for p in chromium; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ -f .ci/install-peers.sh ]; then
  bash .ci/install-peers.sh
fi
