#!/usr/bin/env bash
# Builds the Debian package from a tree that `make install DESTDIR=STAGE PREFIX=/usr` filled
# (make deb does both): dpkg-deb only, no debhelper, no network, no root needed.
#
#   scripts/deb/build.sh STAGE VERSION OUT.deb
#
# Adds to STAGE's programs and pages: the pages gzipped, the systemd units of scripts/systemd
# under /lib/systemd/system (with /usr/bin paths; not enabled: the package has no maintainer
# scripts), an example configuration and the cron examples under
# /usr/share/doc/walsafe/examples (nothing under /etc, so nothing is a conffile), and
# DEBIAN/control. Depends is computed by dpkg-shlibdeps from the programs (and any shared object
# install put there), plus libcurl4 by hand:
# common/storage/curl_api.c loads libcurl.so.4 with dlopen, which no ELF header records.
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 STAGE VERSION OUT.deb" >&2; exit 2; }
stage=$1 version=$2 out=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
[ -x "$stage/usr/bin/wal-push" ] || { echo "$0: $stage/usr/bin/wal-push missing: run make install DESTDIR=$stage PREFIX=/usr" >&2; exit 1; }
ls "$stage"/usr/share/man/man1/*.1 >/dev/null 2>&1 || { echo "$0: no manual pages in $stage (is scdoc installed?)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/walsafe-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
pkg=$work/debian/walsafe
mkdir -p "$pkg"
cp -a "$stage"/. "$pkg"/
gzip -9n "$pkg"/usr/share/man/man*/*.[15]

install -d "$pkg/lib/systemd/system" "$pkg/usr/share/doc/walsafe/examples/cron"
for u in "$root"/scripts/systemd/*.service "$root"/scripts/systemd/*.timer; do
    sed 's#/usr/local/bin/#/usr/bin/#g' "$u" >"$pkg/lib/systemd/system/$(basename "$u")"
done
install -m 0644 "$root/scripts/walsafe.conf.example" "$pkg/usr/share/doc/walsafe/examples/walsafe.conf"
for c in "$root"/scripts/cron/*; do
    sed 's#/usr/local/bin/#/usr/bin/#g' "$c" >"$pkg/usr/share/doc/walsafe/examples/cron/$(basename "$c")"
done
chmod -R u=rwX,go=rX "$pkg"
chmod 0755 "$pkg"/usr/bin/*
# The programs and any shared object (the archive module, in PostgreSQL's library directory).
mapfile -t elf < <(cd "$work" && find debian/walsafe -type f \( -path '*/usr/bin/*' -o -name '*.so' \) | sort)
# As Debian's packages: no debugging symbols (make's build keeps them).
(cd "$work" && strip --strip-unneeded --remove-section=.comment --remove-section=.note "${elf[@]}")

# dpkg-shlibdeps wants a source package's debian/control around the binaries it reads.
printf 'Source: walsafe\n\nPackage: walsafe\nArchitecture: amd64\n' >"$work/debian/control"
shlibs=$(cd "$work" && dpkg-shlibdeps -O "${elf[@]}" 2> >(grep -v 'should already be installed' >&2))
depends="${shlibs#shlibs:Depends=}, libcurl4"
rm "$work/debian/control"

install -d "$pkg/DEBIAN"
cat >"$pkg/DEBIAN/control" <<CONTROL
Package: walsafe
Version: $version
Architecture: amd64
Maintainer: walsafe developers <walsafe@example.invalid>
Installed-Size: $(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
Depends: $depends
Recommends: postgresql-client
Section: database
Priority: optional
Description: PostgreSQL WAL archiving, base and logical backups, point-in-time restore
 wal-push and wal-fetch are PostgreSQL's archive_command and restore_command: they
 compress (zstd), encrypt (AES-256-GCM) and store WAL files in a repository (a local
 directory, SFTP or S3) and verify everything they fetch. basebackup takes, lists,
 restores, verifies and tests base backups; wal-prune enforces retention; wal-receive
 streams WAL. Configuration: walsafe.conf(5); an example is in
 /usr/share/doc/walsafe/examples. The systemd units are installed but not enabled.
CONTROL
mkdir -p "$(dirname "$out")"
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$out" >/dev/null
echo "built $out (Depends: $depends)"
