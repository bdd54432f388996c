#!/usr/bin/env bash
# t_backup_large: relation files larger than WS_PIECE_SIZE (64 MiB) are stored in pieces, one
# bundle each (backup.h), and come back whole.
#   - table `big` (main fork 156.25 MiB: its record plus 2 pieces, the last one short) and table
#     `exact` (exactly 128 MiB: its record plus 1 piece ending on a piece boundary), frozen and
#     checkpointed so that their files do not change; data checksums on (pages are checked
#     across piece boundaries);
#   - `create --fast --parallel 2`: the manifest (read with tests/tools/manifestcat) has piece
#     records for those two files only, at 64 MiB boundaries, contiguous, ending at their sizes,
#     in bundles of increasing number above their records'; their SHA-256 are those of the
#     source files; the repository holds `bundles` objects under data/ (at least 3);
#   - verify passes; restore --parallel 3 gives files identical to the sources (cmp, mode and the
#     manifest's mtime); the restored copy starts and both tables have the sources' md5;
#   - one byte flipped in the middle of the bundle of big's middle piece: verify exits 1 naming
#     the file and the bundle, a restore into a fresh directory fails and leaves nothing
#     startable; with the bundle repaired, verify passes and restore --force over the failed
#     directory gives the file back;
#   - that bundle rewritten (tests/tools/objrewrite) with one content byte changed but valid
#     authentication: verify exits 1 reporting the SHA-256 of the file (computed across its
#     pieces), naming it once.
# The repository is REPO_KIND (local, s3 or sftp; default local).
. "$(dirname "$0")/lib.sh"
setup_tmp

PIECE=$((64 * 1024 * 1024))
# 8 rows of ~1 kB per page: 160000 rows are 20000 pages (156.25 MiB), 131072 rows 16384 pages
ROWS_BIG=160000
ROWS_EXACT=131072
KEY=$T/walsafe.key
CONF=$T/walsafe.conf
PGD=$T/primary
MANIFESTCAT=${MANIFESTCAT:-$BIN_DIR/../tests/tools/manifestcat}
OBJREWRITE=${OBJREWRITE:-$BIN_DIR/../tests/tools/objrewrite}
for tool in "$MANIFESTCAT" "$OBJREWRITE"; do
    [ -x "$tool" ] || die "no ${tool##*/} at $tool (make <BUILD>/tests/tools/${tool##*/})"
done
CASE="repository (${REPO_KIND:-local})"
make_key "$KEY"
repo_setup "${REPO_KIND:-local}"
write_conf "$CONF" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'"

