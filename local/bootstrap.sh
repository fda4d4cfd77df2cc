#!/usr/bin/env bash
# Installs what the local platform needs and is not there yet; cached, idempotent, no TTY.
#
#   bash local/bootstrap.sh
#
# Installs: Debian packages (postgresql, prometheus, and a JDK/Maven if missing), uv (pip),
# versitygw (go install), the Kafka broker jars and the Spark connector jars (Maven).
# Downloads land under the state root, which is git-ignored:
#   ${CLICKSTREAM_STATE_DIR:-<repo>/.state}/{bin,cache}
# CLICKSTREAM_BIN_DIR and CLICKSTREAM_CACHE_DIR override those two folders.
# Every step writes a stamp keyed on its versions, so a second run only checks stamps.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL_DIR="$REPO/local"
# shellcheck source=versions.env
source "$LOCAL_DIR/versions.env"

STATE="${CLICKSTREAM_STATE_DIR:-$REPO/.state}"
BIN="${CLICKSTREAM_BIN_DIR:-$STATE/bin}"
CACHE="${CLICKSTREAM_CACHE_DIR:-$STATE/cache}"
export DEBIAN_FRONTEND=noninteractive

T0=$SECONDS
step() { printf '[bootstrap %3ds] %s\n' "$((SECONDS - T0))" "$*"; }
die() { printf 'bootstrap: error: %s\n' "$*" >&2; exit 1; }

mkdir -p "$STATE" "$BIN" "$CACHE"

# One bootstrap at a time per state root (make up in two shells must not interleave downloads).
exec 9>"$STATE/.bootstrap.lock"
flock 9

# --- Debian packages -------------------------------------------------------------------------
# shellcheck source=apt.sh
source "$LOCAL_DIR/apt.sh"

apt_missing=()
installed "postgresql-$POSTGRES_MAJOR" || apt_missing+=("postgresql")
installed prometheus || apt_missing+=("prometheus")
command -v java >/dev/null || apt_missing+=("openjdk-17-jre-headless")
command -v mvn >/dev/null || apt_missing+=("maven")

if ((${#apt_missing[@]})); then
    step "apt: installing ${apt_missing[*]}"
    # Their scripts would start system-wide postgres/prometheus services (refused).
    apt_install "${apt_missing[@]}"
else
    step "apt: postgresql-$POSTGRES_MAJOR, prometheus, java, maven present"
fi
[[ -x "/usr/lib/postgresql/$POSTGRES_MAJOR/bin/postgres" ]] || die "postgres $POSTGRES_MAJOR binaries missing"
[[ -x /usr/bin/prometheus ]] || die "/usr/bin/prometheus missing"

# --- uv ----------------------------------------------------------------------------------------
uv_version="$(uv --version 2>/dev/null | awk '{print $2}' || true)"
if [[ "$uv_version" != "$UV_VERSION" ]]; then
    step "uv: installing $UV_VERSION (found: ${uv_version:-none})"
    py="$(command -v python3.11 || command -v python3)" || die "python3 not found"
    if ! "$py" -m pip --version >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
    fi
    # Debian's own python refuses pip installs without this flag (PEP 668).
    "$py" -m pip install -q --disable-pip-version-check "uv==$UV_VERSION" \
        || "$py" -m pip install -q --disable-pip-version-check --break-system-packages \
            "uv==$UV_VERSION"
else
    step "uv: $UV_VERSION present"
fi

# --- versitygw ---------------------------------------------------------------------------------
# `go install` embeds no version in --version output, so a stamp file records what was built.
vgw_stamp="$BIN/.versitygw.version"
if [[ -x "$BIN/versitygw" && "$(cat "$vgw_stamp" 2>/dev/null)" == "$VERSITYGW_VERSION" ]]; then
    step "versitygw: $VERSITYGW_VERSION present"
else
    command -v go >/dev/null || die "go is required to build versitygw"
    step "versitygw: go install $VERSITYGW_VERSION"
    GOBIN="$BIN" go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
    echo "$VERSITYGW_VERSION" >"$vgw_stamp"
fi

# --- Maven-collected jar folders ---------------------------------------------------------------
# fetch_jars NAME POM_DIR OUT_DIR KEY -Dprop=value...
# KEY (versions + pom checksum) is compared with OUT_DIR/.stamp; on a change the folder is
# rebuilt in a temporary folder and swapped in, so an interrupted run leaves no half folder.
fetch_jars() {
    local name="$1" pom_dir="$2" out="$3" key="$4"
    shift 4
    key="$key pom=$(sha256sum "$pom_dir/pom.xml" | cut -c1-16)"
    if [[ -f "$out/.stamp" && "$(cat "$out/.stamp")" == "$key" ]]; then
        step "$name: $(find "$out" -name '*.jar' | wc -l) jars present"
        return
    fi
    step "$name: resolving with Maven ($key)"
    local tmp="$out.tmp.$$"
    rm -rf "$tmp"
    local log="$out.mvn.log"
    # Maven's output goes to a log (its colour resets clutter a non-TTY); shown on failure.
    if ! (cd "$pom_dir" && mvn -B -q -Dstyle.color=never "$@" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp") >"$log" 2>&1; then
        tail -40 "$log" >&2
        die "$name: Maven failed (full log: $log)"
    fi
    echo "$key" >"$tmp/.stamp"
    rm -rf "$out"
    mv "$tmp" "$out"
    step "$name: $(find "$out" -name '*.jar' | wc -l) jars, $(du -sh "$out" | cut -f1)"
}

fetch_jars kafka-libs "$LOCAL_DIR/kafka" "$CACHE/kafka-libs" \
    "kafka=$KAFKA_VERSION log4j=$LOG4J_VERSION" \
    -Dkafka.version="$KAFKA_VERSION" -Dlog4j.version="$LOG4J_VERSION"

fetch_jars spark-jars "$LOCAL_DIR/spark" "$CACHE/spark-jars" \
    "spark-kafka=$SPARK_KAFKA_VERSION hadoop-aws=$HADOOP_AWS_VERSION aws-sdk=$AWS_SDK_VERSION" \
    -Dspark.kafka.version="$SPARK_KAFKA_VERSION" -Dhadoop.aws.version="$HADOOP_AWS_VERSION" \
    -Daws.sdk.version="$AWS_SDK_VERSION"

# The S3A jars only work with the hadoop-client-api that pyspark bundles; warn on a mismatch
# once the Makefile's `uv sync` has installed pyspark.
for api in "$REPO"/.venv/lib/python3*/site-packages/pyspark/jars/hadoop-client-api-*.jar; do
    [[ -e "$api" ]] || continue
    bundled="$(basename "$api" .jar)"
    bundled="${bundled#hadoop-client-api-}"
    if [[ "$bundled" != "$HADOOP_AWS_VERSION" ]]; then
        echo "bootstrap: warning: pyspark bundles hadoop $bundled but HADOOP_AWS_VERSION=$HADOOP_AWS_VERSION" >&2
    fi
done

# --- Per-service extras ------------------------------------------------------------------------
# A service may need more for its tests (a browser, npm packages): local/bootstrap.d/*.sh, each
# idempotent and cached like the steps above, run in name order with the same state folders.
export CLICKSTREAM_STATE_DIR="$STATE" CLICKSTREAM_BIN_DIR="$BIN" CLICKSTREAM_CACHE_DIR="$CACHE"
for extra in "$LOCAL_DIR"/bootstrap.d/*.sh; do
    [[ -e "$extra" ]] || continue
    bash "$extra" || die "$(basename "$extra") failed"
done

step "done (state: $STATE)"
