#!/usr/bin/env bash
# t_logical: logicalbackup on a local repository, every case of logical.sh.
REPO_KIND=local
. "$(dirname "$0")/logical.sh"
