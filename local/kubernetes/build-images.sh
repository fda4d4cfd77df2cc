#!/usr/bin/env bash
# Builds the service images without a Docker engine: buildah with chroot isolation, over a
# Debian base made with mmdebstrap from Debian's packages, because the Dockerfiles' pinned bases
# (python:3.11.14-slim-bookworm & co. on Docker Hub) cannot be pulled on a machine that reaches
# only package registries. Then runs each image's service as its non-root user.
#
#   bash local/kubernetes/build-images.sh [ingest-api warehouse-loader]
#
# The base is a STAND-IN, tagged with the Dockerfiles' FROM name so they build unchanged:
# Debian 12's python3.11 (3.11.2 in /usr/bin, not 3.11.14 in /usr/local), pip, tini and CA
# certificates, plus this machine's CA bundle (SSL_CERT_FILE, PIP_CERT) when its egress goes
# through a TLS proxy. Images built on it prove the Dockerfiles' steps and the runtime layout
# (user 10001, read-only friendly, tini); publish images built from the real bases.
# The stream-processor image also needs stand-ins for maven:3.9.11-eclipse-temurin-17 and
# eclipse-temurin:17.0.16_8-jre-jammy (its /opt/java/openjdk): not made here.
# Needs root and the Debian packages buildah and mmdebstrap (installed when missing).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${CLICKSTREAM_STATE_DIR:-$REPO/.state}"
BASE_NAME="docker.io/library/python:3.11.14-slim-bookworm"
BASE_TAR="$STATE/cache/images/python-standin-bookworm.tar"
export STORAGE_DRIVER=vfs
log() { printf '[build-images] %s\n' "$*" >&2; }

services=("$@")
((${#services[@]})) || services=(ingest-api warehouse-loader)

if ! command -v buildah >/dev/null || ! command -v mmdebstrap >/dev/null; then
  log "installing buildah and mmdebstrap (Debian)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    buildah mmdebstrap uidmap >/dev/null
fi

if ! buildah inspect --type image "$BASE_NAME" >/dev/null 2>&1; then
  if [[ ! -s "$BASE_TAR" ]]; then
    log "making the stand-in base with mmdebstrap (~3 min)"
    mkdir -p "$(dirname "$BASE_TAR")"
    mmdebstrap --variant=minbase \
      --include=python3,python3-pip,python3-venv,python-is-python3,ca-certificates \
      bookworm "$BASE_TAR.tmp"
    mv "$BASE_TAR.tmp" "$BASE_TAR"
  fi
  ctr="$(buildah from scratch)"
  mnt="$(buildah mount "$ctr")"
  tar -xf "$BASE_TAR" -C "$mnt"
  # The official image's pip installs system-wide; Debian's refuses without this (PEP 668).
  rm -f "$mnt"/usr/lib/python3.*/EXTERNALLY-MANAGED
  bundle=/etc/ssl/certs/ca-certificates.crt
  cp "${SSL_CERT_FILE:-$bundle}" "$mnt$bundle"
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env SSL_CERT_FILE=$bundle --env PIP_CERT=$bundle --env REQUESTS_CA_BUNDLE=$bundle \
    --cmd python3 "$ctr"
  buildah commit -q "$ctr" "$BASE_NAME" >/dev/null
  buildah rm "$ctr" >/dev/null
fi

declare -A module=([ingest-api]=ingest_api [warehouse-loader]=warehouse_loader)
for svc in "${services[@]}"; do
  [[ -n "${module[$svc]:-}" ]] || { log "no stand-in for $svc's bases; skipped"; continue; }
  log "building clickstream/$svc (buildah, chroot isolation)"
  buildah bud --isolation chroot --pull=false --layers -q \
    -f "$REPO/services/$svc/Dockerfile" -t "clickstream/$svc:local" "$REPO" >/dev/null
  ctr="$(buildah from --pull=false "clickstream/$svc:local")"
  user="$(buildah run --isolation chroot "$ctr" -- id -u)"
  [[ "$user" == 10001 ]] || { log "$svc runs as uid $user, not 10001"; exit 1; }
  buildah run --isolation chroot "$ctr" -- python -c "import ${module[$svc]}.main" 2>/dev/null \
    || buildah run --isolation chroot "$ctr" -- python -c "import ${module[$svc]}.service"
  buildah rm "$ctr" >/dev/null
  log "clickstream/$svc:local built; runs as uid $user and imports its service"
done
