#!/usr/bin/env bash
# t_bad_inputs: wrong, damaged or hostile inputs to wal-push and wal-fetch. Each is refused
# with the documented exit status and one clear line on stderr, and nothing is lost: the
# repository is unchanged by a refused push, and a refused fetch leaves DEST_PATH absent.
. "$(dirname "$0")/lib.sh"
setup_tmp

SEG_MB=1
SEG_BYTES=$((SEG_MB * 1024 * 1024))

KEY=$T/walsafe.key
REPO=$T/repo
CONF=$T/walsafe.conf
A=$T/a
make_key "$KEY"
make_repo "$REPO"
write_conf "$CONF" "repo = '$REPO'" "encrypt_key_file = '$KEY'"

# ---- a real cluster whose archive we then abuse ----
CASE="setup"
archiving_cluster "$A" "$CONF" --wal-segsize=$SEG_MB
sql "$PORT" "create table t (id int, pad text)" || die "create table failed"
for r in 1 2 3; do
    sql "$PORT" "insert into t select g, repeat(md5(g::text), 3) from generate_series(1, 3000) g" ||
        die "insert failed"
    last=$(sql "$PORT" "select pg_walfile_name(pg_switch_wal())") || die "pg_switch_wal failed"
done
# Write into the next segment too, so it is a real (current, unarchived) segment.
sql "$PORT" "insert into t values (0, 'current')" || die "insert failed"
CUR=$(sql "$PORT" "select pg_walfile_name(pg_current_wal_lsn())")
wait_archived "$PORT" "$last" 90 || { show_log "$A.log"; die "archiving did not finish"; }
assert_eq "$(sql "$PORT" "select failed_count from pg_stat_archiver")" 0 "archiver failures"
pg_stop_immediate "$A"
SYSID_A=$(sysid_of "$A")

# S1, S2: archived segments; CUR: a valid segment that is not in the repository.
S2=$last
S1=$(seg_name 1 $(($(seg_num "$S2" $SEG_MB) - 1)) $SEG_MB)
obj_of() { echo "$REPO/main/wal/${1:0:16}/$1"; }
O1=$(obj_of "$S1")
O2=$(obj_of "$S2")
[ -f "$O1" ] && [ -f "$O2" ] || die "archived objects $O1 / $O2 missing"
[ -f "$A/pg_wal/$CUR" ] && [ ! -e "$(obj_of "$CUR")" ] || die "no unarchived segment $CUR to work with"
note "archived $S1 and $S2; current segment $CUR"

# in_path NAME: a path NAME in a fresh scratch directory (readable by postgres).
in_path() {
    local d
    d=$(mktemp -d "$T/in.XXXXXX") || die "mktemp"
    chmod 755 "$d"
    echo "$d/$1"
}

# push_refused EXPECTED_TEXT WHAT CMD...: the push must exit 1 with one line on stderr,
# mentioning EXPECTED_TEXT (if not empty), and leave the repository exactly as it was.
push_refused() {
    local text=$1 what=$2 before
    shift 2
    before=$(repo_state "$REPO")
    run "$@"
    assert_rc 1 "$what"
    assert_err_one_line "$what"
    [ -z "$text" ] || assert_err_contains "$text" "$what"
    assert_eq "$(repo_state "$REPO")" "$before" "$what: repository state (must be unchanged)"
    assert_no_temp_files "$REPO" "$what"
}

# fetch_refused STATUS WHAT CMD... (DEST must be the last argument): exit STATUS, one line on
# stderr, nothing at all in DEST's directory.
fetch_refused() {
    local status=$1 what=$2
    shift 2
    run "$@"
    assert_rc "$status" "$what"
    assert_err_one_line "$what"
    assert_absent "$DEST" "$what: DEST_PATH"
    assert_dir_empty "$DEST_DIR" "$what: destination directory"
}

# fetch_ok NAME WHAT: the archived NAME comes back identical to A's pg_wal copy (for a
# .partial, the segment it was made from).
fetch_ok() {
    local src=$A/pg_wal/${1%.partial}
    [ "$1" != "${HIST:-}" ] || src=$HIST_SRC
    new_dest
    run "$WAL_FETCH" --config "$CONF" "$1" "$DEST"
    assert_rc 0 "$2: wal-fetch $1" &&
        { cmp -s "$DEST" "$src" || fail "$2: fetched $1 differs from $src"; }
}

# ---- (a) a WAL file of another system ----
CASE="(a) foreign segment"
B=$T/b
pg_init "$B" --wal-segsize=$SEG_MB
SYSID_B=$(sysid_of "$B")
BSEG=$(redo_wal_of "$B")
[ "$SYSID_A" != "$SYSID_B" ] || die "the two clusters have the same system identifier"
f=$(in_path "$BSEG")
cp "$B/pg_wal/$BSEG" "$f"
push_refused "$SYSID_A" "push of $BSEG from system $SYSID_B" "$WAL_PUSH" --config "$CONF" "$f"
assert_err_contains "$SYSID_B" "push of a foreign segment"

CASE="(a) other PostgreSQL version"
# CUR with the page magic of PostgreSQL 14 (0xD10D) in place of 15's (0xD110).
f=$(in_path "$CUR")
cp "$A/pg_wal/$CUR" "$f"
[ "$(od -An -tx1 -N2 "$f" | tr -d ' \n')" = "10d1" ] || die "$CUR does not carry PostgreSQL 15's page magic"
printf '\015\321' | dd of="$f" bs=1 seek=0 conv=notrunc status=none
push_refused "$f" "push of a segment with PostgreSQL 14's page magic" "$WAL_PUSH" --config "$CONF" "$f"
assert_err_contains "14" "push of a PostgreSQL 14 segment"
assert_err_contains "15" "push of a PostgreSQL 14 segment"

