#!/usr/bin/env bash
# t_receive_sftp: t_receive_s3.sh (the main wal-receive scenario: stream, SIGKILL of the primary,
# wal-fetch of the streamed partial equals the server's bytes) against an sftp:// repository on
# the private sshd of sshd.sh (lib.sh: repo_setup starts it on 127.0.0.1, cleanup stops it by its
# PID). The scenario and its assertions are t_receive_s3.sh's; only the repository differs.
REPO_KIND=sftp
. "$(dirname "$0")/t_receive_s3.sh"
