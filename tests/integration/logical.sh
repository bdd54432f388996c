# logical.sh - the body of t_logical.sh (local repository, every case) and t_logical_s3.sh,
# t_logical_sftp.sh (REPO_KIND=s3 or sftp: the first three cases only): `logicalbackup` against a
# real PostgreSQL 15 with two databases (several schemas, a large object, a role owning objects).
#   create    create --db shop --db crm --label; list --json shows it complete with both
#             databases, their sizes, the label; the spool directory is left empty
#   restore   restore ID --db shop --to-db shop_copy --create: pg_dump --schema-only and
#             --data-only of source and target are identical; --to-file writes the decrypted
#             custom dump (pg_restore --list reads it, mode 0600), and `decode --key-file`
#             turns the stored object into the same bytes
#   verify    verify ID exits 0; one byte flipped in the stored object of crm: verify exits 1
#             naming the object, restore of crm fails, list shows the backup still listed
# Local only:
#   keep      keep / keep --unset show in list --json; verify without an id and verify --all;
#             usage errors exit 2; --to-file never replaces a file
#   jobs      create --jobs 2 (directory format, one object per file), restore --jobs 2 into a
#             new database: identical dumps; verify runs pg_restore --list on it
#   all       create --all stores the globals; in a fresh cluster restore --globals creates the
#             role, restore --db shop --create restores with the role's ownership intact
#   faults    an unknown database; a pg_dump older than the server; a non-superuser without permission on a table; pg_dump killed
#             mid-stream (a pg_bindir wrapper); SIGTERM while pg_dump -Fd is staged (staging
#             directory and child gone); a full repository (256 kB tmpfs); the wrong key on
#             restore; --to-db that exists without --clean (and with it): each exits 1 with one
#             line naming the cause, and no new backup is listed complete; a password in
#             pg_conninfo reaches pg_dump only in a 0600 passfile, never in its argv or
#             environment, and is in no file under spool_dir, TMPDIR or /tmp after logicalbackup
#             is killed (SIGKILL) while pg_dump runs
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
setup_tmp

LB=$BIN_DIR/logicalbackup
REPO_KIND=${REPO_KIND:-local}
KEY=$T/walsafe.key
CONF=$T/walsafe.conf
PGD=$T/primary
SPOOL=$T/spool
make_key "$KEY"
repo_setup "$REPO_KIND"
mkdir -p "$SPOOL" && chown postgres: "$SPOOL" && chmod 700 "$SPOOL"

lb() { run runuser -u postgres -- "$LB" "$@"; }

# logical_conf FILE PORT USER [LINE]...: a configuration for USER on the server on PORT.
logical_conf() {
    local f=$1 port=$2 user=$3
    shift 3
    write_conf "$f" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'" "spool_dir = '$SPOOL'" \
        "pg_conninfo = 'host=$SOCK port=$port user=$user dbname=postgres${PASSWORD:+ password=$PASSWORD}'" "$@"
}
PASSWORD=

# dumps PORT DB OUT: pg_dump --schema-only and --data-only of DB into OUT.schema / OUT.data
# (without the random \restrict keys of PostgreSQL 15.14's plain dumps).
dumps() {
    "$PGBIN/pg_dump" -h "$SOCK" -p "$1" -U postgres --schema-only "$2" | grep -v '^\\\(un\)\?restrict ' >"$3.schema" &&
        "$PGBIN/pg_dump" -h "$SOCK" -p "$1" -U postgres --data-only "$2" | grep -v '^\\\(un\)\?restrict ' >"$3.data"
}

# same_db PORT_A DB_A PORT_B DB_B WHAT: both dumps identical.
same_db() {
    dumps "$1" "$2" "$T/a" && dumps "$3" "$4" "$T/b" || { fail "$5: pg_dump failed"; return 1; }
    cmp -s "$T/a.schema" "$T/b.schema" || { fail "$5: schemas differ: $(diff "$T/a.schema" "$T/b.schema" | head -5)"; return 1; }
    cmp -s "$T/a.data" "$T/b.data" || { fail "$5: data differ: $(diff "$T/a.data" "$T/b.data" | head -5)"; return 1; }
    [ "$(wc -l <"$T/a.data")" -gt 20 ] || fail "$5: the data dump is suspiciously short"
}