CASE="(a) foreign history file"
HIST=00000005.history
f=$(in_path "$HIST")
printf '1\t0/%X\tno recovery target specified\n' $((SEG_BYTES * 3)) >"$f"
HIST_SRC=$f
# PostgreSQL runs archive_command in the data directory: from B's, this file is B's.
push_refused "$SYSID_A" "push of $HIST from the data directory of system $SYSID_B" \
    env -C "$B" "$WAL_PUSH" --config "$CONF" "$f"
assert_err_contains "$SYSID_B" "push of a foreign history file"
# From A's data directory the same file is accepted, and comes back intact.
run env -C "$A" "$WAL_PUSH" --config "$CONF" "$f"
assert_rc 0 "push of $HIST from A's data directory"
new_dest
run "$WAL_FETCH" --config "$CONF" "$HIST" "$DEST"
assert_rc 0 "fetch of $HIST" && { cmp -s "$DEST" "$f" || fail "fetched $HIST differs"; }

CASE="(i) history file never replaced"
g=$(in_path "$HIST")
printf '1\t0/%X\tno recovery target specified\n' $((SEG_BYTES * 4)) >"$g"
push_refused "" "push of a different $HIST" env -C "$A" "$WAL_PUSH" --config "$CONF" "$g"
new_dest
run "$WAL_FETCH" --config "$CONF" "$HIST" "$DEST"
assert_rc 0 "fetch of $HIST after the refused replacement" &&
    { cmp -s "$DEST" "$f" || fail "the stored $HIST was replaced"; }

# ---- (b) damaged or fake segment files ----
CASE="(b) truncated segment"
f=$(in_path "$CUR")
head -c $((SEG_BYTES / 2)) "$A/pg_wal/$CUR" >"$f"
push_refused "$f" "push of a half-length copy of $CUR" "$WAL_PUSH" --config "$CONF" "$f"

CASE="(b) empty file"
f=$(in_path "$CUR")
: >"$f"
push_refused "$f" "push of an empty file named $CUR" "$WAL_PUSH" --config "$CONF" "$f"

CASE="(b) not WAL"
f=$(in_path "$CUR")
head -c $SEG_BYTES /dev/urandom >"$f"
push_refused "$f" "push of random bytes named $CUR" "$WAL_PUSH" --config "$CONF" "$f"

CASE="(b) segment under another name"
NEXT=$(seg_name 1 $(($(seg_num "$CUR" $SEG_MB) + 1)) $SEG_MB)
f=$(in_path "$NEXT")
cp "$A/pg_wal/$CUR" "$f"
push_refused "$f" "push of $CUR's content named $NEXT" "$WAL_PUSH" --config "$CONF" "$f"

CASE="(b) .partial file"
# What PostgreSQL archives at promotion: a full-size segment whose tail is unused.
f=$(in_path "$CUR.partial")
cp "$A/pg_wal/$CUR" "$f"
run "$WAL_PUSH" --config "$CONF" "$f"
assert_rc 0 "push of $CUR.partial"
[ -f "$(obj_of "$CUR").partial" ] || fail "$CUR.partial is not at $(obj_of "$CUR").partial"
new_dest
run "$WAL_FETCH" --config "$CONF" "$CUR.partial" "$DEST"
assert_rc 0 "fetch of $CUR.partial" && { cmp -s "$DEST" "$f" || fail "fetched $CUR.partial differs"; }
f=$(in_path "$CUR.partial")
head -c $((SEG_BYTES - 8192)) "$A/pg_wal/$CUR" >"$f"
push_refused "$f" "push of a truncated .partial file" "$WAL_PUSH" --config "$CONF" "$f"
# Neither is the segment itself, which is still missing from the archive.
[ ! -e "$(obj_of "$CUR")" ] || fail "pushing $CUR.partial stored $CUR"

# ---- (c) missing file ----
CASE="(c) missing file"
push_refused "$T/nonexistent/$CUR" "push of a missing file" \
    "$WAL_PUSH" --config "$CONF" "$T/nonexistent/$CUR"

# ---- (d) bad key files ----
CASE="(d) key file mode 0644"
K644=$T/key644
openssl rand -hex 32 >"$K644"
add_secret "$(cat "$K644")"
chmod 644 "$K644"
write_conf "$T/c644.conf" "repo = '$REPO'" "encrypt_key_file = '$K644'"
push_refused "$K644" "push with a 0644 key file" "$WAL_PUSH" --config "$T/c644.conf" "$A/pg_wal/$CUR"
new_dest
fetch_refused 255 "fetch with a 0644 key file" "$WAL_FETCH" --config "$T/c644.conf" "$S1" "$DEST"
assert_err_contains "$K644" "fetch with a 0644 key file"

CASE="(d) key file of wrong length"
KSHORT=$T/keyshort
(umask 077 && openssl rand -hex 31 >"$KSHORT")
add_secret "$(cat "$KSHORT")"
write_conf "$T/cshort.conf" "repo = '$REPO'" "encrypt_key_file = '$KSHORT'"
push_refused "$KSHORT" "push with a 62-digit key" "$WAL_PUSH" --config "$T/cshort.conf" "$A/pg_wal/$CUR"
new_dest
fetch_refused 255 "fetch with a 62-digit key" "$WAL_FETCH" --config "$T/cshort.conf" "$S1" "$DEST"
assert_err_contains "$KSHORT" "fetch with a 62-digit key"

