#!/usr/bin/env bash
# t_backup_sftp: basebackup create / list / verify / restore --target-time against an sftp://
# repository on the private sshd of sshd.sh (each worker its own SSH session), with OpenSSH's
# sftp as an independent client listing the backup's objects, and a corrupted stored bundle.
# The scenario is backup_net.sh's (lib.sh: repo_setup starts the server on 127.0.0.1 and
# cleanup stops it by its PID).
REPO_KIND=sftp
. "$(dirname "$0")/backup_net.sh"
