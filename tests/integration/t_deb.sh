#!/usr/bin/env bash
# The Debian package (make deb) on this machine: installed with dpkg -i, the demo run against
# the installed programs, their --version equal to the package's, the manual pages found by man,
# the units installed but not enabled, Depends covering every library the programs load; then
# purged, also when a check fails, and nothing of it left.
#
# IT_DEB names the package (make integration sets it for the release build; the ASan pass runs
# without it, so the package is installed once per make check). The test refuses to start when
# walsafe is already installed or a file of the package already exists: it never replaces or
# removes what was there before.
. "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

if [ -z "${IT_DEB:-}" ]; then
    echo "skip: IT_DEB not set (make integration sets it for the release build: the package is tested once)"
    exit 0
fi
[ -f "$IT_DEB" ] || die "IT_DEB: $IT_DEB does not exist (make deb builds it)"
setup_tmp

# dpkg ARGS...: dpkg, waiting while another process (apt) holds its lock.
dpkg_wait() {
    local _
    for _ in $(seq 1 120); do
        if dpkg "$@" >"$T/.dpkg.out" 2>&1; then return 0; fi
        grep -q 'lock' "$T/.dpkg.out" || { cat "$T/.dpkg.out"; return 1; }
        sleep 1
    done
    cat "$T/.dpkg.out"
    return 1
}

installed() { dpkg-query -W -f='${db:Status-Status}' walsafe 2>/dev/null | grep -qv '^not-installed$'; }

CASE="precondition"
installed && die "walsafe is already installed here: this test does not touch an installation it did not make"
VERSION=$(dpkg-deb -f "$IT_DEB" Version)
[ "$(basename "$IT_DEB")" = "walsafe_${VERSION}_amd64.deb" ] ||
    fail "package file $(basename "$IT_DEB") does not carry its version $VERSION"
# Files of the package (not directories); dpkg -i would replace any that exists unowned.
mapfile -t FILES < <(dpkg-deb -c "$IT_DEB" | awk '$1 !~ /^d/ { sub(/^\./, "", $6); print $6 }')
[ ${#FILES[@]} -gt 10 ] || die "the package lists only ${#FILES[@]} files"
for f in "${FILES[@]}"; do
    [ -e "$f" ] && die "$f exists before the package is installed: not replacing it"
done

PURGE_NEEDED=0
purge() {
    [ "$PURGE_NEEDED" = 1 ] || return 0
    dpkg_wait --purge walsafe >/dev/null || echo "FAIL: dpkg --purge walsafe failed"
    PURGE_NEEDED=0
}
STOP_HOOKS+=(purge)

CASE="dpkg -i"
PURGE_NEEDED=1
dpkg_wait -i "$IT_DEB" || die "dpkg -i $IT_DEB failed"
installed || die "dpkg reports walsafe not installed after dpkg -i"

CASE="contents"
for p in wal-push wal-fetch basebackup wal-prune wal-receive; do
    [ -x "/usr/bin/$p" ] || fail "/usr/bin/$p missing"
done
for p in $(dpkg -L walsafe | grep '^/usr/bin/.'); do
    out=$("$p" --version 2>&1)
    assert_eq "$out" "$(basename "$p") (walsafe) $VERSION" "$p --version"
done
assert_eq "$(man -w wal-push 2>&1)" "/usr/share/man/man1/wal-push.1.gz" "man -w wal-push"
assert_eq "$(man -w 5 walsafe.conf 2>&1)" "/usr/share/man/man5/walsafe.conf.5.gz" "man -w 5 walsafe.conf"
man -P cat basebackup 2>/dev/null | grep -q 'drill' || fail "man basebackup does not show the page"
[ -f /usr/share/doc/walsafe/examples/walsafe.conf ] || fail "no example configuration"
for u in "$ROOT"/scripts/systemd/*.service "$ROOT"/scripts/systemd/*.timer; do
    f=/lib/systemd/system/$(basename "$u")
    [ -f "$f" ] || { fail "$f missing"; continue; }
    grep -q '/usr/local/' "$f" && fail "$f names /usr/local"
done
# Not enabled, no configuration: nothing of walsafe under /etc.
in_etc=$(find /etc -xdev \( -name '*walsafe*' -o -name 'wal-receive*' \) 2>/dev/null)
[ -z "$in_etc" ] || fail "the package put or enabled under /etc: $in_etc"

CASE="Depends"
depends=$(dpkg-query -W -f='${Depends}' walsafe)
# Every library the programs link, and libcurl.so.4 that the storage layer loads with dlopen.
libs=$(for f in $(dpkg -L walsafe); do
    [ -f "$f" ] && [ "$(head -c4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] || continue
    objdump -p "$f" | awk '/NEEDED/ { print $2 }'
done | sort -u)
grep -q '^libc.so.6$' <<<"$libs" || fail "no ELF file of the package links libc.so.6: the library list is wrong"
grep -q 'libcurl.so.4' "$ROOT/common/storage/curl_api.c" || fail "curl_api.c no longer loads libcurl.so.4: update this test"
for l in $libs libcurl.so.4; do
    owner=$(dpkg -S "*/$l" 2>/dev/null | grep ':amd64: ' | head -1 | cut -d: -f1)
    [ -n "$owner" ] || { fail "no package owns $l"; continue; }
    grep -qE "(^|, )$owner( |,|$)" <<<"$depends" || fail "Depends ($depends) lacks $owner, which has $l"
done

CASE="demo against /usr/bin"
timeout 90 "$ROOT/scripts/demo.sh" /usr/bin >"$T/demo.out" 2>&1
rc=$?
grep -q "^demo: OK" "$T/demo.out" || { fail "demo failed (exit $rc)"; tail -20 "$T/demo.out" | sed 's/^/      /'; }
grep -q "restore_command = '/usr/bin/wal-fetch " "$T/demo.out" ||
    fail "the restored copy's restore_command is not the installed wal-fetch"

CASE="dpkg --purge"
purge
installed && fail "walsafe still installed after dpkg --purge"
for f in "${FILES[@]}"; do
    [ -e "$f" ] && fail "$f left behind by dpkg --purge"
done
for d in /usr/share/doc/walsafe /usr/share/doc/walsafe/examples; do
    [ -e "$d" ] && fail "$d left behind"
done
finish
