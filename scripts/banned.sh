#!/usr/bin/env bash
# Fails if a banned C function appears in the tree (unbounded or shell-invoking calls).
cd "$(dirname "$0")/.." || exit 2
if git grep -nE '\b(sprintf|vsprintf|strcpy|strcat|strtok|gets|atoi|atol|system|popen)\s*\(' \
        -- '*.c' '*.h'; then
    echo "banned functions found (use snprintf, strtok_r, strtol, posix_spawn ...)" >&2
    exit 1
fi
