#!/usr/bin/env bash
# t_incr_chain_sftp: incr_chain.sh's scenario (a chain of five incrementals under pgbench, each
# restored and compared; verify, diff, wal-prune's chain rules, a broken chain) against an
# sftp:// repository on the private sshd of sshd.sh (lib.sh: repo_setup starts it on 127.0.0.1
# and cleanup stops it by its PID).
REPO_KIND=sftp
. "$(dirname "$0")/incr_chain.sh"
