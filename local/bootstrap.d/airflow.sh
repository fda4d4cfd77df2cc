#!/usr/bin/env bash
# The batch side (issue #15, docs/orchestration.md), idempotent and cached like
# local/bootstrap.sh:
#   - Debian's prometheus-pushgateway (the batch jobs push their figures to it);
#   - Airflow's own environment, ${CLICKSTREAM_AIRFLOW_DIR:-$STATE/airflow}/venv, from
#     orchestration/runtime/uv.lock (Airflow pins FastAPI below the collector's, so it cannot
#     share the workspace venv). uv's cache keeps the wheels, so a fresh clone installs it in
#     seconds; the orchestration and service packages are installed editable from this checkout;
#   - Airflow's metadata database (SQLite, `airflow db migrate`) in .../airflow/home.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${CLICKSTREAM_STATE_DIR:-$REPO/.state}"
AIRFLOW_DIR="${CLICKSTREAM_AIRFLOW_DIR:-$STATE/airflow}"
RUNTIME="$REPO/orchestration/runtime"

say() { printf '[bootstrap airflow] %s\n' "$*"; }
# shellcheck source=../apt.sh
source "$REPO/local/apt.sh"

# --- pushgateway --------------------------------------------------------------------------------
if installed prometheus-pushgateway; then
    say "prometheus-pushgateway: present ($(dpkg-query -W -f='${Version}' prometheus-pushgateway))"
else
    say "prometheus-pushgateway: installing (Debian package)"
    # The package would start a system-wide service; the local stack runs its own instance.
    apt_install prometheus-pushgateway
fi

# --- Airflow's environment ------------------------------------------------------------------------
UV="$(command -v uv || echo "python3 -m uv")"
key="$(sha256sum "$RUNTIME/uv.lock" "$RUNTIME/pyproject.toml" | sha256sum | cut -c1-16)"
stamp="$AIRFLOW_DIR/venv/.stamp"
if [[ -x "$AIRFLOW_DIR/venv/bin/airflow" && "$(cat "$stamp" 2>/dev/null)" == "$key" ]]; then
    say "venv: present ($AIRFLOW_DIR/venv)"
else
    say "venv: syncing orchestration/runtime/uv.lock into $AIRFLOW_DIR/venv"
    mkdir -p "$AIRFLOW_DIR"
    UV_PROJECT_ENVIRONMENT="$AIRFLOW_DIR/venv" $UV sync --project "$RUNTIME" --frozen --quiet \
        --python 3.11
    echo "$key" >"$stamp"
fi

# --- Airflow's metadata database -----------------------------------------------------------------
home="$AIRFLOW_DIR/home"
version="$("$AIRFLOW_DIR/venv/bin/python" -c 'import importlib.metadata as m; print(m.version("apache-airflow"))')"
if [[ "$(cat "$home/.migrated-version" 2>/dev/null)" == "$version" ]]; then
    say "metadata database: migrated ($home, Airflow $version)"
else
    say "metadata database: airflow db migrate ($home, Airflow $version)"
    mkdir -p "$home"
    AIRFLOW_HOME="$home" AIRFLOW__CORE__LOAD_EXAMPLES=False \
        AIRFLOW__CORE__DAGS_FOLDER="$REPO/orchestration/src/orchestration/dags" \
        "$AIRFLOW_DIR/venv/bin/airflow" db migrate >"$home/migrate.log" 2>&1 \
        || { tail -20 "$home/migrate.log" >&2; exit 1; }
    echo "$version" >"$home/.migrated-version"
    date -u +%FT%TZ >"$home/.migrated"
fi
