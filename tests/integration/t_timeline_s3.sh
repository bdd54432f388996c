#!/usr/bin/env bash
# t_timeline_s3: t_timeline.sh (PITR onto timeline 2 with archiving on, then recovery along the
# history file) against an s3:// repository on the S3 test server of s3.sh, which verifies SigV4.
# The scenario and its assertions are t_timeline.sh's; only the repository differs (lib.sh:
# repo_setup starts the server on 127.0.0.1 and cleanup stops it by its PID).
REPO_KIND=s3
. "$(dirname "$0")/t_timeline.sh"