CASE="(d) key file not hex"
KNOTHEX=$T/keynothex
(umask 077 && printf '%064d\n' 0 | tr 0 g >"$KNOTHEX")
add_secret "$(cat "$KNOTHEX")"
write_conf "$T/cnothex.conf" "repo = '$REPO'" "encrypt_key_file = '$KNOTHEX'"
push_refused "$KNOTHEX" "push with a non-hex key" "$WAL_PUSH" --config "$T/cnothex.conf" "$A/pg_wal/$CUR"

# ---- (e) damaged objects in the repository ----
# damage_and_fetch WHAT: fetch S1 (whose object was just damaged) must fail with 255; then the
# original object is put back.
damage_and_fetch() {
    new_dest
    fetch_refused 255 "$1" "$WAL_FETCH" --config "$CONF" "$S1" "$DEST"
    assert_err_contains "$S1" "$1"
    cp -p "$T/O1.orig" "$O1"
}
cp -p "$O1" "$T/O1.orig"
SIZE1=$(stat -c %s "$O1")
CASE="(e) corrupted object"
flip_byte "$O1" $((SIZE1 / 2))
damage_and_fetch "byte flipped in the middle of the object"
flip_byte "$O1" 10
damage_and_fetch "cipher byte of the header flipped"
flip_byte "$O1" 40
damage_and_fetch "salt byte of the header flipped"
flip_byte "$O1" $((SIZE1 - 1))
damage_and_fetch "last byte (tag) flipped"
CASE="(e) truncated object"
truncate -s $((SIZE1 / 2)) "$O1"
damage_and_fetch "object cut to half"
truncate -s $((SIZE1 - 1)) "$O1"
damage_and_fetch "object cut by one byte"
truncate -s 64 "$O1"
damage_and_fetch "object cut to its header"
: >"$O1"
damage_and_fetch "object emptied"
CASE="(e) appended bytes"
printf 'x' >>"$O1"
damage_and_fetch "one byte appended"
CASE="(e) object under another name"
cp "$O2" "$O1"
damage_and_fetch "$S2's object served as $S1"
CASE="(e) after repair"
fetch_ok "$S1" "restored object"

CASE="(e) damaged identity"
ID=$REPO/main/identity
cp -p "$ID" "$T/identity.orig"
flip_byte "$ID" $(($(stat -c %s "$ID") / 2))
push_refused "identity" "push while the cluster identity is damaged" \
    "$WAL_PUSH" --config "$CONF" "$A/pg_wal/$CUR"
# README.md, "Exit status": every failure's line names the file, the object and the cause.
assert_err_contains "$CUR" "push while the cluster identity is damaged (the WAL file must be named)"
# "Not in the archive" (1) only once the identity was read: damaged, it is an error (255).
NOSUCH=$(seg_name 1 $(($(seg_num "$CUR" $SEG_MB) + 200)) $SEG_MB)
new_dest
fetch_refused 255 "fetch of a missing segment while the cluster identity is damaged" \
    env -C "$T" "$WAL_FETCH" --config "$CONF" "$NOSUCH" "$DEST"
assert_err_contains "identity" "fetch of a missing segment while the cluster identity is damaged"
new_dest
fetch_refused 255 "fetch of a missing history file while the cluster identity is damaged" \
    env -C "$T" "$WAL_FETCH" --config "$CONF" 00000042.history "$DEST"
cp -p "$T/identity.orig" "$ID"
CASE="(e) unreadable identity"
chmod 000 "$ID"
new_dest
chmod 777 "$DEST_DIR"
fetch_refused 255 "fetch (as postgres) of a missing segment while the identity is unreadable" \
    runuser -u postgres -- env -C "$T" WALSAFE_PARALLEL=1 "$WAL_FETCH" --config "$CONF" "$NOSUCH" "$DEST"
new_dest
chmod 777 "$DEST_DIR"
fetch_refused 255 "fetch (as postgres) of a missing history file while the identity is unreadable" \
    runuser -u postgres -- env -C "$T" WALSAFE_PARALLEL=1 "$WAL_FETCH" --config "$CONF" 00000042.history "$DEST"
chmod 600 "$ID"
new_dest
run "$WAL_FETCH" --config "$CONF" "$NOSUCH" "$DEST"
assert_rc 1 "fetch of a missing segment once the identity is readable again"
CASE="(e) directory at an object key"
# A directory where a segment's object belongs is damage, not "not in the archive".
mkdir -p "$(obj_of "$NOSUCH")"
new_dest
fetch_refused 255 "fetch of a segment whose object key is a directory" \
    env -C "$T" "$WAL_FETCH" --config "$CONF" "$NOSUCH" "$DEST"
rmdir "$(obj_of "$NOSUCH")"

# ---- (e) chunk-level damage: an uncompressed encrypted object has several AEAD chunks ----
CASE="(e) chunks"
REPO2=$T/repo2
make_repo "$REPO2"
write_conf "$T/cplain.conf" "repo = '$REPO2'" "encrypt_key_file = '$KEY'" "compress = none"
for s in "$S1" "$S2"; do
    run "$WAL_PUSH" --config "$T/cplain.conf" "$A/pg_wal/$s"
    assert_rc 0 "push of $s into an uncompressed encrypted repository" || die "cannot go on"
