#!/usr/bin/env bash
# t_pushahead_linger: on a network repository the push-ahead process waits, with its sessions
# open, for the files PostgreSQL marks ready while it runs (common/archive/pushahead.h, step 4), so the
# archiver's call of a file that arrives alone finds it pushed (or in flight) instead of opening
# an SSH or HTTP session of its own. For an SFTP and an S3 repository:
#   (a) a real cluster archives segments one at a time (each archived before the next is
#       written): every call exits 0 (pg_stat_archiver), at least half of the calls after the
#       first are answered from the records of the waiting process, the server saw fewer SSH
#       sessions than calls (SFTP), and every segment comes back byte-identical through wal-fetch;
#   (b) PostgreSQL stopped: the process ends within 5 s, not at the end of its 60 s.
. "$(dirname "$0")/lib.sh"
setup_tmp

KEY=$T/walsafe.key
make_key "$KEY"
NSEG=12

# settle_within SPOOL SECONDS: true when no push-ahead process of SPOOL runs within SECONDS (each
# holds pushing/.alive shared for its life).
settle_within() {
    local f=$1/main/pushing/.alive
    [ -e "$f" ] || return 0
    timeout "$2" flock "$f" true
}

for kind in sftp s3; do
    CASE="(a) $kind, one segment at a time"
    repo_setup "$kind"
    CONF=$T/$kind.conf
    SPOOL=$T/$kind-spool
    COPY=$T/$kind-copy
    PGD=$T/$kind-pg
    mkdir -p "$COPY" && chown postgres: "$COPY"
    write_conf "$CONF" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'" "parallel = 2" \
        "spool_dir = '$SPOOL'" "log_level = 'info'"
    write_conf "$T/$kind-fetch.conf" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'" "parallel = 1"
    pg_init "$PGD" --wal-segsize=1
    PORT=$(free_port)
    # The copy made first is what the archive must give back.
    pg_conf "$PGD" "$PORT" "archive_mode = on" \
        "archive_command = 'cp %p $COPY/%f && $WAL_PUSH --config $CONF %p'" \
        "checkpoint_timeout = '1h'" "max_wal_size = '1GB'"
    pg_start "$PGD"
    sql "$PORT" "create table t (id int, pad text)" || die "create table failed"
    last=$(sql "$PORT" "select pg_walfile_name(pg_switch_wal())") || die "pg_switch_wal failed"
    wait_archived "$PORT" "$last" 60 || { show_log "$PGD.log"; die "archiving did not start"; }
    calls0=$(grep -c 'wal-push: INFO: \(archived\|WAL file\)' "$PGD.log")
    for i in $(seq 1 $NSEG); do
        sql "$PORT" "insert into t select g, repeat(md5(g::text || '$i'), 4) from generate_series(1, 500) g" ||
            die "insert failed"
        last=$(sql "$PORT" "select pg_walfile_name(pg_switch_wal())") || die "pg_switch_wal failed"
        wait_archived "$PORT" "$last" 60 || { show_log "$PGD.log"; break; }
    done
    read -r archived failed < <(sql "$PORT" "select archived_count, failed_count from pg_stat_archiver" | tr '|' ' ')
    assert_eq "$failed" 0 "pg_stat_archiver.failed_count"
    ahead=$(grep -c 'was archived ahead by an earlier call' "$PGD.log")
    [ "$ahead" -ge $((NSEG / 2)) ] ||
        { fail "only $ahead of the $NSEG calls after the first were answered by the waiting push-ahead process"; show_log "$PGD.log" 30; }
    if grep -q -E 'wal-push: (ERROR|FATAL|WARNING)|archive command failed' "$PGD.log"; then
        fail "the server log reports archiving errors or warnings"
        grep -E 'wal-push: (ERROR|FATAL|WARNING)|archive command' "$PGD.log" | head -5 | sed 's/^/      /'
    fi
    if [ "$kind" = sftp ]; then
        sessions=$(grep -c 'Accepted publickey' "$SSHD_LOG")
        # the calls before the process, the process's workers (2), and a few restarts at most
        [ "$sessions" -lt $((NSEG / 2 + calls0 + 2)) ] ||
            fail "$sessions SSH sessions for $archived calls: the calls did not use the process's"
        note "$archived archived, $ahead answered from the process's records, $sessions SSH sessions"
    else
        note "$archived archived, $ahead answered from the process's records"
    fi

    CASE="(b) $kind, PostgreSQL stops"
    pg_stop "$PGD"
    settle_within "$SPOOL" 5 || fail "the push-ahead process still runs 5 s after PostgreSQL stopped"
    settle_within "$SPOOL" 70 || fail "the push-ahead process still runs 70 s after PostgreSQL stopped"

    CASE="(a) $kind, fetched back"
    n=0
    for f in "$COPY"/0*; do
        s=${f##*/}
        new_dest
        run "$WAL_FETCH" --config "$T/$kind-fetch.conf" "$s" "$DEST"
        { [ "$RC" = 0 ] && cmp -s "$DEST" "$f"; } || fail_cmd "$s: not archived intact ($kind)"
        rm -rf "$DEST_DIR"
        n=$((n + 1))
    done
    [ "$n" -ge "$NSEG" ] || fail "only $n segments were copied by archive_command"
    assert_repo_clean "$kind"
done
finish
