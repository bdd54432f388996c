#!/usr/bin/env bash
# t_outage_sftp: outage.sh (the repository's server stopped for 30 s under pgbench load, no WAL
# file lost, PITR to the end returns every committed row) against an sftp:// repository on the
# private sshd of sshd.sh, stopped (with its sessions) by its PID and started again on the same
# port with the same host key.
REPO_KIND=sftp
. "$(dirname "$0")/outage.sh"