done
P1=$REPO2/main/wal/${S1:0:16}/$S1
P2=$REPO2/main/wal/${S2:0:16}/$S2
cp -p "$P1" "$T/P1.orig"
# Chunk size from the header (bytes 12..15, big-endian); each stored chunk has a 16-byte tag.
read -r c0 c1 c2 c3 < <(od -An -tu1 -j 12 -N 4 "$P1")
CS=$(((c0 << 24) | (c1 << 16) | (c2 << 8) | c3))
CH=$((CS + 16))
PSIZE=$(stat -c %s "$P1")
NCH=$(((PSIZE - 64 - 64 + CH - 1) / CH))
[ "$NCH" -ge 3 ] && [ $(((PSIZE - 128) % CH)) -eq 0 ] ||
    die "expected >= 3 full chunks of $CH bytes in a $PSIZE-byte object (chunk size $CS)"
note "uncompressed object: $NCH chunks of $CS bytes"
part() { tail -c +$(($2 + 1)) "$1" | head -c "$3"; }
chunk_fetch() { # WHAT: fetch S1 from REPO2 must fail; then restore the original object
    new_dest
    fetch_refused 255 "$1" "$WAL_FETCH" --config "$T/cplain.conf" "$S1" "$DEST"
    cp -p "$T/P1.orig" "$P1"
}
{ part "$T/P1.orig" 0 $((64 + 2 * CH)); part "$T/P1.orig" $((PSIZE - 64)) 64; } >"$P1"
chunk_fetch "object cut at a chunk boundary (trailer kept)"
head -c $((64 + 2 * CH)) "$T/P1.orig" >"$P1"
chunk_fetch "object cut at a chunk boundary"
{ part "$T/P1.orig" 0 $((64 + CH)); part "$T/P1.orig" $((64 + 2 * CH)) $((PSIZE - 64 - 2 * CH)); } >"$P1"
chunk_fetch "chunk 1 removed"
{ part "$T/P1.orig" 0 $((64 + CH)); part "$T/P1.orig" $((64 + 2 * CH)) "$CH"
  part "$T/P1.orig" $((64 + CH)) "$CH"; part "$T/P1.orig" $((64 + 3 * CH)) $((PSIZE - 64 - 3 * CH)); } >"$P1"
chunk_fetch "chunks 1 and 2 swapped"
{ part "$T/P1.orig" 0 $((64 + CH)); part "$P2" $((64 + CH)) "$CH"
  part "$T/P1.orig" $((64 + 2 * CH)) $((PSIZE - 64 - 2 * CH)); } >"$P1"
chunk_fetch "chunk 1 taken from $S2's object"
{ part "$T/P1.orig" 0 $((PSIZE - 64)); part "$P2" $(($(stat -c %s "$P2") - 64)) 64; } >"$P1"
chunk_fetch "trailer taken from $S2's object"
{ cat "$T/P1.orig"; part "$T/P1.orig" $((PSIZE - 64)) 64; } >"$P1"
chunk_fetch "trailer chunk repeated"
new_dest
run "$WAL_FETCH" --config "$T/cplain.conf" "$S1" "$DEST"
assert_rc 0 "fetch of the restored uncompressed object" &&
    { cmp -s "$DEST" "$A/pg_wal/$S1" || fail "fetched $S1 differs from pg_wal's"; }

# ---- (e) without encryption objects are still checksummed and bound to their name ----
CASE="(e) unencrypted"
REPO3=$T/repo3
make_repo "$REPO3"
write_conf "$T/cnoenc.conf" "repo = '$REPO3'"
for s in "$S1" "$S2"; do
    run "$WAL_PUSH" --config "$T/cnoenc.conf" "$A/pg_wal/$s"
    assert_rc 0 "push of $s into an unencrypted repository" || die "cannot go on"
done
U1=$REPO3/main/wal/${S1:0:16}/$S1
U2=$REPO3/main/wal/${S2:0:16}/$S2
assert_eq "$(od -An -tu1 -j 10 -N1 "$U1" | tr -d ' ')" 0 "cipher byte of an unencrypted object"
cp -p "$U1" "$T/U1.orig"
USIZE=$(stat -c %s "$U1")
plain_fetch() {
    new_dest
    fetch_refused 255 "$1" "$WAL_FETCH" --config "$T/cnoenc.conf" "$S1" "$DEST"
    cp -p "$T/U1.orig" "$U1"
}
flip_byte "$U1" $((USIZE / 2))
plain_fetch "byte flipped in an unencrypted object"
flip_byte "$U1" $((USIZE - 5))
plain_fetch "byte flipped in the checksum of an unencrypted object"
truncate -s $((USIZE - 1)) "$U1"
plain_fetch "unencrypted object cut by one byte"
printf 'x' >>"$U1"
plain_fetch "byte appended to an unencrypted object"
cp "$U2" "$U1"
plain_fetch "$S2's unencrypted object served as $S1"
new_dest
run "$WAL_FETCH" --config "$T/cnoenc.conf" "$S1" "$DEST"
assert_rc 0 "fetch of the restored unencrypted object" &&
    { cmp -s "$DEST" "$A/pg_wal/$S1" || fail "fetched $S1 differs from pg_wal's"; }
# An unencrypted object in a repository configured with a key is still readable (objects are
# self-describing), and an encrypted one without the key is not (see (f)).
new_dest
run "$WAL_FETCH" --config "$CONF" --repo "$REPO3" "$S1" "$DEST"
assert_rc 0 "fetch of an unencrypted object with encrypt_key_file set"

