# Debian package helpers, sourced by local/bootstrap.sh and local/bootstrap.d/*.sh (not run on
# its own, and not under bootstrap.d/, which runs every script it holds).

# installed PKG: the package is installed.
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }

# apt_install PKG...: install the packages without letting their scripts start system-wide
# services (the local platform runs its own instances under the state dir), as a container's
# policy-rc.d does; refreshes the package lists only when the install fails without it.
apt_install() {
    local policy_added=0 status=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        policy_added=1
    fi
    if ! apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1; then
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@" >/dev/null; } \
            || status=$?
    fi
    if ((policy_added)); then rm -f /usr/sbin/policy-rc.d; fi
    return "$status"
}
