#!/usr/bin/env bash
# Tracker SDKs for the compatibility tests (tests/trackers): the real npm packages pinned in
# tests/trackers/sdk/package-lock.json, installed with `npm ci` (npm's own cache makes a fresh
# clone's install an offline one) and bundled for the browser with esbuild, one script per
# SDK, into ${CLICKSTREAM_CACHE_DIR}/tracker-sdks/dist/<sdk>.js.
# Idempotent: a stamp keyed on the lock file, the entry scripts and node's version.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SRC="$REPO/tests/trackers/sdk"
STATE="${CLICKSTREAM_STATE_DIR:-$REPO/.state}"
CACHE="${CLICKSTREAM_CACHE_DIR:-$STATE/cache}"
OUT="$CACHE/tracker-sdks"
say() { echo "[bootstrap tracker-sdks] $*"; }

if ! command -v npm >/dev/null; then
  say "npm missing: installing Debian's nodejs and npm"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; }
fi

key="node=$(node --version) $(cat "$SRC"/package.json "$SRC"/package-lock.json "$SRC"/*.js | sha256sum | cut -c1-16)"
if [[ -f "$OUT/.stamp" && "$(cat "$OUT/.stamp")" == "$key" ]]; then
  say "bundles present ($(ls "$OUT/dist" | tr '\n' ' '))"
  exit 0
fi

say "npm ci and esbuild ($key)"
tmp="$OUT.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp/dist"
cp "$SRC"/package.json "$SRC"/package-lock.json "$SRC"/*.js "$tmp/"
log="$CACHE/tracker-sdks.log"
# No install scripts: esbuild's binary comes from its platform package, nothing else needs one.
if ! (cd "$tmp" && npm ci --prefer-offline --ignore-scripts --no-audit --no-fund) >"$log" 2>&1; then
  tail -30 "$log" >&2
  exit 1
fi
for entry in "$SRC"/*.js; do
  name="$(basename "$entry")"
  (cd "$tmp" && ./node_modules/.bin/esbuild "$name" --bundle --format=iife --target=es2020 \
    --log-level=warning --outfile="dist/$name") >>"$log" 2>&1 || { tail -30 "$log" >&2; exit 1; }
done
echo "$key" >"$tmp/.stamp"
rm -rf "$OUT"
mv "$tmp" "$OUT"
say "bundled: $(cd "$OUT/dist" && du -h -- *.js | tr '\n\t' '  ')"
