#!/usr/bin/env bash
# t_timeline_module_sftp: t_timeline.sh with PostgreSQL archiving through the walsafe_archive module
# (archive_library, walsafe.config) into an sftp:// repository (lib.sh: repo_setup starts its server
# on 127.0.0.1 and cleanup stops it by its PID). The scenario and its assertions are t_timeline.sh's;
# only the archiving set-up and the repository differ.
ARCHIVE_VIA=module
REPO_KIND=sftp
. "$(dirname "$0")/t_timeline.sh"
