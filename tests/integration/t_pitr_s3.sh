#!/usr/bin/env bash
# t_pitr_s3: t_pitr.sh (point-in-time recovery through restore_command = wal-fetch) against an
# s3:// repository on the S3 test server of s3.sh, which verifies SigV4.
# The scenario and its assertions are t_pitr.sh's; only the repository differs (lib.sh:
# repo_setup starts the server on 127.0.0.1 and cleanup stops it by its PID).
REPO_KIND=s3
. "$(dirname "$0")/t_pitr.sh"
