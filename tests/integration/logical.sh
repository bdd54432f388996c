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
#   jobs      create --jobs 2 (directory format, one object per file), restore --jobs 2 into a
#             new database: identical dumps; verify runs pg_restore --list on it
#   all       create --all stores the globals; in a fresh cluster restore --globals creates the
#             role, restore --db shop --create restores with the role's ownership intact
#   faults    an unknown database; a non-superuser without permission on a table; pg_dump killed
#             mid-stream (a pg_bindir wrapper); the wrong key on restore; --to-db that exists
#             without --clean (and with it): each exits 1 with one line naming the cause, and no
#             new backup is listed complete; a password in pg_conninfo reaches pg_dump only in a
#             0600 passfile that is gone afterwards, never in its argv or environment
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
mkdir -p "$FAKE"
for p in pg_dumpall pg_restore psql; do ln -s "$PGBIN/$p" "$FAKE/$p"; done
cat >"$FAKE/pg_dump" <<EOS
#!/bin/bash
[ "\$1" = --version ] && exec "$PGBIN/pg_dump" --version
printf '%s\n' "\$@" >"$T/fake.argv"
env >"$T/fake.env"
stat -c %a "\$PGPASSFILE" >"$T/fake.passmode" 2>/dev/null
cp "\$PGPASSFILE" "$T/fake.passfile" 2>/dev/null
"$PGBIN/pg_dump" "\$@" | head -c 65536
kill -KILL \$\$
EOS
chmod 755 "$FAKE/pg_dump"
chown -R postgres: "$FAKE"
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
assert_eq "$(cat "$T/fake.passmode" 2>/dev/null)" 600 "passfile mode"
grep -q -F "$KILLPW" "$T/fake.passfile" 2>/dev/null || fail "the passfile does not hold the password"
rm -f "$T/fake.passfile"
assert_dir_empty "$SPOOL" "spool after the killed pg_dump (passfile removed)"

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

lb --config "$CONF" restore "$JOBS" --db shop --to-db shop_copy
assert_rc 1 "--to-db that exists"
assert_err_contains "--clean" "the way out"
assert_err_one_line "--to-db exists"
lb --config "$CONF" restore "$JOBS" --db shop --to-db shop_copy --clean
assert_rc 0 "--to-db that exists, with --clean"
same_db "$PORT" shop "$PORT" shop_copy "shop_copy after --clean"

finish
