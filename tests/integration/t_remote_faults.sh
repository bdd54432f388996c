#!/usr/bin/env bash
# t_remote_faults: what a streamed `basebackup create` (no pgdata: BASE_BACKUP over a replication
# connection to 127.0.0.1, scram-sha-256, the password in a .pgpass file) must refuse. Each fault:
# exit 1, one line on stderr naming the problem, nothing on stdout, no password in any output,
# no backup listed but the good ones (all complete), and the next normal create works.
#   - a wrong password (in the .pgpass file);
#   - a role without REPLICATION (LOGIN only);
#   - a pg_conninfo libpq cannot parse, holding a password (libpq's reason quotes it);
#   - a server with max_wal_senders = 0 (a second, small cluster of another system);
#   - a server of another system identifier than the repository's cluster (the same second
#     cluster once it accepts replication connections; the repository's identity is unchanged);
#   - the connection dropped in the middle of the stream (tests/tools/faultproxy closes it after
#     2 MB from the server);
#   - archive_command failing: create gives up after `timeout` seconds (BASE_BACKUP must not wait
#     for the archiver on the server forever).
. "$(dirname "$0")/lib.sh"
setup_tmp
. "$(dirname "$0")/remote.sh"
. "$(dirname "$0")/s3.sh" # fp_start, fp_mode, fp_stop_all (the fault proxy)
STOP_HOOKS+=(fp_stop_all)

OTHER=$T/other
remote_primary
sql "$PORT" "create table t (id int primary key, pad text);
             insert into t select g, repeat(md5(g::text), 4) from generate_series(1, 20000) g" ||
    die "could not fill the table"
GOOD=()
bb_create "$CONF"
GOOD+=("$BACKUP_ID")
IDENTITY=$(file_sha "$(repo_file main/identity)")

# fault CONF ERE WHAT [PGPASSFILE]: create with CONF (and that .pgpass file instead of ours) must
# fail as a fault does (see the top); ERE (extended, case-sensitive) must match its line. Then a
# normal create of the primary must work.
fault() {
    local conf=$1 ere=$2 what=$3 got want
    PGPASSFILE=${4:-$PGPASSFILE} bb --config "$conf" create --fast
    if assert_rc 1 "create with $what"; then
        assert_err_one_line "create with $what"
        grep -q -E -- "$ere" "$T/.last.err" || fail_cmd "create with $what: stderr does not match /$ere/"
        LC_ALL=C grep -q '[^[:print:]]' "$T/.last.err" &&
            fail "create with $what: its message holds bytes that are not printable text"
        note "$what: $(head -1 "$T/.last.err")"
    fi
    [ -s "$T/.last.out" ] && fail "create with $what printed on stdout: $(head -c 200 "$T/.last.out")"
    if bb_list "$CONF"; then
        got=$(json_eval "$T/list.json" "j.backups.map(b => b.id + ' ' + b.status).sort().join(', ')")
        want=$(printf '%s complete\n' "${GOOD[@]}" | sort | paste -sd, | sed 's/,/, /g')
        assert_eq "$got" "$want" "backups listed after $what"
    fi
    assert_eq "$(file_sha "$(repo_file main/identity)")" "$IDENTITY" "the repository's identity after $what"
    assert_repo_clean "repository after $what"
    bb_create "$CONF"
    GOOD+=("$BACKUP_ID")
}

CASE="wrong password"
WRONG_PW="Wrong-$RANDOM$RANDOM$RANDOM"
add_secret "$WRONG_PW"
write_pgpass "$T/pgpass.wrong" "127.0.0.1:*:*:walsafe_repl:$WRONG_PW"
fault "$CONF" 'password authentication failed' "a wrong password" "$T/pgpass.wrong"

CASE="role without REPLICATION"
NCONF=$T/walsafe-norepl.conf
write_conf "$NCONF" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'" \
    "pg_conninfo = 'host=127.0.0.1 port=$PORT user=walsafe_norepl dbname=postgres'"
fault "$NCONF" 'REPLICATION|replication role' "a role without REPLICATION"