CASE="primary"
archiving_cluster "$PGD" "$CONF" --data-checksums
backup_conf "$CONF" "$PGD" "$PORT" "encrypt_key_file = '$KEY'"
t0=$(date +%s)
# VACUUM FREEZE in the same checkpoint cycle as the load: no full-page images, and afterwards
# nothing (hint bits, visibility) changes the tables' pages any more.
for t in big:$ROWS_BIG exact:$ROWS_EXACT; do
    sql "$PORT" "create table ${t%:*} as select g, repeat(md5(g::text), 30) as pad
                 from generate_series(1, ${t#*:}) g" || die "create table ${t%:*} failed"
done
sql "$PORT" "vacuum (freeze) big" && sql "$PORT" "vacuum (freeze) exact" || die "vacuum failed"
sql "$PORT" "checkpoint" || die "checkpoint failed"
table_sum() { # PORT TABLE
    sql "$1" "select count(*) || ' ' || md5(string_agg(g || ':' || md5(pad), ',' order by g)) from $2"
}
for t in big exact; do
    printf -v "REL_$t" '%s' "$(sql "$PORT" "select pg_relation_filepath('$t')")" || die "psql failed"
    printf -v "SIZE_$t" '%s' "$(sql "$PORT" "select pg_relation_size('$t')")" || die "psql failed"
    printf -v "SUM_$t" '%s' "$(table_sum "$PORT" $t)" || die "psql failed"
done
note "big: $REL_big, $SIZE_big bytes; exact: $REL_exact, $SIZE_exact bytes;" \
    "loaded in $(($(date +%s) - t0))s"
[ "$SIZE_big" -gt $((2 * PIECE)) ] && [ "$SIZE_big" -lt $((3 * PIECE)) ] ||
    die "big's main fork has $SIZE_big bytes, not in (128 MiB, 192 MiB): adjust ROWS_BIG"
[ "$SIZE_exact" -eq $((2 * PIECE)) ] ||
    die "exact's main fork has $SIZE_exact bytes, not 128 MiB: adjust ROWS_EXACT"

CASE="create"
bb_create "$CONF" --parallel 2 --label large
ID=$BACKUP_ID
grep -q -i 'checksum' "$T/.last.err" &&
    fail "create reported checksum failures: $(grep -i checksum "$T/.last.err" | head -3)"

CASE="manifest"
run runuser -u postgres -- "$MANIFESTCAT" "$CONF" "$ID"
assert_rc 0 "manifestcat $ID" || die "could not read the manifest of $ID"
cp "$T/.last.out" "$T/manifest.txt"

# check_pieces REL SIZE NPIECES: the file record of REL (mode, mtime into M_MODE_<n>, ...) and
# its piece records (into $T/pieces.<basename>) are what create must write for a file of SIZE.
check_pieces() {
    local rel=$1 size=$2 npieces=$3 name=${1##*/} mode mtime msize sha bundle offset
    local want_off=$PIECE prev n=0 p_off p_len p_bundle p_boff
    # file <path> <mode> <mtime> <size> <sha256> <bundle> <offset>
    read -r _ _ mode mtime msize sha bundle offset < <(awk -v p="$rel" '$1 == "file" && $2 == p' "$T/manifest.txt")
    printf -v "M_MODE_$name" '%s' "$mode"
    printf -v "M_MTIME_$name" '%s' "$mtime"
    assert_eq "$msize" "$size" "size of $rel in the manifest"
    assert_eq "$sha" "$(file_sha "$PGD/$rel")" "SHA-256 of $rel in the manifest (the whole file)"
    # piece <file offset> <length> <bundle> <offset>
    awk -v p="$rel" '$1 == "file" { cur = ($2 == p) } cur && $1 == "piece"' "$T/manifest.txt" \
        >"$T/pieces.$name"
    note "$rel: record in bundle $bundle at $offset; $(tr '\n' ';' <"$T/pieces.$name")"
    assert_eq "$(wc -l <"$T/pieces.$name")" "$npieces" "piece records of $rel"
    prev=$bundle
    while read -r _ p_off p_len p_bundle p_boff; do
        n=$((n + 1))
        assert_eq "$p_off" "$want_off" "file offset of piece $n of $rel"
        [ "$p_len" -gt 0 ] && [ "$p_len" -le "$PIECE" ] ||
            fail "piece $n of $rel has $p_len bytes, not 1..$PIECE"
        [ "$n" -eq "$npieces" ] || assert_eq "$p_len" "$PIECE" "length of piece $n of $rel"
        assert_eq "$p_boff" 0 "bundle offset of piece $n of $rel (a piece starts its bundle)"
        [ "$p_bundle" -gt "$prev" ] ||
            fail "piece $n of $rel is in bundle $p_bundle, not after bundle $prev"
        want_off=$((p_off + p_len)) prev=$p_bundle
    done <"$T/pieces.$name"
    assert_eq "$want_off" "$size" "end of the last piece of $rel"
}
check_pieces "$REL_big" "$SIZE_big" 2
check_pieces "$REL_exact" "$SIZE_exact" 1
# nothing else is large enough to have pieces
assert_eq "$(grep -c '^piece ' "$T/manifest.txt")" 3 "piece records in the whole manifest"
assert_eq "$(grep -c '^badpage ' "$T/manifest.txt")" 0 "badpage records"
BUNDLES=$(sed -n 's/^bundles //p' "$T/manifest.txt")
data_dir=$(repo_file "main/backup/$ID/data/x")
data_dir=${data_dir%/*}
nobj=$(ls "$data_dir" | grep -c -E '^[0-9]{6}(\._S3rver_object)?$')
[ "$nobj" -ge 3 ] || fail "backup $ID has $nobj objects under data/, expected at least 3"
assert_eq "$nobj" "$BUNDLES" "objects under data/ and the manifest's bundle count"

CASE="verify"
bb --config "$CONF" verify "$ID"
assert_rc 0 "verify $ID"
grep -q "^backup $ID: OK" "$T/.last.out" || fail_cmd "verify printed no OK line: $(head -3 "$T/.last.out")"

# The primary stops cleanly: the tables are unchanged, so their files stay as they were copied.
pg_stop "$PGD"

# same_files DIR REL: DIR/REL (and its free space and visibility maps) are the source's files.
same_files() {
    local d=$1 rel=$2 fork
    cmp "$PGD/$rel" "$d/$rel" >/dev/null 2>&1 ||
        fail "restored $rel differs from the source: $(cmp "$PGD/$rel" "$d/$rel" 2>&1 | head -1)"
    for fork in _fsm _vm; do
        [ -f "$PGD/$rel$fork" ] || continue
        cmp -s "$PGD/$rel$fork" "$d/$rel$fork" || fail "restored $rel$fork differs from the source"
    done
}

CASE="restore"
R=$T/r1
if bb_restore "$CONF" "$R" --parallel 3 --target-immediate --target-action promote; then
    for rel in "$REL_big" "$REL_exact"; do
        name=${rel##*/}
        same_files "$R" "$rel"
        mode_var=M_MODE_$name mtime_var=M_MTIME_$name
        assert_eq "$(stat -c %a "$R/$rel")" "${!mode_var}" "mode of the restored $rel"
        assert_eq "$(stat -c %Y "$R/$rel")" "${!mtime_var}" "mtime of the restored $rel (manifest)"
        assert_eq "$(stat -c %U "$R/$rel")" postgres "owner of the restored $rel"
    done
    start_restored "$R"
    if pg_wait_promoted "$RPORT" "$R"; then
        assert_eq "$(table_sum "$RPORT" big)" "$SUM_big" "rows and md5 of big in the restored copy"
        assert_eq "$(table_sum "$RPORT" exact)" "$SUM_exact" "rows and md5 of exact in the restored copy"
    fi
    pg_stop "$R"
fi

CASE="damaged middle piece"
REL=$REL_big
MID_BUNDLE=$(sed -n 1p "$T/pieces.${REL##*/}" | cut -d' ' -f4)
MID_NAME=$(printf '%06d' "$MID_BUNDLE")
MID_FILE=$(repo_file "main/backup/$ID/data/$MID_NAME")
[ -f "$MID_FILE" ] || die "no object $MID_FILE for bundle $MID_BUNDLE"
note "big's middle piece: bundle $MID_NAME, $(stat -c %s "$MID_FILE") bytes stored"
cp -p "$MID_FILE" "$T/bundle.orig" || die "could not save $MID_FILE"
flip_byte "$MID_FILE" $(($(stat -c %s "$MID_FILE") / 2))
bb --config "$CONF" verify "$ID"
assert_rc 1 "verify with a damaged middle piece"
cat "$T/.last.out" "$T/.last.err" >"$T/verify.out"
grep -q -F "\"$REL\"" "$T/verify.out" ||
    { fail "verify does not name $REL:"; head -5 "$T/verify.out" | sed 's/^/      /'; }
grep -q -F "data/$MID_NAME" "$T/verify.out" ||
    { fail "verify does not name the bundle data/$MID_NAME:"; head -5 "$T/verify.out" | sed 's/^/      /'; }
grep -q "^backup $ID: OK" "$T/verify.out" && fail "verify printed an OK line for $ID"
R2=$T/r2
bb --config "$CONF" restore --pgdata "$R2" --parallel 3 --target-immediate --target-action promote
if [ "$RC" -eq 0 ]; then
    fail "restore with a damaged middle piece succeeded"
else
    assert_rc 1 "restore with a damaged middle piece"
    assert_err_contains "data/$MID_NAME" "restore with a damaged middle piece"
fi
assert_absent "$R2/recovery.signal" "failed restore"
grep -q restore_command "$R2/postgresql.auto.conf" 2>/dev/null &&
    fail "the failed restore wrote a restore_command into $R2/postgresql.auto.conf"
cp -p "$T/bundle.orig" "$MID_FILE" || die "could not put $MID_FILE back"
bb --config "$CONF" verify "$ID"
assert_rc 0 "verify after the bundle is repaired"
# what the error message says to do: the files in pieces the failed run created go too
if bb_restore "$CONF" "$R2" --force --parallel 3 --target-immediate --target-action promote; then
    same_files "$R2" "$REL_big"
    same_files "$R2" "$REL_exact"
fi

# The same bundle written anew with one content byte changed and a valid authentication: only
# the whole-file SHA-256 that verify computes across the file's bundles (in order) can see it,
# and only when the last piece ends.
CASE="rewritten middle piece"
run runuser -u postgres -- "$OBJREWRITE" "$CONF" "main/backup/$ID/data/$MID_NAME" $((PIECE / 2 + 12345))
assert_rc 0 "objrewrite of bundle $MID_NAME" || die "could not rewrite bundle $MID_NAME"
bb --config "$CONF" verify "$ID"
assert_rc 1 "verify with a rewritten middle piece"
cat "$T/.last.out" "$T/.last.err" >"$T/verify.out"
grep -q -E "file \"$REL\".*SHA-256" "$T/verify.out" ||
    { fail "verify does not report the SHA-256 of $REL:"; head -5 "$T/verify.out" | sed 's/^/      /'; }
[ "$(grep -c -F "\"$REL\"" "$T/verify.out")" -eq 1 ] ||
    { fail "verify names $REL other than once:"; head -5 "$T/verify.out" | sed 's/^/      /'; }
grep -q "^backup $ID: OK" "$T/verify.out" && fail "verify printed an OK line for $ID"
cp -p "$T/bundle.orig" "$MID_FILE" || die "could not put $MID_FILE back"
bb --config "$CONF" verify "$ID"
assert_rc 0 "verify after the bundle is put back"

CASE="repository"
assert_repo_clean "repository"
finish