# wrapper_bindir DIR < BODY: a pg_bindir whose pg_dump runs BODY (bash; --version is the real
# one's) and whose other programs are PostgreSQL's.
wrapper_bindir() {
    mkdir -p "$1" || die "mkdir $1"
    for p in pg_dumpall pg_restore psql; do ln -s "$PGBIN/$p" "$1/$p"; done
    { printf '#!/bin/bash\n[ "$1" = --version ] && exec "%s/pg_dump" --version\n' "$PGBIN"; cat; } >"$1/pg_dump"
    chmod 755 "$1/pg_dump"
    chown -R postgres: "$1"
}

# create_ok CONF ARGS...: create must succeed; sets ID from list --json (the newest backup).
create_ok() {
    local conf=$1
    shift
    lb --config "$conf" create "$@"
    assert_rc 0 "create $*" || die "create $* failed"
    ID=$(sed -n 's/^logical backup \([0-9TZ]*\) complete.*/\1/p' "$T/.last.out")
    [[ "$ID" =~ ^[0-9]{8}T[0-9]{6}Z$ ]] || die "create printed no id: $(cat "$T/.last.out")"
}

# lb_list CONF: list --json into $T/list.json.
lb_list() {
    lb --config "$1" list --json
    assert_rc 0 "list --json" && cp "$T/.last.out" "$T/list.json"
}

complete_count() {
    json_eval "$T/list.json" "j.logical_backups.filter(b => b.status === 'complete').length"
}

# ---- the source cluster ----
pg_init "$PGD"
PORT=$(free_port)
pg_conf "$PGD" "$PORT"
pg_start "$PGD"
logical_conf "$CONF" "$PORT" postgres
pg_psql "$PORT" <<'SQL' >/dev/null || die "could not set up the databases"
CREATE ROLE app LOGIN;
CREATE DATABASE shop OWNER app;
CREATE DATABASE crm;
SQL
pg_psql "$PORT" -d shop <<'SQL' >/dev/null || die "could not fill shop"
SET ROLE app;
CREATE SCHEMA sales;
CREATE SCHEMA stock;
CREATE TABLE sales.orders (id int PRIMARY KEY, customer text, total numeric(10,2));
INSERT INTO sales.orders SELECT g, 'customer ' || g, g * 1.25 FROM generate_series(1, 5000) g;
CREATE TABLE stock.items (sku text PRIMARY KEY, qty int, doc oid);
INSERT INTO stock.items SELECT 'sku-' || g, g % 17, NULL FROM generate_series(1, 300) g;
UPDATE stock.items SET doc = lo_from_bytea(0, convert_to(repeat('manual page ', 2000), 'UTF8'))
    WHERE sku = 'sku-1';
CREATE VIEW sales.big AS SELECT * FROM sales.orders WHERE total > 100;
CREATE FUNCTION stock.low() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM stock.items WHERE qty < 3';
RESET ROLE;
CREATE TABLE public.secret (v text);
INSERT INTO public.secret VALUES ('classified');
SQL
pg_psql "$PORT" -d crm <<'SQL' >/dev/null || die "could not fill crm"
CREATE SCHEMA people;
CREATE SCHEMA notes;
CREATE TABLE people.contacts (id serial PRIMARY KEY, name text, email text);
INSERT INTO people.contacts (name, email) SELECT 'n' || g, 'n' || g || '@example.org' FROM generate_series(1, 3000) g;
CREATE TABLE notes.memo (id int, body text);
INSERT INTO notes.memo SELECT g, md5(g::text) FROM generate_series(1, 2000) g;
SELECT lo_from_bytea(0, '\x00010203'::bytea);
SQL

# ---- create ----
CASE="create"
create_ok "$CONF" --db shop --db crm --label nightly
FIRST=$ID
lb_list "$CONF"
assert_eq "$(json_eval "$T/list.json" "j.logical_backups.find(b => b.id === '$FIRST').status")" complete "status"
assert_eq "$(json_eval "$T/list.json" "j.logical_backups.find(b => b.id === '$FIRST').databases.map(d => d.name).join(',')")" "shop,crm" "databases"
assert_eq "$(json_eval "$T/list.json" "j.logical_backups.find(b => b.id === '$FIRST').label")" nightly "label"
assert_eq "$(json_eval "$T/list.json" "j.logical_backups.find(b => b.id === '$FIRST').databases.every(d => d.bytes > 10000 && d.stored_bytes > 0 && d.stored_bytes < d.bytes)")" true "sizes"
assert_dir_empty "$SPOOL" "spool after create"
assert_repo_clean "create"

