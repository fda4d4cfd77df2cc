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

# --- Trino (Athena's engine) for the lake's Glue tables ---------------------------------------
# trino-server-core (tar.gz) plus the Hive connector (zip) from Maven Central; Maven keeps both
# in the local repository (~/.m2), so a fresh clone only unpacks them.
trino_dir="$CACHE/trino-$TRINO_VERSION"
if [[ -f "$trino_dir/.stamp" && "$(cat "$trino_dir/.stamp")" == "$TRINO_VERSION" ]]; then
    say "trino: $TRINO_VERSION present"
else
    say "trino: fetching trino-server-core and trino-hive $TRINO_VERSION (Maven)"
    tmp="$trino_dir.tmp.$$"
    rm -rf "$tmp" && mkdir -p "$tmp/dl"
    for artifact in "io.trino:trino-server-core:$TRINO_VERSION:tar.gz" "io.trino:trino-hive:$TRINO_VERSION:zip"; do
        if ! mvn -B -q -Dstyle.color=never dependency:copy -Dartifact="$artifact" \
            -DoutputDirectory="$tmp/dl" >"$tmp/mvn.log" 2>&1; then
            tail -20 "$tmp/mvn.log" >&2
            echo "trino: Maven could not fetch $artifact" >&2
            exit 1
        fi
    done
    tar xzf "$tmp/dl/trino-server-core-$TRINO_VERSION.tar.gz" -C "$tmp"
    python3 -m zipfile -e "$tmp/dl/trino-hive-$TRINO_VERSION.zip" "$tmp/trino-server-core-$TRINO_VERSION/plugin/"
    mv "$tmp/trino-server-core-$TRINO_VERSION/plugin/trino-hive-$TRINO_VERSION" \
        "$tmp/trino-server-core-$TRINO_VERSION/plugin/hive"
    echo "$TRINO_VERSION" >"$tmp/trino-server-core-$TRINO_VERSION/.stamp"
    rm -rf "$trino_dir"
    mv "$tmp/trino-server-core-$TRINO_VERSION" "$trino_dir"
    rm -rf "$tmp"
    say "trino: $(du -sh "$trino_dir" | cut -f1) in $trino_dir"
fi

# Trino 476 needs Java 24+. The machine image has a Temurin 25 JDK beside OpenJDK 17; Debian 12
# has no such package, so a machine without one cannot run the Trino tests: say so clearly.
trino_java=""
for release in /usr/lib/jvm/*/release; do
    [[ -f "$release" ]] || continue
    major="$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$release")"
    if [[ -n "$major" && "$major" -ge 24 && -x "$(dirname "$release")/bin/java" ]]; then
        trino_java="$(dirname "$release")"
        break
    fi
done
if [[ -z "$trino_java" ]]; then
    echo "bootstrap aws: no JDK 24+ under /usr/lib/jvm: Trino $TRINO_VERSION cannot run" >&2
    exit 1
fi
say "trino: Java from $trino_java"

# --- kinesis-local (kinesis-mock built for Node), the local Kinesis endpoint (BUS=kinesis) ----
# npm keeps the package in its cache (~/.npm), so a fresh clone installs it offline-fast.
kinesis_dir="$CACHE/kinesis-local-$KINESIS_LOCAL_VERSION"
if [[ -f "$kinesis_dir/node_modules/kinesis-local/main.js" ]]; then
    say "kinesis-local: $KINESIS_LOCAL_VERSION present"
else
    command -v npm >/dev/null || { echo "npm is required for kinesis-local" >&2; exit 1; }
    say "kinesis-local: npm install $KINESIS_LOCAL_VERSION"
    tmp="$kinesis_dir.tmp.$$"
    rm -rf "$tmp" && mkdir -p "$tmp"
    npm install --no-audit --no-fund --silent --prefix "$tmp" "kinesis-local@$KINESIS_LOCAL_VERSION"
    rm -rf "$kinesis_dir"
    mv "$tmp" "$kinesis_dir"
fi
