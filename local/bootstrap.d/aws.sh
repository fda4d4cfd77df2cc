#!/usr/bin/env bash
# The AWS path's tooling (issue #14), idempotent and cached like local/bootstrap.sh:
#   tflint (go install; the Go build and module caches make a fresh clone's build quick)
#     -> ${CLICKSTREAM_BIN_DIR}/tflint, checked by tests/aws/test_terraform.py
# checkov comes from local/deploy-tools.sh (its own virtualenv).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=../versions.env
source "$REPO/local/versions.env"
STATE="${CLICKSTREAM_STATE_DIR:-$REPO/.state}"
BIN="${CLICKSTREAM_BIN_DIR:-$STATE/bin}"
CACHE="${CLICKSTREAM_CACHE_DIR:-$STATE/cache}"
mkdir -p "$BIN" "$CACHE"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

say() { printf '[bootstrap aws] %s\n' "$*"; }

# --- tflint ------------------------------------------------------------------------------------
stamp="$BIN/.tflint.version"
if [[ -x "$BIN/tflint" && "$(cat "$stamp" 2>/dev/null)" == "$TFLINT_VERSION" ]]; then
    say "tflint: $TFLINT_VERSION present"
else
    command -v go >/dev/null || { echo "go is required to build tflint" >&2; exit 1; }
    say "tflint: go install $TFLINT_VERSION"
    GOBIN="$BIN" go install "github.com/terraform-linters/tflint@$TFLINT_VERSION"
    echo "$TFLINT_VERSION" >"$stamp"
fi