# ---- restore ----
CASE="restore"
lb --config "$CONF" restore "$FIRST" --db shop --to-db shop_copy --create
assert_rc 0 "restore --to-db shop_copy --create"
same_db "$PORT" shop "$PORT" shop_copy "shop restored into shop_copy"
lb --config "$CONF" restore "$FIRST" --db crm --to-file "$T/crm.dump"
assert_rc 0 "restore --to-file"
assert_eq "$(stat -c %a "$T/crm.dump")" 600 "mode of the --to-file dump"
"$PGBIN/pg_restore" --list "$T/crm.dump" | grep -q 'TABLE DATA people contacts' ||
    fail "pg_restore --list does not read the --to-file dump"
OBJ=$(repo_file "main/logical/$FIRST/001.dump")
[ -f "$OBJ" ] || fail "no stored object at $OBJ"
runuser -u postgres -- "$LB" decode --key-file "$KEY" <"$OBJ" >"$T/crm.decoded" 2>"$T/decode.err" ||
    fail "decode failed: $(cat "$T/decode.err")"
cmp -s "$T/crm.dump" "$T/crm.decoded" || fail "decode and --to-file differ"

# ---- verify ----
CASE="verify"
lb --config "$CONF" verify "$FIRST"
assert_rc 0 "verify"
flip_byte "$OBJ" 5000
lb --config "$CONF" verify "$FIRST"
assert_rc 1 "verify of a damaged object"
assert_err_contains "001.dump" "verify names the object"
assert_err_one_line "verify"
lb --config "$CONF" restore "$FIRST" --db crm --to-db crm_bad --create
assert_rc 1 "restore of a damaged object"
assert_err_contains "001.dump" "restore names the object"

if [ "$REPO_KIND" != local ]; then
    finish
fi

# ---- jobs ----
CASE="jobs"
create_ok "$CONF" --db shop --jobs 2
JOBS=$ID
[ -f "$REPO_FILES/main/logical/$JOBS/000.d/toc.dat" ] || fail "no directory-format objects"
lb --config "$CONF" restore "$JOBS" --db shop --to-db shop_jobs --create --jobs 2
assert_rc 0 "restore --jobs 2"
same_db "$PORT" shop "$PORT" shop_jobs "shop restored with --jobs 2"
lb --config "$CONF" verify "$JOBS"
assert_rc 0 "verify of a directory-format backup"
assert_dir_empty "$SPOOL" "spool after jobs"

# ---- keep, verify --all, usage ----
CASE="keep"
lb --config "$CONF" keep "$JOBS"
assert_rc 0 "keep"
lb_list "$CONF"
assert_eq "$(json_eval "$T/list.json" "j.logical_backups.find(b => b.id === '$JOBS').pinned")" true "pinned"
lb --config "$CONF" keep "$JOBS" --unset
assert_rc 0 "keep --unset"
lb_list "$CONF"
assert_eq "$(json_eval "$T/list.json" "j.logical_backups.find(b => b.id === '$JOBS').pinned")" false "unpinned"
lb --config "$CONF" keep 20000101T000000Z
assert_rc 1 "keep of an unknown id"
assert_err_contains "20000101T000000Z" "keep names the id"
lb --config "$CONF" verify
assert_rc 0 "verify without an id (the newest complete backup: $JOBS)"
lb --config "$CONF" verify --all
assert_rc 1 "verify --all with the damaged $FIRST among them"
assert_err_contains "$FIRST" "verify --all names the damaged backup"
CASE="usage"
run "$LB" --help
assert_rc 0 "--help"
grep -q -i usage "$T/.last.out" || fail "--help prints no usage"
run "$LB" --version
assert_rc 0 "--version"
lb --config "$CONF"
assert_rc 2 "no command"
lb --config "$CONF" frobnicate
assert_rc 2 "an unknown command"
assert_err_contains '"frobnicate"' "the command is named"
lb --config "$CONF" create
assert_rc 2 "create without --db or --all"
lb --config "$CONF" restore --db shop
assert_rc 2 "restore without an id"
lb --config "$CONF" restore "$JOBS" --db shop --to-db x --to-file "$T/x"
assert_rc 2 "--to-db with --to-file"
lb --config "$CONF" list --db shop
assert_rc 2 "list --db"
assert_err_contains "--db" "the option is named"
touch "$T/exists.dump"
lb --config "$CONF" restore "$FIRST" --db shop --to-file "$T/exists.dump"
assert_rc 1 "--to-file onto an existing file"
assert_eq "$(stat -c %s "$T/exists.dump")" 0 "the existing file is untouched"

