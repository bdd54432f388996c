#!/usr/bin/env bash
# t_status_sftp: t_status.sh (basebackup status) against an sftp:// repository on the private
# sshd of sshd.sh. SFTP listings carry no modification times: the time of the newest archived
# segment comes from a stat of that one object. The scenario and its assertions are t_status.sh's.
REPO_KIND=sftp
. "$(dirname "$0")/t_status.sh"
