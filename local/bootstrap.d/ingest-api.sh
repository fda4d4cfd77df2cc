#!/usr/bin/env bash
# ingest-api test tooling: Debian's chromium, for the tracker.js browser test
# (tests/ingest/test_browser.py drives it headless over the DevTools protocol).
# Idempotent: a second run only checks that the package is installed.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# shellcheck source=../apt.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/apt.sh"

if installed chromium; then
  echo "[bootstrap ingest-api] chromium: present ($(dpkg-query -W -f='${Version}' chromium))"
  exit 0
fi
echo "[bootstrap ingest-api] chromium: installing (Debian package)"
apt_install chromium
chromium --version
