#!/usr/bin/env bash
# t_logical_s3: logicalbackup create, restore, verify on an S3 repository (logical.sh).
REPO_KIND=s3
. "$(dirname "$0")/logical.sh"
