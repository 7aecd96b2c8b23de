#!/usr/bin/env bash
# Install the servers the end-to-end suite starts: PostgreSQL, Redis, dnsmasq and Mosquitto
# (Debian packages).
#
# Idempotent: does nothing when all are installed.  Needs root (CI runs as root) or
# password-less sudo to install.  The suite itself starts throw-away servers on 127.0.0.1
# on free ports (see tests/e2e/conftest.py); the packages' own services are not started.
set -euo pipefail

have_postgres() {
    command -v initdb >/dev/null 2>&1 && command -v postgres >/dev/null 2>&1 && return 0
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}
have_redis() {
    command -v redis-server >/dev/null 2>&1
}
have_dnsmasq() {  # the binary only (dnsmasq-base): no system service is installed
    command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ]
}
have_mosquitto() {
    command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]
}

missing=()
have_postgres || missing+=(postgresql)
have_redis || missing+=(redis-server)
have_dnsmasq || missing+=(dnsmasq-base)
have_mosquitto || missing+=(mosquitto)
if [ ${#missing[@]} -eq 0 ]; then
    echo "setup_services: postgresql, redis-server, dnsmasq and mosquitto are installed"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    echo "setup_services: need root (or password-less sudo) to install: ${missing[*]}" >&2
    exit 1
fi

echo "setup_services: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"

have_postgres || { echo "setup_services: postgresql is still missing" >&2; exit 1; }
have_redis || { echo "setup_services: redis-server is still missing" >&2; exit 1; }
have_dnsmasq || { echo "setup_services: dnsmasq is still missing" >&2; exit 1; }
have_mosquitto || { echo "setup_services: mosquitto is still missing" >&2; exit 1; }
echo "setup_services: done"
