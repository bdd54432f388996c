#!/usr/bin/env bash
# install_check.sh - make install puts every program and page under DESTDIR/PREFIX, and make
# uninstall removes exactly those files: a file of someone else's in the same directories stays
# (make install-check, part of make check).
#
#   tests/install_check.sh PROGRAM...
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
dest=$(mktemp -d /tmp/walsafe-install.XXXXXX)
trap 'rm -rf "$dest"' EXIT
failures=0
fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}
prefix=/opt/walsafe-test
# Someone else's files where install writes.
mkdir -p "$dest$prefix/bin" "$dest$prefix/share/man/man1" "$dest$prefix/share/man/man5"
for f in bin/other share/man/man1/other.1 share/man/man5/other.5; do echo keep >"$dest$prefix/$f"; done

make -s -C "$root" install DESTDIR="$dest" PREFIX="$prefix" >/dev/null || fail "make install failed"
expected=(share/man/man5/walsafe.conf.5)
for p in "$@"; do expected+=("bin/$p" "share/man/man1/$p.1"); done
for f in "${expected[@]}"; do
    [ -f "$dest$prefix/$f" ] || fail "make install did not install $prefix/$f"
done
for p in "$@"; do
    [ -x "$dest$prefix/bin/$p" ] || fail "$prefix/bin/$p is not executable"
done
installed=$(cd "$dest$prefix" && find . -type f | sed 's#^\./##' | grep -v other | sort)
assert_list=$(printf '%s\n' "${expected[@]}" | sort)
[ "$installed" = "$assert_list" ] || fail "make install put other files there: $(comm -23 <(echo "$installed") <(echo "$assert_list") | tr '\n' ' ')"

make -s -C "$root" uninstall DESTDIR="$dest" PREFIX="$prefix" >/dev/null || fail "make uninstall failed"
# Anywhere under DESTDIR (install may also write outside PREFIX: the archive module).
left=$(cd "$dest" && find . -type f | sed 's#^\./##' | sort)
[ "$left" = "$(printf "${prefix#/}/%s\n" bin/other share/man/man1/other.1 share/man/man5/other.5)" ] ||
    fail "after make uninstall: expected only the three files of someone else, found: $(tr "\n" " " <<<"$left")"

if [ "$failures" -gt 0 ]; then
    echo "install_check: $failures problem(s)"
    exit 1
fi
echo "install_check: make install put ${#expected[@]} files under PREFIX, make uninstall removed exactly those"
