#!/usr/bin/env bash
# t_extra_paths_s3: t_extra_paths against the S3 test server.
REPO_KIND=s3
. "$(dirname "$0")/t_extra_paths.sh"