# ---- (e) a small object that decodes to far more than any WAL file ----
# Someone who can write to an unencrypted repository plants ~8 KiB of zstd that decode to
# 256 MiB. wal-fetch must stop at the cluster's segment size (1 MiB here), never filling pg_wal:
# run under a file size limit of one segment, a write beyond it would kill it (SIGXFSZ, 153).
CASE="(e) decompression bomb"
OBJFORGE=${OBJFORGE:-$BIN_DIR/../tests/tools/objforge}
[ -x "$OBJFORGE" ] || die "no objforge at $OBJFORGE (make <BUILD>/tests/tools/objforge)"
bomb_fetch() { # NAME OBJECT_KEY BYTES WHAT
    run "$OBJFORGE" "$T/cnoenc.conf" "$2" "$3"
    assert_rc 0 "objforge $2" || die "cannot forge $2"
    [ "$(cat "$T/.last.out")" -le 16384 ] || fail "$4: the forged object has $(cat "$T/.last.out") bytes"
    new_dest
    fetch_refused 255 "$4" bash -c 'ulimit -f "$0" && exec "$@"' $((SEG_BYTES / 1024)) \
        "$WAL_FETCH" --config "$T/cnoenc.conf" "$1" "$DEST"
    assert_err_contains "more than" "$4"
    [ "$ELAPSED_MS" -lt 5000 ] || fail "$4: took ${ELAPSED_MS} ms"
}
bomb_fetch "$S1" "main/wal/${S1:0:16}/$S1" $((256 << 20)) "segment object decoding to 256 MiB"
cp -p "$T/U1.orig" "$U1"
bomb_fetch "$S1.partial" "main/wal/${S1:0:16}/$S1.partial" $((SEG_BYTES + 1)) \
    ".partial object decoding to one byte more than a segment"
bomb_fetch 00000007.history main/wal/00000007.history $((64 << 20)) \
    ".history object decoding to 64 MiB"
bomb_fetch "$S1.00000028.backup" "main/wal/${S1:0:16}/$S1.00000028.backup" $((2 << 20)) \
    ".backup object decoding to 2 MiB"
new_dest
run "$WAL_FETCH" --config "$T/cnoenc.conf" "$S1" "$DEST"
assert_rc 0 "fetch of $S1 after the bomb was replaced by the real object" &&
    { cmp -s "$DEST" "$A/pg_wal/$S1" || fail "fetched $S1 differs from pg_wal's"; }

# The prefetcher meets the bomb first when it fetches ahead: it must stop at the segment size
# too (before writing beyond it into its spool), not check the size after decoding 256 MiB.
CASE="(e) decompression bomb met by the prefetcher"
PFSPOOL=$T/pfspool
PFLOG=$T/pfspool.log
install -d -m 700 -o postgres -g postgres "$PFSPOOL" || die "could not create $PFSPOOL"
write_conf "$T/cpf.conf" "repo = '$REPO3'" "parallel = 2" "spool_dir = '$PFSPOOL'" \
    "log_file = '$PFLOG'"
cp -p "$U2" "$T/U2.orig"
run "$OBJFORGE" "$T/cnoenc.conf" "main/wal/${S2:0:16}/$S2" $((256 << 20))
assert_rc 0 "objforge $S2" || die "cannot forge $S2"
chown -R postgres: "$REPO3"
new_dest
chown postgres: "$DEST_DIR"
run runuser -u postgres -- "$WAL_FETCH" --config "$T/cpf.conf" "$S1" "$DEST"
assert_rc 0 "fetch of $S1 that starts the prefetcher"
pf_pid=""
for i in $(seq 150); do
    grep -q "could not prefetch WAL file \"$S2\"" "$PFLOG" 2>/dev/null && break
    sleep 0.1
done
for f in "$PFSPOOL"/main/prefetch-*/lock; do [ -f "$f" ] && pf_pid=$(head -1 "$f"); done
if [ -n "$pf_pid" ] && [ "$(cat "/proc/$pf_pid/comm" 2>/dev/null)" = wal-prefetch ]; then
    kill -KILL "$pf_pid"
fi
line=$(grep -m1 "could not prefetch WAL file \"$S2\"" "$PFLOG")
case "$line" in
*"more than"*) ;;
"") fail "the prefetcher did not report the bomb at $S2 within 15 s" ;;
*) fail "the prefetcher decoded the whole bomb before refusing it: $line" ;;
esac
cp -p "$T/U2.orig" "$U2"

# ---- (f) wrong or missing key ----
CASE="(f) wrong key"
KEY2=$T/other.key
make_key "$KEY2"
write_conf "$T/cwrong.conf" "repo = '$REPO'" "encrypt_key_file = '$KEY2'"
new_dest
fetch_refused 255 "fetch with another key" "$WAL_FETCH" --config "$T/cwrong.conf" "$S1" "$DEST"
CASE="(f) no key"
write_conf "$T/cnokey.conf" "repo = '$REPO'"
new_dest
fetch_refused 255 "fetch of an encrypted object without a key" \
    "$WAL_FETCH" --config "$T/cnokey.conf" "$S1" "$DEST"
CASE="(f) old key for reading"
write_conf "$T/crotated.conf" "repo = '$REPO'" "encrypt_key_file = '$KEY2'" "decrypt_key_files = '$KEY'"
new_dest
run "$WAL_FETCH" --config "$T/crotated.conf" "$S1" "$DEST"
assert_rc 0 "fetch with the old key in decrypt_key_files" &&
    { cmp -s "$DEST" "$A/pg_wal/$S1" || fail "fetched $S1 differs"; }
