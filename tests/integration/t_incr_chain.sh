#!/usr/bin/env bash
# t_incr_chain: a full backup and five incrementals under pgbench in a local repository, each
# restored to its end and compared with a snapshot of its moment; verify, diff, the chain rules of
# wal-prune and a broken chain. The scenario is incr_chain.sh's.
REPO_KIND=local
. "$(dirname "$0")/incr_chain.sh"
