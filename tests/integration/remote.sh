# shellcheck shell=bash
# remote.sh - a PostgreSQL server reached the way a central backup host reaches it (sourced by
# t_remote*.sh after lib.sh): over TCP on 127.0.0.1 with scram-sha-256 password authentication,
# as a role with REPLICATION and nothing else, its password only in a .pgpass file (PGPASSFILE).
#
#   remote_primary [KIND]  the usual start: a key ($KEY), a repository of KIND (repo_setup: local
#                          unless named), $T/primary ($PGD) made
#                          by remote_cluster (1 MB segments) archiving into it with $CONF, which
#                          remote_conf then writes (encrypted with $KEY), remote_roles, and a
#                          .pgpass with both roles' passwords; sets KEY CONF PGD PORT
#   remote_cluster DIR CONF [INITDB_OPTION]...   initdb, settings and pg_hba.conf below, start
#                          (archiving with wal-push --config CONF unless CONF is -); sets PORT
#   remote_settings DIR PORT [LINE]...   pg_conf plus TCP on 127.0.0.1 and scram-sha-256
#   remote_hba DIR         pg_hba.conf: trust for postgres on the private socket (the test's own
#                          psql and pg_basebackup); scram-sha-256 on 127.0.0.1 for replication
#                          connections of walsafe_repl and walsafe_norepl and for every role to
#                          every database
#   remote_roles PORT      walsafe_repl (LOGIN REPLICATION, password REPL_PW) and walsafe_norepl
#                          (LOGIN only, password NOREPL_PW) on the server on PORT
#   write_pgpass FILE LINE...   a .pgpass for the postgres user (0600: libpq ignores others)
#   remote_conf FILE PORT [LINE]...   a walsafe configuration without pgdata (create streams)
#                          connecting as walsafe_repl to 127.0.0.1:PORT, no password in it
#
# PGPASSFILE is exported as $T/pgpass (write it with write_pgpass): bb, bb_create and every other
# libpq client of the test read it. REPL_PW and NOREPL_PW are random and registered with
# add_secret: no output may show them.

REPL_PW="Repl-$RANDOM$RANDOM$RANDOM"
NOREPL_PW="NoRepl-$RANDOM$RANDOM$RANDOM"
add_secret "$REPL_PW"
add_secret "$NOREPL_PW"
export PGPASSFILE=$T/pgpass

remote_settings() {
    local d=$1 port=$2
    shift 2
    pg_conf "$d" "$port" "listen_addresses = '127.0.0.1'" \
        "password_encryption = 'scram-sha-256'" "$@"
}

remote_hba() {
    cat >"$1/pg_hba.conf" <<'HBA' || die "could not write $1/pg_hba.conf"
# written by tests/integration/remote.sh
local   all          postgres                                    trust
local   replication  postgres                                    trust
host    replication  walsafe_repl,walsafe_norepl  127.0.0.1/32   scram-sha-256
host    all          all                          127.0.0.1/32   scram-sha-256
HBA
    chown postgres: "$1/pg_hba.conf"
}

remote_cluster() {
    local d=$1 conf=$2 archive=()
    shift 2
    pg_init "$d" "$@"
    PORT=$(free_port)
    [ "$conf" = - ] ||
        archive=("archive_mode = on" "archive_command = '$WAL_PUSH --config $conf %p'")
    remote_settings "$d" "$PORT" "${archive[@]+"${archive[@]}"}" \
        "checkpoint_timeout = '1h'" "max_wal_size = '1GB'"
    remote_hba "$d"
    pg_start "$d"
}

remote_roles() {
    sql "$1" "create role walsafe_repl login replication password '$REPL_PW';
              create role walsafe_norepl login password '$NOREPL_PW'" >/dev/null ||
        die "could not create the roles"
}

write_pgpass() {
    local f=$1
    shift
    (umask 077 && printf '%s\n' "$@" >"$f") || die "could not write $f"
    chown postgres: "$f" && chmod 600 "$f" || die "could not chown $f"
}

remote_conf() {
    local f=$1 port=$2
    shift 2
    write_conf "$f.new" "${REPO_CONF[@]}" \
        "pg_conninfo = 'host=127.0.0.1 port=$port user=walsafe_repl dbname=postgres'" "$@"
    mv -f "$f.new" "$f" || die "could not rename $f.new"
}

remote_primary() {
    KEY=$T/walsafe.key
    CONF=$T/walsafe.conf
    PGD=$T/primary
    CASE="repository"
    make_key "$KEY"
    repo_setup "${1:-local}"
    write_conf "$CONF" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'"
    CASE="primary"
    remote_cluster "$PGD" "$CONF" --wal-segsize=1
    remote_conf "$CONF" "$PORT" "encrypt_key_file = '$KEY'"
    grep -q pgdata "$CONF" && die "$CONF names pgdata: create would not stream"
    remote_roles "$PORT"
    write_pgpass "$PGPASSFILE" "127.0.0.1:*:*:walsafe_repl:$REPL_PW" "127.0.0.1:*:*:walsafe_norepl:$NOREPL_PW"
}