# Re-archiving after a key rotation compares with the copy stored under the old key.
before=$(repo_state "$REPO")
run "$WAL_PUSH" --config "$T/crotated.conf" "$A/pg_wal/$S1"
assert_rc 0 "identical re-push of $S1 after a key rotation"
assert_err_regex "warning" "identical re-push of $S1 after a key rotation"
assert_eq "$(repo_state "$REPO")" "$before" "repository after the identical re-push"
f=$(in_path "$S1")
cp "$A/pg_wal/$S1" "$f"
flip_byte "$f" $((SEG_BYTES - 100))
push_refused "$S1" "push of different content as $S1 after a key rotation" \
    "$WAL_PUSH" --config "$T/crotated.conf" "$f"
# Without the old key the stored copy cannot be compared: refused, never overwritten.
push_refused "$S1" "re-push of $S1 without the key of the stored copy" \
    "$WAL_PUSH" --config "$T/cwrong.conf" "$A/pg_wal/$S1"

# ---- (g) read-only repository ----
CASE="(g) read-only repository"
WALD=$REPO/main/wal
chmod 500 "$WALD" "$WALD/${CUR:0:16}"
f=$(in_path "$CUR")
cp "$A/pg_wal/$CUR" "$f"
chmod 644 "$f"
push_refused "" "push as postgres into a read-only wal directory" \
    runuser -u postgres -- "$WAL_PUSH" --config "$CONF" "$f"
# What is already there needs no write: an identical re-push succeeds (with the warning), a
# different one is still refused.
g=$(in_path "$S1")
cp "$A/pg_wal/$S1" "$g"
chmod 644 "$g"
before=$(repo_state "$REPO")
run runuser -u postgres -- "$WAL_PUSH" --config "$CONF" "$g"
assert_rc 0 "identical re-push of $S1 as postgres into a read-only wal directory"
assert_err_one_line "identical re-push into a read-only wal directory"
assert_err_regex "warning.*identical" "identical re-push into a read-only wal directory"
assert_eq "$(repo_state "$REPO")" "$before" "repository after the identical re-push (read-only)"
flip_byte "$g" $((SEG_BYTES - 100))
push_refused "$S1" "different content as $S1 into a read-only wal directory" \
    runuser -u postgres -- "$WAL_PUSH" --config "$CONF" "$g"
chmod 700 "$WALD" "$WALD/${CUR:0:16}"
# Nothing lost: once writable, the same push as the same user succeeds and round-trips.
run runuser -u postgres -- "$WAL_PUSH" --config "$CONF" "$f"
assert_rc 0 "the same push after the repository became writable"
fetch_ok "$CUR" "after the read-only episode"

# ---- (h) full repository ----
CASE="(h) full repository"
TINY=$T/tiny
mkdir -p "$TINY"
chmod 700 "$TINY"
if mount -t tmpfs -o size=2m,mode=0700 tmpfs "$TINY" 2>"$T/mount.err"; then
    MOUNTS+=("$TINY")
    D=$T/d16
    pg_init "$D"
    DSEG=$(redo_wal_of "$D")
    [ "$(stat -c %s "$D/pg_wal/$DSEG")" -eq $((16 * 1024 * 1024)) ] || die "$DSEG is not 16 MiB"
    write_conf "$T/ctiny.conf" "repo = '$TINY'" "compress = none"
    before_df=$(df --output=used -B1 "$TINY" | tail -1)
    run "$WAL_PUSH" --config "$T/ctiny.conf" "$D/pg_wal/$DSEG"
    assert_rc 1 "push of a 16 MiB segment into a 2 MiB file system"
    assert_err_one_line "push into a full repository"
    assert_err_regex "no space|space left|ENOSPC" "push into a full repository"
    leftover=$(find "$TINY" -type f ! -path "$TINY/main/identity" -printf '%p %s\n')
    [ -z "$leftover" ] || fail "files left in the full repository: $leftover"
    assert_no_temp_files "$TINY" "full repository"
    used=$(df --output=used -B1 "$TINY" | tail -1)
    [ "$used" -le $((before_df + 65536)) ] ||
        fail "the full repository still uses $used bytes (was $before_df): partial data left"
    new_dest
    run "$WAL_FETCH" --config "$T/ctiny.conf" "$DSEG" "$DEST"
    assert_rc 1 "fetch of the segment whose push failed (must be not in the archive)"
    assert_absent "$DEST" "fetch after a failed push"
else
    echo "skip: cannot mount tmpfs ($(head -1 "$T/mount.err")); sub-case (h) not run"
fi

# ---- (i) different content under an existing name; identical re-push ----
CASE="(i) different content"
before_o2=$(file_sha "$O2")
f=$(in_path "$S2")
cp "$A/pg_wal/$S2" "$f"
flip_byte "$f" $((SEG_BYTES / 2 + 12345))
cmp -s "$f" "$A/pg_wal/$S2" && die "could not alter the copy of $S2"
push_refused "$S2" "push of different content as $S2" "$WAL_PUSH" --config "$CONF" "$f"
assert_eq "$(file_sha "$O2")" "$before_o2" "stored object of $S2 after the refused push"
fetch_ok "$S2" "after the refused push"
CASE="(i) identical re-push"
f=$(in_path "$S2")
cp "$A/pg_wal/$S2" "$f"
before=$(repo_state "$REPO")
run "$WAL_PUSH" --config "$CONF" "$f"
assert_rc 0 "identical re-push of $S2"
assert_err_regex "warning" "identical re-push of $S2"
assert_eq "$(file_sha "$O2")" "$before_o2" "stored object of $S2 after the identical re-push"
assert_eq "$(repo_state "$REPO")" "$before" "repository after the identical re-push"

