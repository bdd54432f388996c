#!/usr/bin/env bash
# Installs everything walsafe needs to build, test, run the demo and the benchmarks on Debian 12.
# Run as root. Idempotent: skips apt-get when every package is already installed.
set -euo pipefail
pkgs=(build-essential pkg-config libzstd-dev libxxhash-dev libcurl4-openssl-dev libssl-dev libpq-dev
      zstd openssl postgresql-15 postgresql-client-15 procps time awscli openssh-server openssh-client)
# The archive module (walsafe_archive/) is built against the server headers of PostgreSQL 15.
pkgs+=(postgresql-server-dev-15)
# faketime: t_backup_kill runs wal-prune with its clock two days ahead (abandoned backups go after 24 h).
pkgs+=(faketime)
# The fuzzing harnesses (make fuzz-check, part of make check): clang and libFuzzer's runtime
# (libclang_rt.fuzzer, in libclang-rt-14-dev on Debian 12).
pkgs+=(clang libclang-rt-14-dev)
# scdoc: the manual pages (docs/man; make man, make check, make deb).
pkgs+=(scdoc)
# Node.js runs the S3 test server (tests/s3). Debian's nodejs/npm only where none is installed:
# a newer Node.js (NodeSource's nodejs provides npm and conflicts with Debian's npm package)
# stays, and asking apt for npm there would fail.
command -v node >/dev/null || pkgs+=(nodejs)
command -v npm >/dev/null || pkgs+=(npm)
[ "${WALSAFE_BENCH:-0}" = 1 ] && pkgs+=(pgbackrest)
# make coverage only: lcov (gcov comes with gcc).
[ "${WALSAFE_COVERAGE:-0}" = 1 ] && pkgs+=(lcov)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The S3 test server, pinned by tests/s3/package-lock.json.
root=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -f "$root/tests/s3/node_modules/@20minutes/s3rver/lib/cli.js" ]; then
    echo "installing the S3 test server: npm ci --prefix tests/s3"
    npm ci --prefix "$root/tests/s3" --no-audit --no-fund
fi
# Debian's postgresql package creates a default cluster only when it can; walsafe's tests and
# demo use their own throwaway clusters and never touch it.
id postgres >/dev/null 2>&1 || { echo "postgres user missing after install" >&2; exit 1; }
