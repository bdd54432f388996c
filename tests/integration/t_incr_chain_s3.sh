#!/usr/bin/env bash
# t_incr_chain_s3: incr_chain.sh's scenario (a chain of five incrementals under pgbench, each
# restored and compared; verify, diff, wal-prune's chain rules, a broken chain) against an s3://
# repository on the S3 test server of s3.sh (lib.sh: repo_setup starts it on 127.0.0.1 and
# cleanup stops it by its PID).
REPO_KIND=s3
. "$(dirname "$0")/incr_chain.sh"