# ---- (j) what is not there ----
CASE="(j) not in the archive"
MISSING=$(seg_name 1 $(($(seg_num "$CUR" $SEG_MB) + 100)) $SEG_MB)
new_dest
run "$WAL_FETCH" --config "$CONF" "$MISSING" "$DEST"
assert_rc 1 "fetch of $MISSING"
assert_absent "$DEST" "fetch of $MISSING"
assert_dir_empty "$DEST_DIR" "fetch of $MISSING"
[ "$ELAPSED_MS" -lt 1000 ] || fail "fetch of a missing segment took ${ELAPSED_MS} ms"
best=999999
for i in 1 2 3; do
    new_dest
    run "$WAL_FETCH" --config "$CONF" 00000099.history "$DEST"
    assert_rc 1 "fetch of 00000099.history"
    assert_absent "$DEST" "fetch of 00000099.history"
    assert_dir_empty "$DEST_DIR" "fetch of 00000099.history"
    [ "$ELAPSED_MS" -lt "$best" ] && best=$ELAPSED_MS
done
[ "$best" -lt 100 ] || fail "fetch of a missing history file took ${best} ms (best of 3)"
note "missing history file answered in ${best} ms"
CASE="(j) cluster without identity"
new_dest
fetch_refused 255 "fetch from a cluster the repository does not hold" \
    "$WAL_FETCH" --config "$CONF" --cluster other "$S1" "$DEST"
assert_err_contains "other" "fetch from a cluster the repository does not hold"

# ---- (k) configuration errors and precedence ----
CASE="(k) unknown key"
printf '%s\n' "# line 1" "repo = '$REPO'" "bogus_key = 'x'" >"$T/cbogus.conf"
push_refused "bogus_key" "push with an unknown config key" "$WAL_PUSH" --config "$T/cbogus.conf" "$A/pg_wal/$CUR"
assert_err_contains "line 3" "push with an unknown config key"
new_dest
fetch_refused 255 "fetch with an unknown config key" "$WAL_FETCH" --config "$T/cbogus.conf" "$S1" "$DEST"
assert_err_contains "bogus_key" "fetch with an unknown config key"
assert_err_contains "line 3" "fetch with an unknown config key"
CASE="(k) config hygiene"
# config_refused FILE TEXT WHAT: wal-push 1 and wal-fetch 255, one line naming FILE and TEXT.
config_refused() {
    push_refused "$1" "push with $3" "$WAL_PUSH" --config "$1" "$A/pg_wal/$CUR"
    assert_err_contains "$2" "push with $3"
    new_dest
    fetch_refused 255 "fetch with $3" "$WAL_FETCH" --config "$1" "$S1" "$DEST"
    assert_err_contains "$1" "fetch with $3"
}
TOKEN=FwoGZXIvYXdzEBYaDHqa0AP1tokenTOKENtoken
add_secret "$TOKEN"
write_conf "$T/ctoken.conf" "repo = '$REPO'" "encrypt_key_file = '$KEY'" "s3_session_token = '$TOKEN'"
chmod 644 "$T/ctoken.conf"
config_refused "$T/ctoken.conf" s3_session_token "a 0644 config holding s3_session_token"
add_secret "hunter2secret"
write_conf "$T/cpgpw.conf" "repo = '$REPO'" "encrypt_key_file = '$KEY'" \
    "pg_conninfo = 'host=/tmp user=backup password=hunter2secret'"
chmod 640 "$T/cpgpw.conf"
config_refused "$T/cpgpw.conf" pg_conninfo "a 0640 config with a password in pg_conninfo"
write_conf "$T/cpguri.conf" "repo = '$REPO'" "encrypt_key_file = '$KEY'" \
    "pg_conninfo = 'postgresql://backup:hunter2secret@db/postgres'"
chmod 604 "$T/cpguri.conf"
config_refused "$T/cpguri.conf" pg_conninfo "a 0604 config with a postgresql:// URI password"
# without a password a readable conninfo is fine
write_conf "$T/cpgok.conf" "repo = '$REPO'" "encrypt_key_file = '$KEY'" \
    "pg_conninfo = 'host=/tmp user=backup'"
chmod 644 "$T/cpgok.conf"
new_dest
run "$WAL_FETCH" --config "$T/cpgok.conf" "$S1" "$DEST"
assert_rc 0 "fetch with a 0644 config whose pg_conninfo holds no password"
# anyone who can change the file decides where WAL goes: refused, secret or not
write_conf "$T/cwrite.conf" "repo = '$REPO'" "encrypt_key_file = '$KEY'"
for m in 620 602 666; do
    chmod "$m" "$T/cwrite.conf"
    config_refused "$T/cwrite.conf" "writable by group or others" "a $m config"
