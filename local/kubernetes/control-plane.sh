#!/usr/bin/env bash
# Builds a real Kubernetes control plane for the tests, without Docker, idempotently:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  (k8s.io/kubernetes)
#   etcd                                                              (go.etcd.io/etcd/server/v3)
#   kwok (fakes nodes and pod status) and its Stage YAMLs             (sigs.k8s.io/kwok)
# into ${CLICKSTREAM_STATE_DIR:-<repo>/.state}/bin/k8s and .../cache/kwok-stages.
#
# Usage: local/kubernetes/control-plane.sh          build what is missing (a no-op when stamped)
#        local/kubernetes/control-plane.sh check    exit 1 when something is missing
#
# All of it comes from the Go module proxy. Three caches, fastest first:
#   1. this state dir's stamp (a second run is a no-op);
#   2. a per-user copy of the built binaries, keyed like the stamp, in
#      ${CLICKSTREAM_MACHINE_CACHE:-~/.cache/clickstream}/control-plane/<key>: a fresh clone on
#      the same machine (CI's run of .ci/run) copies them in seconds;
#   3. the Go module and build caches (GOMODCACHE, GOCACHE), also outside the repository: with
#      them warm a build only links. See docs/kubernetes.md for the times measured.
set -euo pipefail

KUBERNETES_VERSION="v1.35.4"  # and every k8s.io staging module at v0.35.4 (control-plane/go.mod)
KWOK_VERSION="v0.8.0"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
STATE="${CLICKSTREAM_STATE_DIR:-$REPO/.state}"
OUT="$STATE/bin/k8s"
STAGES="$STATE/cache/kwok-stages"
MODULE="$HERE/control-plane"
MACHINE_CACHE="${CLICKSTREAM_MACHINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/clickstream}/control-plane"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

log() { printf '[control-plane] %s\n' "$*" >&2; }

BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok)

# The stamp covers the versions and the wrapper module's exact dependency set.
stamp_key() {
  printf '%s kwok=%s sum=%s\n' "$KUBERNETES_VERSION" "$KWOK_VERSION" \
    "$(cat "$MODULE/go.mod" "$MODULE/go.sum" | sha256sum | cut -c1-16)"
}

present() {
  local b
  [[ -f "$OUT/.stamp" && "$(cat "$OUT/.stamp")" == "$(stamp_key)" ]] || return 1
  for b in "${BINARIES[@]}"; do [[ -x "$OUT/$b" ]] || return 1; done
  [[ -s "$STAGES/pod-fast.yaml" && -s "$STAGES/node-fast.yaml" ]]
}

build() {
  command -v go >/dev/null || { log "go is required"; return 1; }
  local tmp="$OUT.tmp.$$" minor t0=$SECONDS
  rm -rf "$tmp"
  mkdir -p "$tmp" "$STAGES"
  minor="$(cut -d. -f2 <<<"$KUBERNETES_VERSION")"
  # Without these, the binaries report v0.0.0 and kubectl/helm cannot parse the server version.
  local ver="" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ver+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ver+=" -X $pkg.gitTreeState=clean"
  done
  log "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl $KUBERNETES_VERSION (cold: ~6 min, ~2.2 GB RSS)"
  (cd "$MODULE" && go build -ldflags "-s -w$ver" -o "$tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
  log "building etcd (the version k8s.io/kubernetes $KUBERNETES_VERSION requires)"
  (cd "$MODULE" && go build -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3)
  log "building kwok $KWOK_VERSION"
  GOBIN="$tmp" go install -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  # kwok exits with "no stages found" without Stage objects; they ship in its module source.
  local kwok_dir
  kwok_dir="$(cd "$MODULE" && go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  install -m 0644 "$kwok_dir/kustomize/stage/node/fast/node-initialize.yaml" "$STAGES/node-fast.yaml"
  install -m 0644 "$kwok_dir/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" \
    "$STAGES/node-heartbeat.yaml"
  local f
  for f in "$kwok_dir"/kustomize/stage/pod/fast/*.yaml; do printf -- '---\n'; cat "$f"; done \
    >"$STAGES/pod-fast.yaml"
  stamp_key >"$tmp/.stamp"
  rm -rf "$OUT"
  mv "$tmp" "$OUT"
  log "control plane ready in $OUT ($((SECONDS - t0)) s)"
  save_to_machine_cache
}

machine_cache_dir() { printf '%s/%s' "$MACHINE_CACHE" "$(stamp_key | sha256sum | cut -c1-16)"; }

save_to_machine_cache() {
  local dir tmp
  dir="$(machine_cache_dir)"
  [[ -f "$dir/.stamp" ]] && return 0
  tmp="$dir.tmp.$$"
  mkdir -p "$MACHINE_CACHE" && rm -rf "$tmp" && cp -a "$OUT" "$tmp" && mkdir -p "$tmp/kwok-stages" \
    && cp -a "$STAGES"/. "$tmp/kwok-stages/" && mv "$tmp" "$dir" \
    || log "could not keep a copy in $MACHINE_CACHE (the next fresh clone rebuilds)"
}

# A copy built by another clone with the same versions and go.sum: no Go at all.
restore_from_machine_cache() {
  local dir
  dir="$(machine_cache_dir)"
  [[ -f "$dir/.stamp" && "$(cat "$dir/.stamp")" == "$(stamp_key)" ]] || return 1
  rm -rf "$OUT" && mkdir -p "$STAGES" && cp -a "$dir" "$OUT" && rm -rf "$OUT/kwok-stages" \
    && cp -a "$dir/kwok-stages/." "$STAGES/" && present \
    && log "copied from $dir"
}

case "${1:-install}" in
  check)
    if present; then log "present in $OUT"; else log "missing: run $0"; exit 1; fi ;;
  install)
    mkdir -p "$STATE/bin" "$STATE/cache"
    # One build at a time per state root: two builds would double the 2 GB peak.
    exec 8>"$STATE/.control-plane.lock"
    flock 8
    if present; then
      log "present ($KUBERNETES_VERSION, kwok $KWOK_VERSION)"
      save_to_machine_cache
    else
      restore_from_machine_cache || build
    fi ;;
  *) echo "usage: $0 [install|check]" >&2; exit 2 ;;
esac