# ---- all: globals into a fresh cluster ----
CASE="all"
create_ok "$CONF" --all
ALL=$ID
PGD2=$T/fresh
pg_init "$PGD2"
PORT2=$(free_port)
pg_conf "$PGD2" "$PORT2"
pg_start "$PGD2"
CONF2=$T/fresh.conf
logical_conf "$CONF2" "$PORT2" postgres
lb --config "$CONF2" restore "$ALL" --globals
assert_rc 0 "restore --globals"
assert_eq "$(pg_psql "$PORT2" -c "SELECT count(*) FROM pg_roles WHERE rolname = 'app'")" 1 "role app restored"
lb --config "$CONF2" restore "$ALL" --db shop --create
assert_rc 0 "restore --db shop --create in the fresh cluster"
same_db "$PORT" shop "$PORT2" shop "shop in the fresh cluster"
assert_eq "$(pg_psql "$PORT2" -d shop -c "SELECT tableowner FROM pg_tables WHERE tablename = 'orders'")" app "owner kept"

# ---- faults ----
CASE="faults"
lb_list "$CONF"
BEFORE=$(complete_count)
lb --config "$CONF" create --db nosuchdb
assert_rc 1 "unknown database"
assert_err_contains '"nosuchdb"' "the database is named"
assert_err_one_line "unknown database"

APPCONF=$T/app.conf
logical_conf "$APPCONF" "$PORT" app
lb --config "$APPCONF" create --db shop
assert_rc 1 "no permission on a table"
assert_err_contains "permission denied" "the cause"
assert_err_one_line "permission denied"

# pg_bindir: a pg_dump that writes 64 kB and kills itself; it also records its argv and
# environment, and the passfile it was given.
FAKE=$T/fakebin
wrapper_bindir "$FAKE" <<EOS
printf '%s\n' "\$@" >"$T/fake.argv"
env >"$T/fake.env"
stat -L -c "%F %a" "\$PGPASSFILE" >"$T/fake.passmode" 2>/dev/null
cp "\$PGPASSFILE" "$T/fake.passfile" 2>/dev/null
"$PGBIN/pg_dump" "\$@" | head -c 65536
kill -KILL \$\$
EOS
KILLPW=pw-$(openssl rand -hex 8)
add_secret "$KILLPW"
PASSWORD=$KILLPW
KILLCONF=$T/kill.conf
logical_conf "$KILLCONF" "$PORT" postgres "pg_bindir = '$FAKE'"
PASSWORD=
lb --config "$KILLCONF" create --db shop
assert_rc 1 "pg_dump killed"
assert_err_contains "signal 9" "the cause"
assert_err_one_line "pg_dump killed"
[ -s "$T/fake.argv" ] && [ -s "$T/fake.env" ] || fail "the pg_dump wrapper did not run"
grep -q -F "$KILLPW" "$T/fake.argv" "$T/fake.env" && fail "the password reached pg_dump's argv or environment"
assert_eq "$(cat "$T/fake.passmode" 2>/dev/null)" "regular file 600" "passfile type and mode (what libpq checks with stat(2))"
grep -q -F "$KILLPW" "$T/fake.passfile" 2>/dev/null || fail "the passfile does not hold the password"
rm -f "$T/fake.passfile"
assert_dir_empty "$SPOOL" "spool after the killed pg_dump"

# SIGKILL of logicalbackup while pg_dump runs: the password is in no file under spool_dir, TMPDIR
# or /tmp. The real pg_dump first connects as a role that must give its password (scram), so the
# password demonstrably reaches libpq; then its wrapper sleeps until logicalbackup is killed.
PW=pw-$(openssl rand -hex 8)
add_secret "$PW"
pg_psql "$PORT" <<<"CREATE ROLE pwuser LOGIN SUPERUSER PASSWORD '$PW'" >/dev/null || die "could not create pwuser"
sed -i '1i local all pwuser scram-sha-256' "$PGD/pg_hba.conf"
pg_psql "$PORT" -c "SELECT pg_reload_conf()" >/dev/null
for _ in $(seq 1 50); do
    "$PGBIN/psql" -h "$SOCK" -p "$PORT" -U pwuser -w -d postgres -c 'SELECT 1' >/dev/null 2>&1 || break
    sleep 0.1