done
# ... and so could anyone who can write to its directory (sticky /tmp-like directories excepted)
mkdir "$T/opendir"
write_conf "$T/opendir/walsafe.conf" "repo = '$REPO'" "encrypt_key_file = '$KEY'"
chmod 777 "$T/opendir"
config_refused "$T/opendir/walsafe.conf" "$T/opendir" "a config in a directory anyone can write to"
chmod 1777 "$T/opendir"
new_dest
run "$WAL_FETCH" --config "$T/opendir/walsafe.conf" "$S1" "$DEST"
assert_rc 0 "fetch with a config in a sticky world-writable directory"
chmod 700 "$T/opendir"
# key files: writable by others is refused (and said so); a link to a good key is fine
chmod 602 "$KEY"
push_refused "$KEY" "push with a key file writable by others" \
    "$WAL_PUSH" --config "$CONF" "$A/pg_wal/$CUR"
assert_err_contains "writable" "push with a key file writable by others"
new_dest
fetch_refused 255 "fetch with a key file writable by others" "$WAL_FETCH" --config "$CONF" "$S1" "$DEST"
chmod 600 "$KEY"
ln -s "$KEY" "$T/key.link"
write_conf "$T/clink.conf" "repo = '$REPO'" "encrypt_key_file = '$T/key.link'"
new_dest
run "$WAL_FETCH" --config "$T/clink.conf" "$S1" "$DEST"
assert_rc 0 "fetch with encrypt_key_file a symbolic link to a 0600 key"
# a FIFO as config or key file is refused at once (reading it would hang the archiver)
mkfifo -m 600 "$T/cfifo.conf" "$T/kfifo.key"
push_refused "$T/cfifo.conf" "push with a FIFO as config file" \
    timeout 10 "$WAL_PUSH" --config "$T/cfifo.conf" "$A/pg_wal/$CUR"
write_conf "$T/ckfifo.conf" "repo = '$REPO'" "encrypt_key_file = '$T/kfifo.key'"
new_dest
fetch_refused 255 "fetch with a FIFO as key file" \
    timeout 10 "$WAL_FETCH" --config "$T/ckfifo.conf" "$S1" "$DEST"

CASE="(k) precedence"
printf '%s\n' "encrypt_key_file = '$KEY'" "spool_dir = ''" >"$T/cnorepo.conf"
new_dest
run env WALSAFE_REPO="$REPO" "$WAL_FETCH" --config "$T/cnorepo.conf" "$S1" "$DEST"
assert_rc 0 "fetch with repo from WALSAFE_REPO"
new_dest
run env WALSAFE_REPO="$T/nonexistent" "$WAL_FETCH" --config "$CONF" "$S1" "$DEST"
assert_rc 255 "WALSAFE_REPO (nonexistent) must override the file's repo"
new_dest
run env WALSAFE_REPO="$T/nonexistent" "$WAL_FETCH" --config "$CONF" --repo "$REPO" "$S1" "$DEST"
assert_rc 0 "--repo must override WALSAFE_REPO"

# ---- (l) fetch_error ----
CASE="(l) fetch_error"
write_conf "$T/cmissing.conf" "repo = '$REPO'" "encrypt_key_file = '$KEY'" "fetch_error = missing"
write_conf "$T/cabort.conf" "repo = '$REPO'" "encrypt_key_file = '$KEY'" "fetch_error = abort"
STANDBY=$T/standby-datadir
mkdir -p "$STANDBY" && touch "$STANDBY/standby.signal"
flip_byte "$O1" $((SIZE1 / 2))
new_dest
fetch_refused 1 "corrupt object with fetch_error = missing" \
    "$WAL_FETCH" --config "$T/cmissing.conf" "$S1" "$DEST"
new_dest
fetch_refused 255 "corrupt object, fetch_error = auto, standby.signal present" \
    env -C "$STANDBY" "$WAL_FETCH" --config "$CONF" "$S1" "$DEST"
cp -p "$T/O1.orig" "$O1"
GONE=$T/unmounted-repo
write_conf "$T/cgone.conf" "repo = '$GONE'" "encrypt_key_file = '$KEY'"
write_conf "$T/cgoneabort.conf" "repo = '$GONE'" "encrypt_key_file = '$KEY'" "fetch_error = abort"
write_conf "$T/cgonemissing.conf" "repo = '$GONE'" "encrypt_key_file = '$KEY'" "fetch_error = missing"
new_dest
fetch_refused 255 "unreachable repository, fetch_error = auto, archive recovery" \
    env -C "$T" "$WAL_FETCH" --config "$T/cgone.conf" "$S1" "$DEST"
assert_err_contains "$GONE" "unreachable repository"
new_dest
fetch_refused 1 "unreachable repository, fetch_error = auto, standby.signal present" \
    env -C "$STANDBY" "$WAL_FETCH" --config "$T/cgone.conf" "$S1" "$DEST"
new_dest
fetch_refused 255 "unreachable repository, fetch_error = abort, standby.signal present" \
    env -C "$STANDBY" "$WAL_FETCH" --config "$T/cgoneabort.conf" "$S1" "$DEST"
new_dest
fetch_refused 1 "unreachable repository, fetch_error = missing" \
    env -C "$T" "$WAL_FETCH" --config "$T/cgonemissing.conf" "$S1" "$DEST"
push_refused "$GONE" "push into an unreachable repository" \
    "$WAL_PUSH" --config "$T/cgone.conf" "$A/pg_wal/$CUR"
assert_err_contains "$CUR" "push into an unreachable repository (the WAL file must be named)"
[ ! -e "$GONE" ] || fail "wal-push created the missing repository root $GONE"

# ---- nothing lost: every archived segment still comes back intact ----
CASE="final check"
while read -r obj; do
    fetch_ok "${obj##*/}" "final round trip"
done < <(find "$REPO/main/wal" -type f)

finish
