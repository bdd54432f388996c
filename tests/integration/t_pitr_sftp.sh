#!/usr/bin/env bash
# t_pitr_sftp: t_pitr.sh (point-in-time recovery through restore_command = wal-fetch) against an
# sftp:// repository on the private sshd of sshd.sh.
# The scenario and its assertions are t_pitr.sh's; only the repository differs (lib.sh:
# repo_setup starts the server on 127.0.0.1 and cleanup stops it by its PID).
REPO_KIND=sftp
. "$(dirname "$0")/t_pitr.sh"