done
"$PGBIN/psql" -h "$SOCK" -p "$PORT" -U pwuser -w -d postgres -c 'SELECT 1' >/dev/null 2>&1 &&
    fail "pg_hba.conf does not ask pwuser for a password"
PWBIN=$T/pwbin
wrapper_bindir "$PWBIN" <<EOS
"$PGBIN/pg_dump" "\$@" >/dev/null 2>"$T/pw.err"
echo \$? >"$T/pw.rc"
echo \$PPID >"$T/pw.lbpid"
echo \$\$ >"$T/pw.pid"
exec sleep 60
EOS
make_repo "$T/pwrepo"
mkdir -p "$T/pwtmp" && chown postgres: "$T/pwtmp"
touch -d '-1 min' "$T/pw.since" # every file written since the password exists is newer
PWCONF=$T/pw.conf
write_conf "$PWCONF" "repo = '$T/pwrepo'" "encrypt_key_file = '$KEY'" "spool_dir = '$SPOOL'" \
    "pg_bindir = '$PWBIN'" "pg_conninfo = 'host=$SOCK port=$PORT user=pwuser dbname=postgres password=$PW'"
TMPDIR=$T/pwtmp runuser -u postgres -- "$LB" --config "$PWCONF" create --db shop >"$T/pw.out" 2>"$T/pw.lb.err" &
PWRUN=$!
for _ in $(seq 1 300); do [ -s "$T/pw.pid" ] && break; sleep 0.1; done
LBPID=$(cat "$T/pw.lbpid" 2>/dev/null)
if [ -n "$LBPID" ] && [ "$(cat "/proc/$LBPID/comm" 2>/dev/null)" = logicalbackup ]; then
    kill -KILL "$LBPID"
else
    fail "SIGKILL: logicalbackup did not run pg_dump: $(cat "$T/pw.lb.err")"
fi
wait "$PWRUN"
DUMPPID=$(cat "$T/pw.pid" 2>/dev/null)
[ -n "$DUMPPID" ] && [ "$(cat "/proc/$DUMPPID/comm" 2>/dev/null)" = sleep ] && kill -KILL "$DUMPPID"
assert_eq "$(cat "$T/pw.rc" 2>/dev/null)" 0 "pg_dump as pwuser with the password ($(head -1 "$T/pw.err"))"
LEFT=$(find /tmp "$SPOOL" "$T/pwtmp" -type f -newer "$T/pw.since" ! -path "$PWCONF" \
    -exec grep -l -s -F -e "$PW" {} + 2>/dev/null | sort -u)
