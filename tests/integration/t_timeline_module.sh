#!/usr/bin/env bash
# t_timeline_module: t_timeline.sh with PostgreSQL archiving through the walsafe_archive module
# (archive_library, walsafe.config) instead of archive_command = wal-push: the scenario and its
# assertions are t_timeline.sh's; only the archiving set-up differs (lib.sh: archive_settings).
ARCHIVE_VIA=module
. "$(dirname "$0")/t_timeline.sh"
