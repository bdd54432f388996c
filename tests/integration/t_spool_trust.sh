#!/usr/bin/env bash
# t_spool_trust: the spool (common/archive/spool.h) against another local user. wal-push and wal-fetch
# run as postgres, as under PostgreSQL; the attacker is `nobody`, who may create entries in a
# shared spool_dir (root-owned, 1777, like /tmp) or in a directory left open to others.
#   (p1) `<spool>/main/pushed -> a postgres-owned directory` (standing in for base/<db>): after
#        a wal-push with ready files (push-ahead active), every file there still exists;
#   (p2) `<spool>/main/pushing -> pg_wal`: no WAL segment is unlinked;
#   (p3) `<spool>/main` owned by postgres but writable by others, `pushed` planted in it by the
#        attacker: nothing deleted through it;
#   (p4) lock files in `<spool>/main/pushing` held (flock) by the attacker: the call does not
#        wait `timeout` seconds for them;
#   (f1) prefetch with `<spool>/main` owned by the attacker (the parent of prefetch-<tag>), and
#        (f2) with a link planted at prefetch-<tag>: prefetch is off with one WARNING, wal-fetch
#        still exits 0 with the right content;
#   (e)  spool_dir = '': push-ahead and prefetch are off quietly (no WARNING, nothing created
#        in the working directory, inside a data directory or not); a relative spool_dir: one
#        WARNING in both programs, nothing created.
# Each wal-push exits 0 and its segment is archived intact; the spool refusal is exactly one
# WARNING line.
. "$(dirname "$0")/lib.sh"
setup_tmp
# The attacker must reach the shared spools in $T, as it reaches /var/spool or /tmp.
chmod 711 "$T"

SEG_MB=1
N=6
KEY=$T/walsafe.key
make_key "$KEY"
export WALSAFE_PREFETCH_IDLE_TIMEOUT=2

