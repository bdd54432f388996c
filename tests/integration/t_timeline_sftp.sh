#!/usr/bin/env bash
# t_timeline_sftp: t_timeline.sh (PITR onto timeline 2 with archiving on, then recovery along the
# history file) against an sftp:// repository on the private sshd of sshd.sh.
# The scenario and its assertions are t_timeline.sh's; only the repository differs (lib.sh:
# repo_setup starts the server on 127.0.0.1 and cleanup stops it by its PID).
REPO_KIND=sftp
. "$(dirname "$0")/t_timeline.sh"
