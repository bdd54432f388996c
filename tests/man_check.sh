#!/usr/bin/env bash
# man_check.sh - the manual pages agree with the programs and the configuration (make man-check,
# part of make check).
#
#   tests/man_check.sh BIN_DIR MAN_DIR PROGRAM...
#
# Checks, each failure one line "FAIL: ...":
#   - every PROGRAM has a page docs/man/PROGRAM.1.scd, and every page is a program's or
#     walsafe.conf.5;
#   - every option that `PROGRAM --help` prints is defined in its page (a line "*--option*" in
#     the scdoc source), and every option the page defines is in --help;
#   - every key of the table in common/base/config.c is defined in walsafe.conf(5) (a line
#     "*key*" alone) and every key the page defines is in the table;
#   - man renders every built page in MAN_DIR without a warning (MANWIDTH=80, LC_ALL=C.UTF-8),
#     and groff -man -ww -z agrees;
#   - no page names a file of the source tree (a user of the installed programs has none), and
#     every file of the tree that README.md, INSTALL or docs/ names exists.
# A static check of the built programs and the sources: it needs no server, so it runs once in
# make check rather than in both passes of the integration suite.
set -u
if [ $# -lt 2 ]; then
    echo "usage: $0 BIN_DIR MAN_DIR PROGRAM..." >&2
    exit 2
fi
BIN_DIR=$1
MAN_DIR=$2
shift 2
PROGRAMS=("$@")
root=$(cd "$(dirname "$0")/.." && pwd)
export LC_ALL=C.UTF-8 MANWIDTH=80
failures=0
fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}

# Names documented for work that other branches of this session add (issues #20, #21): not in
# this tree's --help or config.c yet. One line each: PROGRAM OPTION, or "walsafe.conf KEY", then
# the issue; "PROGRAM *" for a program not built here. An entry that --help or config.c already
# has, or "PROGRAM *" once PROGRAM is built, fails the check, so the list shrinks to nothing as
# those branches are merged.
ALLOW=$(sed 's/[[:space:]]*#.*//; /^$/d' <<'EOF'
EOF
)
allowed() { grep -qxF "$1 $2" <<<"$ALLOW"; }

# Options a page defines: "*--name*" or "*-v*" at the start of a line.
page_options() { sed -n 's/^\*\(-[-a-z0-9]*\)\*.*/\1/p' "$1" | sort -u; }
# Options --help prints: -x or --name after a space, a bracket, a pipe or a line start.
help_options() {
    grep -oE -- '(^|[][ (|,])--?[a-z][a-z0-9-]*' | sed 's/^[^-]*//' | grep -vE -- '^-[a-z][a-z]' |
        sort -u
}

# ---- pages and programs ----
for p in "${PROGRAMS[@]}"; do
    [ -f "$root/docs/man/$p.1.scd" ] || fail "$p has no manual page docs/man/$p.1.scd"
done
for src in "$root"/docs/man/*.scd; do
    page=$(basename "$src" .scd)
    [ -f "$MAN_DIR/$page" ] || fail "$page: not built in $MAN_DIR"
    case $page in
    walsafe.conf.5) continue ;;
    *.1) prog=${page%.1} ;;
    *) fail "$page: neither a program's page (NAME.1) nor walsafe.conf.5"; continue ;;
    esac
    in_page=$(page_options "$src")
    [ -n "$in_page" ] || fail "$page: defines no option"
    if [ ! -x "$BIN_DIR/$prog" ]; then
        allowed "$prog" "*" || fail "$page: $prog is not built in $BIN_DIR"
        continue
    fi
    allowed "$prog" "*" && fail "$prog is built and allow-listed as \"$prog *\": drop it from the allow-list"
    in_help=$("$BIN_DIR/$prog" --help | help_options) || fail "$prog --help failed"
    [ -n "$in_help" ] || fail "$prog --help: no option found"
    # An allow-listed option that --help has is stale.
    for x in $in_help; do
        allowed "$prog" "$x" && fail "$prog: $x is in --help and allow-listed: drop it from the allow-list"
    done
    for x in $(comm -23 <(echo "$in_help") <(echo "$in_page")); do
        fail "$prog: $x is in --help but not in its page docs/man/$page.scd"
    done
    for x in $(comm -13 <(echo "$in_help") <(echo "$in_page")); do
        allowed "$prog" "$x" || fail "$prog: $x is in docs/man/$page.scd but not in --help"
    done
done

# ---- configuration keys ----
in_table=$(sed -n 's/^[[:space:]]*{"\([a-z0-9_]*\)", T_[A-Z]*,.*/\1/p' "$root/common/base/config.c" | sort -u)
[ "$(wc -l <<<"$in_table")" -ge 30 ] || fail "common/base/config.c: expected the key table, found $(wc -l <<<"$in_table") keys"
in_conf=$(sed -n 's/^\*\([a-z0-9_]*\)\*$/\1/p' "$root/docs/man/walsafe.conf.5.scd" | sort -u)
for k in $in_table; do
    allowed walsafe.conf "$k" && fail "walsafe.conf: $k is in config.c and allow-listed: drop it from the allow-list"
