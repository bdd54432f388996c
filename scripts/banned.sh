#!/usr/bin/env bash
# Fails if a banned C function appears in the tree (unbounded or shell-invoking calls).
cd "$(dirname "$0")/.." || exit 2
# Comment lines (" * ...", "/* ...", "// ...") are prose: "database system (...)" is no call.
if git grep -nE '\b(sprintf|vsprintf|strcpy|strcat|strtok|gets|atoi|atol|system|popen)\s*\(' \
        -- '*.c' '*.h' | grep -vE '^[^:]+:[0-9]+:\s*(\*|/\*|//)'; then
    echo "banned functions found (use snprintf, strtok_r, strtol, posix_spawn ...)" >&2
    exit 1
fi
