#!/bin/sh
# Starts and stops the throwaway PostgreSQL 15 cluster the integration tests run against.
#   cluster.sh start ENVDIR   initdb as user postgres, listen on a free 127.0.0.1 port,
#                             write the port to ENVDIR/pg.port and the directory of the
#                             cluster's certificates (certs.sh: ca.crt, server.crt,
#                             client-pgturbo_cert.crt, other-ca.crt ...) to ENVDIR/pg.certs
#   cluster.sh stop ENVDIR    stop the cluster and remove its data
# PostgreSQL refuses to run as root, so the cluster runs as the unprivileged user postgres
# (created if missing) through runuser; its data lives in a fresh directory under /tmp.
# pg_stat_statements is preloaded: it is the workload source of pgturbo advise
# (tests/integration/test_advise.c). wal_level = logical, with room for replication slots and
# walsenders, lets the cache's logical-decoding consumer stream changes
# (tests/integration/test_cachelogical_stream.c).
# The cluster accepts TLS (ssl = on, with a throwaway CA from certs.sh) and plain connections
# alike, so clients that prefer TLS (libpq's and pgturbo's default) get it.
set -e
cmd=$1
envdir=$2
PGBIN=/usr/lib/postgresql/15/bin
CERTS_SH=$(cd "$(dirname "$0")" && pwd)/certs.sh
if [ -z "$cmd" ] || [ -z "$envdir" ]; then
    echo "usage: $0 start|stop ENVDIR" >&2
    exit 2
fi

as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# A port below the ephemeral range (where no client socket can hold it, even in TIME_WAIT)
# that no socket in any state uses.
free_port() {
    low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range)
    while :; do
        port=$(( $(od -An -N2 -tu2 /dev/urandom) % (low - 15000) + 15000 ))
        ss -Htan "sport = :$port" | grep -q . || { echo "$port"; return; }
    done
}

start() {
    if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
        useradd --system --home-dir /var/lib/postgresql --shell /bin/sh postgres
    fi
    mkdir -p "$envdir"
    [ -f "$envdir/pg.datadir" ] && stop
    data=$(mktemp -d /tmp/pgturbo-test.XXXXXX)
    [ "$(id -u)" -eq 0 ] && chown postgres "$data"
    echo "$data" > "$envdir/pg.datadir"
    port=$(free_port)
    # Made as whoever runs this, then given to postgres, which refuses keys others can read
    # (certs.sh makes them 0600). client-pgturbo_cert.crt is the certificate that pgturbo
    # presents for the role pgturbo_cert.
    certs="$data/certs"
    "$CERTS_SH" "$certs" pgturbo_cert
    [ "$(id -u)" -eq 0 ] && chown -R postgres "$certs"
    as_pg "$PGBIN/initdb" -D "$data/pgdata" -U postgres -A trust --no-sync -E UTF8 >"$data/initdb.log" 2>&1 ||
        { cat "$data/initdb.log" >&2; exit 1; }
    cat >> "$data/pgdata/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$data'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.max = 10000
ssl = on
ssl_cert_file = '$certs/server.crt'
ssl_key_file = '$certs/server.key'
ssl_ca_file = '$certs/ca.crt'
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
CONF
    # Roles that test pgturbo's password login to PostgreSQL (tests/integration/test_server_auth.c,
    # and test_client_auth.c for SCRAM pass-through and auth_file secrets), one that only TLS
    # connections may use and one that needs a client certificate too (test_tls_proxy.c);
    # everybody else is trusted, over TLS or not. Replication connections are trusted from
    # 127.0.0.1 too: the database column "all" never matches them, so the lines of the special
    # roles do not apply to them, and the line is written here rather than left to initdb's
    # defaults so that the logical-decoding test does not depend on those.
    hba="$data/pgdata/pg_hba.conf"
    {
        echo "hostssl all pgturbo_tls 127.0.0.1/32 trust"
        echo "hostnossl all pgturbo_tls 127.0.0.1/32 reject"
        echo "hostssl all pgturbo_cert 127.0.0.1/32 cert"
        echo "hostnossl all pgturbo_cert 127.0.0.1/32 reject"
        echo "host all pgturbo_scram 127.0.0.1/32 scram-sha-256"
        echo "host all pgturbo_md5 127.0.0.1/32 md5"
        echo "host all pgturbo_plain 127.0.0.1/32 password"
        echo "host all pgturbo_pass 127.0.0.1/32 scram-sha-256"
        echo "host all pgturbo_pass_md5 127.0.0.1/32 md5"
        echo "host all pgturbo_pass_plain 127.0.0.1/32 password"
        echo "host replication all 127.0.0.1/32 trust"
        cat "$hba"
    } > "$hba.new"
    mv "$hba.new" "$hba"
    [ "$(id -u)" -eq 0 ] && chown postgres "$hba"
    as_pg "$PGBIN/pg_ctl" -D "$data/pgdata" -l "$data/postgres.log" -w -t 60 start >/dev/null
    echo "$port" > "$envdir/pg.port"
    echo "$certs" > "$envdir/pg.certs"
    echo "PostgreSQL 15 on 127.0.0.1:$port, data in $data"
}

stop() {
    [ -f "$envdir/pg.datadir" ] || return 0
    data=$(cat "$envdir/pg.datadir")
    as_pg "$PGBIN/pg_ctl" -D "$data/pgdata" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$data"
    rm -f "$envdir/pg.datadir" "$envdir/pg.port" "$envdir/pg.certs"
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop ENVDIR" >&2; exit 2 ;;
esac