CASE="unparsable pg_conninfo holding a password"
# libpq's parse errors quote pg_conninfo: 'missing "=" after "<the word>"' (an unquoted password
# with a blank), 'invalid percent-encoded token: "<the password>"' (a URI). Neither create nor
# check may show them.
BAD_PW="Tail-$RANDOM$RANDOM$RANDOM"
add_secret "$BAD_PW"
BCONF=$T/walsafe-badci.conf
for ci in "host=127.0.0.1 port=$PORT user=walsafe_repl dbname=postgres password=Head $BAD_PW" \
    "postgresql://walsafe_repl:%zz$BAD_PW@127.0.0.1:$PORT/postgres"; do
    write_conf "$BCONF" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'" "pg_conninfo = '$ci'"
    fault "$BCONF" 'pg_conninfo' "an unparsable pg_conninfo holding a password"
    bb --config "$BCONF" check
    assert_rc 1 "check with an unparsable pg_conninfo holding a password"
done

CASE="max_wal_senders = 0"
# A second cluster (another system): first without WAL senders, then with them.
pg_init "$OTHER"
OPORT=$(free_port)
while [ "$OPORT" = "$PORT" ]; do OPORT=$(free_port); done
remote_settings "$OTHER" "$OPORT" "max_wal_senders = 0"
remote_hba "$OTHER"
pg_start "$OTHER"
remote_roles "$OPORT"
OCONF=$T/walsafe-other.conf
remote_conf "$OCONF" "$OPORT" "encrypt_key_file = '$KEY'"
fault "$OCONF" 'max_wal_senders' "max_wal_senders = 0"

CASE="another system identifier"
pg_stop "$OTHER"
echo "max_wal_senders = 4" >>"$OTHER/postgresql.conf"
pg_start "$OTHER"
fault "$OCONF" 'system identifier|database system' "a server of another system"
pg_stop "$OTHER"

CASE="connection dropped mid-stream"
fp_start "$T/fp" "$PORT" close-after-down 2000000 2>"$T/fpstart.err" ||
    die "could not start faultproxy: $(cat "$T/fpstart.err")"
FCONF=$T/walsafe-fp.conf
remote_conf "$FCONF" "$FP_PORT" "encrypt_key_file = '$KEY'"
fault "$FCONF" 'connection|closed|unexpected|end of' "the connection closed after 2 MB"
fp_stop "$FP_DIR"
if grep -q -E 'PANIC|server process .* was terminated' "$PGD.log"; then
    fail "the primary logged a crash after the dropped connection"
    grep -E 'PANIC|terminated' "$PGD.log" | head -5 | sed 's/^/      /'
fi

CASE="archive_command failing"
# create waits `timeout` seconds for its WAL, then fails; the server must not keep BASE_BACKUP
# waiting for the archiver (timeout 20 ends a hang: exit 124).
pg_psql "$PORT" -c "alter system set archive_command = 'false'" -c "select pg_reload_conf()" >/dev/null ||
    die "could not break archive_command"
ACONF=$T/walsafe-timeout.conf
remote_conf "$ACONF" "$PORT" "encrypt_key_file = '$KEY'" "timeout = 3"
run timeout 20 runuser -u postgres -- "$BASEBACKUP" --config "$ACONF" create --fast
assert_rc 1 "create while archive_command fails" &&
    assert_err_regex 'did not reach the repository' "create while archive_command fails"
assert_err_one_line "create while archive_command fails"
[ -s "$T/.last.out" ] && fail "create while archive_command fails printed on stdout"
if bb_list "$CONF"; then
    assert_eq "$(json_eval "$T/list.json" "j.backups.filter(b => b.status === 'complete').length")" \
        "${#GOOD[@]}" "backups listed complete while archive_command fails"
fi
pg_psql "$PORT" -c "alter system reset archive_command" -c "select pg_reload_conf()" >/dev/null ||
    die "could not restore archive_command"
bb_create "$CONF"
GOOD+=("$BACKUP_ID")

CASE="verify"
bb --config "$CONF" verify --all
assert_rc 0 "verify --all of the good backups"
pg_stop "$PGD"
finish
