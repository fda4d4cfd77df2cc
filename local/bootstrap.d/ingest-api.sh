#!/usr/bin/env bash
# ingest-api test tooling: Debian's chromium, for the tracker.js browser test
# (tests/ingest/test_browser.py drives it headless over the DevTools protocol).
# Idempotent: a second run only checks that the package is installed.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }

if installed chromium; then
  echo "[bootstrap ingest-api] chromium: present ($(dpkg-query -W -f='${Version}' chromium))"
  exit 0
fi
echo "[bootstrap ingest-api] chromium: installing (Debian package)"
if ! apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
chromium --version