as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }
as_att() { setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$@"; }

# prefetchers started by this test end by the PID in their lock files (cleanup too)
prefetchers_stop() {
    local f pid
    for f in "$T"/*/main/prefetch-*/lock "$T"/*/*/main/prefetch-*/lock; do
        [ -f "$f" ] || continue
        pid=$(head -1 "$f" 2>/dev/null)
        [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = wal-prefetch ] &&
            kill -KILL "$pid" 2>/dev/null
    done
}
STOP_HOOKS+=(prefetchers_stop)

# ---- real WAL: N ready segments ------------------------------------------------------------
CASE="WAL"
SRC=$T/src
pg_init "$SRC" --wal-segsize=$SEG_MB
PORT=$(free_port)
pg_conf "$SRC" "$PORT" "archive_mode = on" "archive_command = ''" "checkpoint_timeout = '1h'"
pg_start "$SRC"
for i in $(seq 1 $N); do
    sql "$PORT" "create table t$i as select g from generate_series(1, 1000) g" >/dev/null &&
        sql "$PORT" "select pg_switch_wal()" >/dev/null || die "WAL generation failed"
done
pg_stop "$SRC"
mapfile -t SEGS < <(ls "$SRC/pg_wal/archive_status" | sed -n 's/\.ready$//p' | LC_ALL=C sort)
[ "${#SEGS[@]}" -ge $N ] || die "only ${#SEGS[@]} ready segments"
SEGS=("${SEGS[@]:0:$N}")

# lookalike DIR: a data directory as the archiver sees it, N segments (copies) with .ready
lookalike() {
    local d=$1 s
    mkdir -p "$d/global" "$d/pg_wal/archive_status" || die "mkdir $d"
    cp "$SRC/global/pg_control" "$SRC/PG_VERSION" "$d/global/" && cp "$SRC/PG_VERSION" "$d/" ||
        die "copy pg_control"
    for s in "${SEGS[@]}"; do
        cp "$SRC/pg_wal/$s" "$d/pg_wal/$s" && : >"$d/pg_wal/archive_status/$s.ready" ||
            die "copy $s"
    done
    chown -R postgres: "$d"
    chmod 700 "$d"
}

# canaries DIR: a postgres-owned directory of files, as base/<db> (names PostgreSQL uses)
canaries() {
    mkdir -m 700 "$1" && for f in 1259 1259_fsm 16384 PG_VERSION pg_filenode.map; do
        echo "canary $f" >"$1/$f"
    done && chown -R postgres: "$1" || die "canaries $1"
}
assert_canaries() { # DIR WHAT
    local f
    for f in 1259 1259_fsm 16384 PG_VERSION pg_filenode.map; do
        [ -f "$1/$f" ] || fail "$2: $1/$f was deleted"
    done
}

# shared_spool DIR: root-owned, 1777 (anyone may create entries; sticky, like /tmp)
shared_spool() { mkdir -m 1777 "$1" || die "mkdir $1"; }

# push_conf NAME SPOOL [LINE...]: $T/NAME.conf with a repository of its own, $T/NAME-repo (so
# that no push meets an identical copy, which would be a WARNING of its own), and FETCH_CONF
# pointed at it
push_conf() {
    local name=$1 spool=$2
    shift 2
    REPO=$T/$name-repo
    make_repo "$REPO"
    write_conf "$T/$name.conf" "repo = '$REPO'" "encrypt_key_file = '$KEY'" "parallel = 2" \
        "spool_dir = '$spool'" "$@"
    CONF=$T/$name.conf
    FETCH_CONF=$T/$name-fetch.conf
    write_conf "$FETCH_CONF" "repo = '$REPO'" "encrypt_key_file = '$KEY'" "parallel = 1"
}

# settle_spool SPOOL: waits (at most 30 s) until no push-ahead process of SPOOL runs
settle_spool() {
    local f=$1/main/pushing/.alive
    [ -e "$f" ] || return 0
    timeout 30 flock "$f" true || fail "a push-ahead process of $1 still runs after 30 s"
}

# push_first DIR: the archiver's call for the oldest ready segment of DIR, as postgres
push_first() {
    run as_pg env -C "$1" "$WAL_PUSH" --config "$CONF" "pg_wal/${SEGS[0]}"
}

# assert_one_warning WHAT REGEX: exactly one WARNING line, matching REGEX
assert_one_warning() {
    local n
    n=$(grep -c 'WARNING' "$T/.last.err")
    [ "$n" = 1 ] || fail_cmd "$1: $n WARNING lines, expected exactly one"
    assert_err_regex "$2" "$1"
}

# assert_archived NAME WHAT: NAME is in the repository of push_conf with the source's content
assert_archived() {
    local out=$T/fetched.$1
    rm -f "$out"
    run "$WAL_FETCH" --config "$FETCH_CONF" "$1" "$out"
    { [ "$RC" = 0 ] && cmp -s "$out" "$SRC/pg_wal/$1"; } || fail_cmd "$2: $1 not archived intact"
    rm -f "$out"
}

# ---- (p1) pushed -> a postgres-owned directory -----------------------------------------------
CASE="(p1) pushed -> base/<db>"
SP=$T/shared1
shared_spool "$SP"
canaries "$T/victim1"
as_att mkdir -m 777 "$SP/main" && as_att ln -s "$T/victim1" "$SP/main/pushed" || die "attacker set-up"
lookalike "$T/d1"
push_conf p1 "$SP"
push_first "$T/d1"
assert_rc 0 "wal-push with a planted pushed link"
settle_spool "$SP"
assert_canaries "$T/victim1" "after wal-push"
assert_one_warning "wal-push" "push-ahead is disabled: .*$SP/main"
assert_archived "${SEGS[0]}" "wal-push"

# ---- (p2) pushing -> pg_wal ------------------------------------------------------------------
CASE="(p2) pushing -> pg_wal"
SP=$T/shared2
shared_spool "$SP"
lookalike "$T/d2"
as_att mkdir -m 777 "$SP/main" && as_att ln -s "$T/d2/pg_wal" "$SP/main/pushing" ||
    die "attacker set-up"
push_conf p2 "$SP"
push_first "$T/d2"
assert_rc 0 "wal-push with a planted pushing link"
settle_spool "$SP"
for s in "${SEGS[@]}"; do
    cmp -s "$T/d2/pg_wal/$s" "$SRC/pg_wal/$s" || fail "WAL segment pg_wal/$s was unlinked or changed"
done
assert_one_warning "wal-push" "push-ahead is disabled: .*$SP/main"
assert_archived "${SEGS[0]}" "wal-push"

# ---- (p3) <spool>/main of postgres, writable by others ----------------------------------------
CASE="(p3) <spool>/main open to others"
SP=$T/spool3
mkdir -m 755 "$SP" && mkdir -m 777 "$SP/main" && chown postgres: "$SP" "$SP/main" ||
    die "mkdir $SP"
canaries "$T/victim3"
as_att ln -s "$T/victim3" "$SP/main/pushed" || die "attacker set-up"
lookalike "$T/d3"
push_conf p3 "$SP"
push_first "$T/d3"
assert_rc 0 "wal-push"
settle_spool "$SP"
assert_canaries "$T/victim3" "after wal-push"
assert_one_warning "wal-push" "push-ahead is disabled: .*writable by group or others"

# ---- (p4) lock files held by the attacker -----------------------------------------------------
CASE="(p4) locks held by another user"
SP=$T/shared4
shared_spool "$SP"
lookalike "$T/d4"
as_att mkdir -m 777 "$SP/main" "$SP/main/pushing" || die "attacker set-up"
for s in "${SEGS[@]}"; do
    as_att sh -c "umask 0; : >'$SP/main/pushing/$s'" || die "attacker lock file"
done
# shellcheck disable=SC2016 # expanded by the attacker's shell
bg_start "$T/locker.log" setpriv --reuid=nobody --regid=nogroup --clear-groups -- bash -c '
    for f in "$1"/main/pushing/0*; do exec {fd}<>"$f"; flock -x "$fd"; done
    : >"$1/main/locked"; exec sleep 300' locker "$SP"
for _ in $(seq 1 100); do [ -e "$SP/main/locked" ] && break; sleep 0.05; done
[ -e "$SP/main/locked" ] || die "the attacker's locks were not taken"
TIMEOUT_S=15
push_conf p4 "$SP" "timeout = $TIMEOUT_S"
push_first "$T/d4"
assert_rc 0 "wal-push with its locks held by another user"
note "wal-push took ${ELAPSED_MS} ms with the locks held (timeout ${TIMEOUT_S} s)"
[ "$ELAPSED_MS" -lt 5000 ] ||
    fail "wal-push took ${ELAPSED_MS} ms: it waited for another user's lock (timeout ${TIMEOUT_S} s)"
assert_one_warning "wal-push" "push-ahead is disabled: .*$SP/main"
assert_archived "${SEGS[0]}" "wal-push"
bg_stop_all

# ---- (p5) root's spool left behind (issue #23): one WARNING a minute, naming the fix ----------
# The stamp of the last WARNING is in $HOME (private to postgres, as /var/lib/postgresql is).
CASE="(p5) <spool>/main owned by root"
SP=$T/spool7
PGHOME=$T/pghome
mkdir -m 755 "$SP" "$SP/main" && chown postgres: "$SP" || die "mkdir $SP"
mkdir -m 700 "$PGHOME" && chown postgres: "$PGHOME" || die "mkdir $PGHOME"
lookalike "$T/d5"
push_conf p5 "$SP"
push_p5() { run as_pg env -C "$T/d5" HOME="$PGHOME" "$WAL_PUSH" --config "$CONF" "pg_wal/${SEGS[$1]}"; }
push_p5 0
assert_rc 0 "wal-push with root's $SP/main"
assert_one_warning "wal-push" "push-ahead is disabled: .*\"$SP/main\" is owned by root \(mode 0755\), not by postgres; fix: chown -R postgres:postgres $SP/main"
for i in 1 2; do
    push_p5 "$i"
    assert_rc 0 "wal-push $i more"
    grep -q WARNING "$T/.last.err" && fail_cmd "wal-push $i more: the WARNING again within a minute"
done
stamp=$(ls "$PGHOME"/.walsafe-spool-main-*.warned 2>/dev/null)
[ -n "$stamp" ] && [ "$(stat -c %U "$stamp")" = postgres ] || fail "no rate-limit stamp of postgres in its HOME"
rm -f "$stamp"
push_p5 3
assert_one_warning "wal-push once the stamp is gone" "push-ahead is disabled: .*$SP/main"
[ -z "$(find "$SP" -mindepth 2)" ] || fail "wal-push created something in root's $SP/main: $(find "$SP" -mindepth 2)"
[ -z "$(find "$T" -maxdepth 1 -name '.walsafe-spool-*')" ] || fail "a stamp outside HOME: $(find "$T" -maxdepth 1 -name '.walsafe-spool-*')"

# ---- prefetch ---------------------------------------------------------------------------------
# fetch_pf DATADIR NAME: wal-fetch NAME pg_wal/RECOVERYXLOG as PostgreSQL runs it (as postgres,
# in the data directory)
fetch_pf() {
    rm -f "$1/pg_wal/RECOVERYXLOG"
    run as_pg env -C "$1" "$WAL_FETCH" --config "$CONF" "$2" pg_wal/RECOVERYXLOG
}
fake_datadir() {
    mkdir -p "$1/pg_wal" && echo 15 >"$1/PG_VERSION" && chown -R postgres: "$1" && chmod 700 "$1" ||
        die "could not create $1"
}
# pf_conf NAME SPOOL [LINE...]: $T/NAME.conf for the repository of every segment
PF_REPO=$T/pf-repo
make_repo "$PF_REPO"
write_conf "$T/pf-push.conf" "repo = '$PF_REPO'" "encrypt_key_file = '$KEY'" "parallel = 1"
for s in "${SEGS[@]}"; do
    run as_pg env -C "$T/d1" "$WAL_PUSH" --config "$T/pf-push.conf" "pg_wal/$s"
    assert_rc 0 "push of $s for the prefetch cases" || die "could not push $s"
done
pf_conf() {
    local name=$1 spool=$2
    shift 2
    write_conf "$T/$name.conf" "repo = '$PF_REPO'" "encrypt_key_file = '$KEY'" "parallel = 2" \
        "spool_dir = '$spool'" "$@"
    CONF=$T/$name.conf
}

CASE="(f1) prefetch below another user's directory"
SP=$T/shared5
shared_spool "$SP"
as_att mkdir -m 777 "$SP/main" || die "attacker set-up"
fake_datadir "$T/f1"
pf_conf f1 "$SP"
fetch_pf "$T/f1" "${SEGS[1]}"
assert_rc 0 "wal-fetch"
cmp -s "$T/f1/pg_wal/RECOVERYXLOG" "$SRC/pg_wal/${SEGS[1]}" || fail "wal-fetch: wrong content"
assert_one_warning "wal-fetch" "prefetch is disabled: .*$SP/main"
prefetchers_stop

CASE="(f2) a link planted at prefetch-<tag>"
SP=$T/spool6
mkdir -m 700 "$SP" && chown postgres: "$SP" || die "mkdir $SP"
fake_datadir "$T/f2"
pf_conf f2 "$SP"
fetch_pf "$T/f2" "${SEGS[1]}" # creates the prefetch directory (and its prefetcher)
assert_rc 0 "first wal-fetch"
prefetchers_stop
PFD=$(find "$SP/main" -mindepth 1 -maxdepth 1 -name 'prefetch-*' | head -1)
[ -n "$PFD" ] || die "no prefetch directory after a wal-fetch with prefetch"
mkdir -m 700 "$T/att6" && chown nobody: "$T/att6" && rm -rf "$PFD" && ln -s "$T/att6" "$PFD" &&
    chown -h nobody: "$PFD" || die "link set-up"
fetch_pf "$T/f2" "${SEGS[2]}"
assert_rc 0 "wal-fetch with the link"
cmp -s "$T/f2/pg_wal/RECOVERYXLOG" "$SRC/pg_wal/${SEGS[2]}" || fail "wal-fetch: wrong content"
assert_one_warning "wal-fetch" "prefetch is disabled: .*prefetch-"
assert_dir_empty "$T/att6" "the link's target"
prefetchers_stop

# ---- (e) spool_dir = '' and a relative spool_dir ------------------------------------------------
CASE="(e) spool_dir = ''"
lookalike "$T/e1"
push_conf e1 "" "log_level = 'info'"
push_first "$T/e1"
assert_rc 0 "wal-push"
[ -z "$(grep WARNING "$T/.last.err")" ] || fail_cmd "wal-push warned with spool_dir = ''"
assert_err_contains "push-ahead is off: spool_dir is empty" "wal-push"
assert_absent "$T/e1/main" "wal-push: a spool in the data directory"
pf_conf e2 "" "log_level = 'info'"
fake_datadir "$T/e2"
fetch_pf "$T/e2" "${SEGS[3]}"
assert_rc 0 "wal-fetch in a data directory"
cmp -s "$T/e2/pg_wal/RECOVERYXLOG" "$SRC/pg_wal/${SEGS[3]}" || fail "wal-fetch: wrong content"
[ -z "$(grep WARNING "$T/.last.err")" ] || fail_cmd "wal-fetch warned with spool_dir = ''"
assert_err_contains "prefetch is off: spool_dir is empty" "wal-fetch"
assert_absent "$T/e2/main" "wal-fetch: a spool in the data directory"
# elsewhere (not a data directory): no prefetcher starting in the working directory
mkdir -m 700 "$T/e3" "$T/e3out" && chown postgres: "$T/e3" "$T/e3out"
run as_pg env -C "$T/e3" "$WAL_FETCH" --config "$CONF" "${SEGS[3]}" "$T/e3out/seg"
assert_rc 0 "wal-fetch in another directory"
[ -z "$(grep WARNING "$T/.last.err")" ] || fail_cmd "wal-fetch warned with spool_dir = ''"
assert_absent "$T/e3/main" "wal-fetch: a spool in the working directory"

CASE="(e) relative spool_dir"
lookalike "$T/e4"
push_conf e4 "walsafe-spool"
push_first "$T/e4"
assert_rc 0 "wal-push"
assert_one_warning "wal-push" "push-ahead is disabled: spool_dir \"walsafe-spool\" is not an absolute path"
assert_absent "$T/e4/walsafe-spool" "wal-push: a spool in the working directory"
pf_conf e5 "walsafe-spool"
fake_datadir "$T/e5"
fetch_pf "$T/e5" "${SEGS[4]}"
assert_rc 0 "wal-fetch"
assert_one_warning "wal-fetch" "prefetch is disabled: spool_dir \"walsafe-spool\" is not an absolute path"
assert_absent "$T/e5/walsafe-spool" "wal-fetch: a spool in the working directory"
mkdir -m 700 "$T/e6" "$T/e6out" && chown postgres: "$T/e6" "$T/e6out"
run as_pg env -C "$T/e6" "$WAL_FETCH" --config "$CONF" "${SEGS[4]}" "$T/e6out/seg"
assert_rc 0 "wal-fetch in another directory"
assert_one_warning "wal-fetch" "prefetch is disabled: spool_dir \"walsafe-spool\" is not an absolute path"
assert_absent "$T/e6/walsafe-spool" "wal-fetch: a spool in the working directory"
prefetchers_stop
finish
