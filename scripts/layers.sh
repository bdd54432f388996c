#!/usr/bin/env bash
# The layer rule of common/ (docs/architecture.md): a file includes headers of its own folder
# and of the layers below it, always with the folder ("storage/storage.h"), never one above:
#   base < io < pg < storage < repo < archive | backup | logical | prune < ops
# (the command areas archive, backup, logical and prune are peers and do not include each other;
# ops, on top, may use them all). Prints each offending
# line and exits 1; run by `make lint` and `make check`.
set -u
cd "$(dirname "$0")/.."
rank() {
    case $1 in
    base) echo 0 ;; io) echo 1 ;; pg) echo 2 ;; storage) echo 3 ;; repo) echo 4 ;;
    archive | backup | logical | prune) echo 5 ;;
    ops) echo 6 ;;
    *) echo -1 ;;
    esac
}
bad=0
flat=$(find common -maxdepth 1 -type f \( -name '*.c' -o -name '*.h' \) | sort)
if [ -n "$flat" ]; then
    echo "layers: files directly in common/ (each belongs in a layer folder):" $flat
    bad=1
fi
while IFS= read -r f; do
    layer=${f#common/}
    layer=${layer%%/*}
    me=$(rank "$layer")
    if [ "$me" -lt 0 ]; then
        echo "$f: folder \"$layer\" is not a layer (base io pg storage repo archive backup logical prune ops)"
        bad=1
        continue
    fi
    while IFS=: read -r line inc; do
        dir=${inc%%/*}
        if [ "$dir" = "$inc" ]; then
            echo "$f:$line: #include \"$inc\" names no layer folder"
            bad=1
            continue
        fi
        [ "$dir" = "$layer" ] && continue
        r=$(rank "$dir")
        if [ "$r" -lt 0 ]; then
            echo "$f:$line: #include \"$inc\": \"$dir\" is not a layer"
            bad=1
        elif [ "$r" -ge "$me" ]; then
            echo "$f:$line: #include \"$inc\": layer $dir is not below $layer (base < io < pg < storage < repo < archive | backup | logical | prune < ops)"
            bad=1
        fi
    done < <(awk 'match($0, /^[ \t]*#[ \t]*include[ \t]*"[^"]*"/) {
        s = $0; sub(/^[^"]*"/, "", s); sub(/".*/, "", s); print NR ":" s }' "$f")
done < <(find common -mindepth 2 -type f \( -name '*.c' -o -name '*.h' \) | sort)
exit $bad
