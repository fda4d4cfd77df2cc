#!/usr/bin/env bash
# Acting on the stream: Debian's Alertmanager (alert delivery to SNS, webhooks, Slack, email)
# and Redis (the recommender's online state). The local platform runs its own instances
# under the state dir, so the packages' system services are never started.
# Idempotent: a second run only checks that the packages are installed.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# shellcheck source=../apt.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/apt.sh"

missing=()
installed prometheus-alertmanager || missing+=(prometheus-alertmanager)
installed redis-server || missing+=(redis-server)
if ((${#missing[@]} == 0)); then
  echo "[bootstrap alerting] prometheus-alertmanager $(dpkg-query -W -f='${Version}' prometheus-alertmanager), redis-server $(dpkg-query -W -f='${Version}' redis-server): present"
  exit 0
fi
echo "[bootstrap alerting] installing ${missing[*]} (Debian packages)"
# Their postinst scripts would start system-wide services; refused like a container does.
apt_install "${missing[@]}"
[[ -x /usr/bin/prometheus-alertmanager ]] || { echo "alertmanager binary missing" >&2; exit 1; }
[[ -x /usr/bin/redis-server ]] || { echo "redis-server binary missing" >&2; exit 1; }
/usr/bin/prometheus-alertmanager --version 2>&1 | head -1
/usr/bin/redis-server --version
