#!/usr/bin/env bash
# Installs the tools that tests/deploy needs, idempotently and cached, into
#   ${CLICKSTREAM_STATE_DIR:-<repo>/.state}/bin     helm, promtool, checkov (links)
#   ${CLICKSTREAM_STATE_DIR:-<repo>/.state}/cache   CRD schemas, skaffold schema, helm homes
#   ${CLICKSTREAM_STATE_DIR:-<repo>/.state}/venvs   checkov's own virtualenv
#
# Usage: local/deploy-tools.sh            install what is missing (a no-op when all is there)
#        local/deploy-tools.sh env        print `export` lines for HELM_*_HOME and PATH
#        local/deploy-tools.sh check      exit 1 (listing what is missing) without installing
#
# Sources: helm from the Go module proxy (`go install`), the prometheus-operator CRDs and the
# skaffold JSON schema from those projects' module sources (`go mod download`), promtool from
# Debian's `prometheus` package, checkov from PyPI, and the Kubernetes control plane of the
# cluster tests (local/kubernetes/control-plane.sh, Go module proxy). Nothing else is downloaded.
set -euo pipefail

HELM_VERSION="v3.22.0"
PROMETHEUS_OPERATOR_VERSION="v0.87.1"   # the module proxy serves v0.87.1 (not v0.87.0 / v0.86.x)
SKAFFOLD_MODULE_VERSION="v2.16.1"       # ships schemas up to skaffold/v4beta13
SKAFFOLD_SCHEMA_VERSION="v4beta13"      # must equal apiVersion in skaffold.yaml
CHECKOV_VERSION="3.3.30"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${CLICKSTREAM_STATE_DIR:-$REPO/.state}"
BIN="$STATE/bin"
CACHE="$STATE/cache"
VENVS="$STATE/venvs"
CRD_DIR="$CACHE/crds"
SCHEMA_DIR="$CACHE/schemas"

export HELM_CACHE_HOME="$CACHE/helm/cache"
export HELM_CONFIG_HOME="$CACHE/helm/config"
export HELM_DATA_HOME="$CACHE/helm/data"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

log() { printf '[deploy-tools] %s\n' "$*" >&2; }

CRDS=(monitoring.coreos.com_servicemonitors.yaml
      monitoring.coreos.com_podmonitors.yaml
      monitoring.coreos.com_prometheusrules.yaml
      monitoring.coreos.com_alertmanagerconfigs.yaml)

missing() {
  local m=()
  helm_ok || m+=("helm $HELM_VERSION")
  [[ -x "$BIN/promtool" ]] || m+=(promtool)
  checkov_ok || m+=("checkov $CHECKOV_VERSION")
  crds_ok || m+=("prometheus-operator $PROMETHEUS_OPERATOR_VERSION CRDs")
  [[ -s "$SCHEMA_DIR/skaffold-$SKAFFOLD_SCHEMA_VERSION.json" ]] || m+=("skaffold schema $SKAFFOLD_SCHEMA_VERSION")
  bash "$REPO/local/kubernetes/control-plane.sh" check 2>/dev/null || m+=("Kubernetes control plane")
  printf '%s\n' "${m[@]+"${m[@]}"}"
}

# go mod download -json prints the module's extracted directory as "Dir".
go_module_dir() {
  local out dir
  out="$(cd "$CACHE" && go mod download -json "$1@$2")"
  dir="$(printf '%s' "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("Dir","")); sys.exit(1 if d.get("Error") else 0)')" \
    || { log "go mod download $1@$2 failed: $out"; return 1; }
  printf '%s' "$dir"
}

# The stamp file records how the binary was built (version + stamped Kubernetes version).
HELM_STAMP="$BIN/.helm.stamp"
helm_ok() {
  [[ -x "$BIN/helm" && -f "$HELM_STAMP" && "$(cat "$HELM_STAMP")" == "$HELM_VERSION k8s-stamped" ]] \
    && "$BIN/helm" version --short 2>/dev/null | grep -q "^$HELM_VERSION"
}

install_helm() {
  helm_ok && return 0
  command -v go >/dev/null || { log "go is required to build helm"; return 1; }
  log "building helm $HELM_VERSION (go install)"
  # Stamp what helm's own Makefile stamps; a plain `go install` reports version "v3.22" and a
  # default Kubernetes version of v1.20, which fails charts with a kubeVersion constraint.
  # The Kubernetes version is the client-go minor helm is built with (k8s.io/client-go v0.N.x).
  local gomod client_go k8s_minor pkg=helm.sh/helm/v3
  gomod="$(cd "$CACHE" && go mod download -json "$pkg@$HELM_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  client_go="$(awk '$1 == "k8s.io/client-go" {print $2}' "$gomod")"
  k8s_minor="$(echo "$client_go" | cut -d. -f2)"
  [[ "$k8s_minor" =~ ^[0-9]+$ ]] || { log "cannot read client-go version from $gomod"; return 1; }
  GOBIN="$BIN" go install -ldflags "-s -w -X $pkg/internal/version.version=$HELM_VERSION \
      -X $pkg/pkg/chartutil.k8sVersionMajor=1 -X $pkg/pkg/chartutil.k8sVersionMinor=$k8s_minor \
      -X $pkg/pkg/lint/rules.k8sVersionMajor=1 -X $pkg/pkg/lint/rules.k8sVersionMinor=$k8s_minor" \
    "$pkg/cmd/helm@$HELM_VERSION"
  echo "$HELM_VERSION k8s-stamped" > "$HELM_STAMP"
}

