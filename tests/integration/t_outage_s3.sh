#!/usr/bin/env bash
# t_outage_s3: outage.sh (the repository's server stopped for 30 s under pgbench load, no WAL
# file lost, PITR to the end returns every committed row) against an s3:// repository on the S3
# test server of s3.sh, stopped by its PID and started again on the same port and data.
REPO_KIND=s3
. "$(dirname "$0")/outage.sh"
