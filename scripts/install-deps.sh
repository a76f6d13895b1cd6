#!/bin/sh
# Installs, with apt-get, the Debian 12 packages pgturbo builds and tests with; quick when
# everything is already present. Runs as root (or through sudo).
set -e

PACKAGES="build-essential cmake pkg-config libpq-dev libpg-query-dev libssl-dev libhiredis-dev
liblz4-dev libinih-dev libjansson-dev libmicrohttpd-dev libcmocka-dev postgresql-15 postgresql-contrib
postgresql-15-hypopg redis-server pgbouncer python3-psycopg procps iproute2 util-linux"

missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# The packaged services must not start on their own: tests start their own throwaway ones.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
# $missing is a list of package names: split on purpose.
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