crds_ok() {
  local crd
  [[ "$(cat "$CRD_DIR/VERSION" 2>/dev/null)" == "$PROMETHEUS_OPERATOR_VERSION" ]] || return 1
  for crd in "${CRDS[@]}"; do [[ -s "$CRD_DIR/$crd" ]] || return 1; done
}

install_crds() {
  local crd dir
  crds_ok && return 0
  log "fetching prometheus-operator $PROMETHEUS_OPERATOR_VERSION CRDs (module source)"
  dir="$(go_module_dir github.com/prometheus-operator/prometheus-operator "$PROMETHEUS_OPERATOR_VERSION")"
  mkdir -p "$CRD_DIR"
  for crd in "${CRDS[@]}"; do
    install -m 0644 "$dir/example/prometheus-operator-crd/$crd" "$CRD_DIR/$crd"
  done
  echo "$PROMETHEUS_OPERATOR_VERSION" > "$CRD_DIR/VERSION"
}

install_skaffold_schema() {
  local target="$SCHEMA_DIR/skaffold-$SKAFFOLD_SCHEMA_VERSION.json" dir
  [[ -s "$target" ]] && return 0
  log "fetching skaffold $SKAFFOLD_MODULE_VERSION schema $SKAFFOLD_SCHEMA_VERSION (module source)"
  dir="$(go_module_dir github.com/GoogleContainerTools/skaffold/v2 "$SKAFFOLD_MODULE_VERSION")"
  mkdir -p "$SCHEMA_DIR"
  install -m 0644 "$dir/docs-v2/content/en/schemas/$SKAFFOLD_SCHEMA_VERSION.json" "$target"
}

install_promtool() {
  [[ -x "$BIN/promtool" ]] && return 0
  if ! command -v promtool >/dev/null; then
    [[ $(id -u) == 0 ]] || { log "promtool missing: apt-get install prometheus (needs root)"; return 1; }
    log "installing Debian's prometheus package (for promtool)"
    # The package's postinst tries to start the service; refuse that like a container does.
    local prc=/usr/sbin/policy-rc.d created=0
    if [[ ! -e $prc ]]; then printf '#!/bin/sh\nexit 101\n' > $prc; chmod +x $prc; created=1; fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    [[ $created == 1 ]] && rm -f $prc
  fi
  ln -sf "$(command -v promtool)" "$BIN/promtool"
}

checkov_ok() {
  [[ -x "$BIN/checkov" && "$(cat "$VENVS/checkov/.clickstream-version" 2>/dev/null)" == "$CHECKOV_VERSION" ]]
}

install_checkov() {
  local venv="$VENVS/checkov"
  checkov_ok && return 0
  log "installing checkov $CHECKOV_VERSION into its own virtualenv (it pins old boto3)"
  if command -v uv >/dev/null; then
    uv venv -q --allow-existing -p 3.11 "$venv"
    VIRTUAL_ENV="$venv" uv pip install -q "checkov==$CHECKOV_VERSION"
  else
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "checkov==$CHECKOV_VERSION"
  fi
  ln -sf "$venv/bin/checkov" "$BIN/checkov"
  echo "$CHECKOV_VERSION" > "$venv/.clickstream-version"
}

case "${1:-install}" in
  env)
    printf 'export HELM_CACHE_HOME=%q HELM_CONFIG_HOME=%q HELM_DATA_HOME=%q\n' \
      "$HELM_CACHE_HOME" "$HELM_CONFIG_HOME" "$HELM_DATA_HOME"
    printf 'export PATH=%q:"$PATH"\n' "$BIN"
    ;;
  check)
    m="$(missing)"
    if [[ -n "$m" ]]; then log "missing:"; sed 's/^/  /' <<<"$m" >&2; exit 1; fi
    log "all deploy tools present in $STATE"
    ;;
  install)
    mkdir -p "$BIN" "$CACHE" "$VENVS" "$HELM_CACHE_HOME" "$HELM_CONFIG_HOME" "$HELM_DATA_HOME"
    if [[ -z "$(missing)" ]]; then log "all deploy tools present in $STATE"; exit 0; fi
    install_helm
    install_crds
    install_skaffold_schema
    install_promtool
    install_checkov
    # kube-apiserver & co.: ~6 min and ~2 GB the first time, seconds of linking with a warm
    # Go build cache (a fresh clone on the same machine or a CI runner keeping ~/.cache/go-build).
    bash "$REPO/local/kubernetes/control-plane.sh"
    m="$(missing)"
    if [[ -n "$m" ]]; then log "still missing:"; sed 's/^/  /' <<<"$m" >&2; exit 1; fi
    log "deploy tools ready in $STATE"
    ;;
  *) echo "usage: $0 [install|env|check]" >&2; exit 2 ;;
esac