[ -z "$LEFT" ] || fail "SIGKILL: the password was left on disk in: $LEFT"
while read -r f; do case "$f" in "$T"/*) rm -f "$f" ;; esac; done <<<"$LEFT"

# a pg_dump older than the server: refused, both versions named
OLD=$T/oldbin
mkdir -p "$OLD"
printf '#!/bin/sh\necho "pg_dump (PostgreSQL) 14.10"\n' >"$OLD/pg_dump"
chmod 755 "$OLD/pg_dump"
chown -R postgres: "$OLD"
logical_conf "$T/old.conf" "$PORT" postgres "pg_bindir = '$OLD'"
lb --config "$T/old.conf" create --db shop
assert_rc 1 "pg_dump 14 against server 15"
assert_err_regex "version 14.*version 15" "both versions named"
assert_err_one_line "old pg_dump"

# interrupted: SIGTERM while pg_dump -Fd (a wrapper that dumps, then sleeps) holds the staging
# directory: exit 1, the staging directory and the child gone
SLOW=$T/slowbin
wrapper_bindir "$SLOW" <<EOS
"$PGBIN/pg_dump" "\$@" || exit 1
echo \$\$ >"$T/slow.pid"
exec sleep 60
EOS
SLOWCONF=$T/slow.conf
logical_conf "$SLOWCONF" "$PORT" postgres "pg_bindir = '$SLOW'"
rm -f "$T/slow.pid"
runuser -u postgres -- "$LB" --config "$SLOWCONF" create --db shop --jobs 2 >"$T/slow.out" 2>"$T/slow.err" &
SLOWRUN=$!
for _ in $(seq 1 200); do [ -s "$T/slow.pid" ] && break; sleep 0.1; done
[ -n "$(ls -A "$SPOOL")" ] || fail "interrupted: nothing staged in spool_dir while pg_dump -Fd ran"
LBPID=$(pgrep -f "^$LB --config $SLOWCONF" | head -1)
[ -n "$LBPID" ] && kill -TERM "$LBPID"
wait "$SLOWRUN"
assert_eq "$?" 1 "interrupted create: exit status"
grep -q "interrupted" "$T/slow.err" || fail "interrupted: no message: $(cat "$T/slow.err")"
assert_dir_empty "$SPOOL" "spool after the interrupted create"
SLOWPID=$(cat "$T/slow.pid" 2>/dev/null)
[ -n "$SLOWPID" ] && kill -0 "$SLOWPID" 2>/dev/null && fail "interrupted: pg_dump (pid $SLOWPID) still runs"

# repository full: a 256 kB file system, compress = none
TINY=$T/tiny
mkdir -p "$TINY" && chmod 700 "$TINY"
if mount -t tmpfs -o size=256k,mode=0700 tmpfs "$TINY" 2>"$T/mount.err"; then
    MOUNTS+=("$TINY")
    chown postgres: "$TINY"
    TINYCONF=$T/tiny.conf
    write_conf "$TINYCONF" "repo = '$TINY'" "compress = none" "encrypt_key_file = '$KEY'" \
        "spool_dir = '$SPOOL'" "pg_conninfo = 'host=$SOCK port=$PORT user=postgres dbname=postgres'"
    lb --config "$TINYCONF" create --db shop --db crm
    assert_rc 1 "create into a full repository"
    assert_err_regex "no space|space left" "full repository"
    assert_err_one_line "full repository"
    assert_no_temp_files "$TINY" "full repository"
    lb --config "$TINYCONF" list --json
    assert_eq "$(json_eval "$T/.last.out" "j.logical_backups.length")" 0 "full repository: nothing listed"
else
    echo "skip: cannot mount tmpfs ($(head -1 "$T/mount.err")); the full repository not tested"
fi

lb_list "$CONF"
assert_eq "$(complete_count)" "$BEFORE" "no new complete backup after the faults"
assert_eq "$(json_eval "$T/list.json" "j.logical_backups.length")" "$BEFORE" "nothing of the failed runs left"

WRONG=$T/wrong.key
make_key "$WRONG"
WRONGCONF=$T/wrong.conf
write_conf "$WRONGCONF" "${REPO_CONF[@]}" "encrypt_key_file = '$WRONG'" "spool_dir = '$SPOOL'" \
    "pg_conninfo = 'host=$SOCK port=$PORT user=postgres dbname=postgres'"
lb --config "$WRONGCONF" restore "$JOBS" --db shop --to-db shop_wrong --create
assert_rc 1 "wrong key"
assert_err_regex "key" "the cause"
assert_err_one_line "wrong key"

run runuser -u postgres -- "$LB" decode --key-file "$WRONG" <"$REPO_FILES/main/logical/$JOBS/000.d/toc.dat"
assert_rc 1 "decode with the wrong key"
assert_err_regex "key" "decode: the cause"
[ -s "$T/.last.out" ] && fail "decode with the wrong key wrote bytes"
run runuser -u postgres -- "$LB" decode --key-file "$KEY" <"$REPO_FILES/main/logical/$JOBS/000.d/toc.dat"
assert_rc 0 "decode of toc.dat with the right key"
head -c 5 "$T/.last.out" | grep -q PGDMP || fail "decoded toc.dat does not start with PGDMP"

lb --config "$CONF" restore "$JOBS" --db shop --to-db shop_copy
assert_rc 1 "--to-db that exists"
assert_err_contains "--clean" "the way out"
assert_err_one_line "--to-db exists"
lb --config "$CONF" restore "$JOBS" --db shop --to-db shop_copy --clean
assert_rc 0 "--to-db that exists, with --clean"
same_db "$PORT" shop "$PORT" shop_copy "shop_copy after --clean"

finish
