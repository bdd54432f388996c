#!/usr/bin/env bash
# t_backup_s3: basebackup create / list / verify / restore --target-time against an s3://
# repository on the S3 test server of s3.sh (verifies SigV4), with s3_part_size = 5MB so that
# bundles go up as multipart uploads, /usr/bin/aws as an independent client listing the backup's
# objects, and a corrupted stored bundle. The scenario is backup_net.sh's (lib.sh: repo_setup
# starts the server on 127.0.0.1 and cleanup stops it by its PID).
REPO_KIND=s3
. "$(dirname "$0")/backup_net.sh"
