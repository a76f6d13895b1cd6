#!/usr/bin/env bash
# Makes throwaway certificates for TLS tests with the openssl CLI.
#   certs.sh DIR [CLIENT_CN...]
# In DIR: a CA (ca.crt, ca.key); server.crt/server.key signed by it for CN=localhost with the
# subjectAltNames DNS:localhost and IP:127.0.0.1; for each CLIENT_CN a client certificate
# client-CN.crt/client-CN.key (subject CN=CLIENT_CN) signed by the CA; and an unrelated CA,
# other-ca.crt/other-ca.key, that signed none of them, for tests that must fail.
# Keys are P-256 and mode 0600 (PostgreSQL refuses keys that others can read); certificates
# are 0644. A certificate whose .crt and .key both exist is kept, so running the script again
# only adds what is missing; a new CA makes everything it signs again. Prints nothing unless
# openssl fails.
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 DIR [CLIENT_CN...]" >&2
    exit 2
fi
dir=$1
shift
for cn in "$@"; do
    if ! [[ $cn =~ ^[A-Za-z0-9._-]+$ ]]; then
        echo "$0: client CN \"$cn\" must be letters, digits, '.', '_' or '-'" >&2
        exit 2
    fi
done

# The directory stays searchable by others (a server running as another user may need to read
# its key after a chown); the keys themselves are not.
(umask 022 && mkdir -p "$dir")
umask 077
cd "$dir"
DAYS=3650

# Runs a command, showing its output only when it fails.
quiet() {
    local out
    if ! out=$("$@" 2>&1); then
        printf '%s\n' "$out" >&2
        return 1
    fi
}

# Whether NAME.crt and NAME.key both exist.
have() {
    [ -f "$1.crt" ] && [ -f "$1.key" ]
}

# Makes a self-signed CA NAME.crt/NAME.key with subject CN.
make_ca() {
    quiet openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc \
        -keyout "$1.key" -out "$1.crt" -days "$DAYS" -subj "/CN=$2" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    chmod 0644 "$1.crt"
}

# Makes NAME.crt/NAME.key with subject CN, signed by ca.crt, with the extensions EXT (one
# "key = value" line each).
make_signed() {
    local name=$1 cn=$2 ext=$3
    quiet openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc \
        -keyout "$name.key" -out "$name.csr" -subj "/CN=$cn"
    quiet openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -out "$name.crt" \
        -days "$DAYS" -set_serial "0x$(openssl rand -hex 16)" -extfile <(printf '%s\n' "$ext")
    rm -f "$name.csr"
    chmod 0644 "$name.crt"
}

leaf_ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment"

if ! have ca; then
    make_ca ca "pgturbo test CA"
    rm -f server.crt client-*.crt
fi
have other-ca || make_ca other-ca "pgturbo unrelated test CA"
have server || make_signed server localhost "$leaf_ext
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1"
for cn in "$@"; do
    have "client-$cn" || make_signed "client-$cn" "$cn" "$leaf_ext
extendedKeyUsage=clientAuth"
done
