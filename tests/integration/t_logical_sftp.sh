#!/usr/bin/env bash
# t_logical_sftp: logicalbackup create, restore, verify on an SFTP repository (logical.sh).
REPO_KIND=sftp
. "$(dirname "$0")/logical.sh"