done
for k in $(comm -23 <(echo "$in_table") <(echo "$in_conf")); do
    fail "walsafe.conf: key $k of common/base/config.c is not in docs/man/walsafe.conf.5.scd"
done
for k in $(comm -13 <(echo "$in_table") <(echo "$in_conf")); do
    allowed walsafe.conf "$k" || fail "walsafe.conf: key $k of docs/man/walsafe.conf.5.scd is not in common/base/config.c"
done

# ---- rendering ----
for page in "$MAN_DIR"/*.[15]; do
    [ -f "$page" ] || continue
    if ! out=$(man --warnings -E UTF-8 -l "$page" 2>&1 >/dev/null) || [ -n "$out" ]; then
        fail "$(basename "$page"): man -l warns: $(head -3 <<<"$out" | tr '\n' ' ')"
    fi
    if ! out=$(groff -man -ww -z "$page" 2>&1) || [ -n "$out" ]; then
        fail "$(basename "$page"): groff -man -ww warns: $(head -3 <<<"$out" | tr '\n' ' ')"
    fi
done

# ---- files the documents name ----
# A page is read where no source tree is: it names none of the tree's files.
tree_ref='(^|[^A-Za-z0-9_./-])(docs|scripts|common|tests|bench)/[A-Za-z0-9_.*@/-]*|README(\.md)?|INSTALL\b|SPEC\.md'
bad=$(for src in "$root"/docs/man/*.scd; do
    grep -nE "$tree_ref" "$src" | sed "s#^#docs/man/$(basename "$src"):#"
done)
[ -z "$bad" ] || fail "a page names a file of the source tree:"$'\n'"$bad"
# The tree's documents name files that exist (globs and <placeholders>: at least one match).
docs=("$root/README.md" "$root/INSTALL" "$root"/docs/*.md "$root"/docs/design/*.md)
for d in "${docs[@]}"; do
    for ref in $(grep -oE '(^|[^A-Za-z0-9_./<-])(docs|scripts|common|tests|bench)/[][A-Za-z0-9_.*@/<>-]*[]A-Za-z0-9_*@>]' "$d" |
        sed 's/^[^a-z]*//; s/<[^>]*>/*/g; /\[/!s/]$//' | sort -u); do
        # a built program is named without its .c: "ref*" finds the source
        (cd "$root" && { compgen -G "$ref" || compgen -G "$ref*"; } >/dev/null) ||
            fail "${d#"$root"/} names $ref, which the tree does not have"
    done
done
grep -rn 'SPEC\.md\|\.\./shared' "${docs[@]}" "$root"/docs/man && fail "a document refers to the session's contract (SPEC.md), which users do not have"

if [ "$failures" -gt 0 ]; then
    echo "man_check: $failures problem(s)"
    exit 1
fi
echo "man_check: ${#PROGRAMS[@]} programs, $(find "$root/docs/man" -name "*.scd" | wc -l) pages: options, keys, rendering and references agree"
