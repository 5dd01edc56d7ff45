#!/usr/bin/env bash
# Run one bench against two source trees, alternating, in one session: "is the change
# within noise?" Each tree runs with PYTHONPATH pointing at it and this repo's .venv.
#   bench/compare_trees.sh OLD_TREE NEW_TREE ROUNDS -- bench/cdc_bulk.py --serializer avro --rows 100000 --runs 1
# Make OLD_TREE with: mkdir /tmp/old && git archive <rev> | tar -x -C /tmp/old && ln -s "$PWD/.state" /tmp/old/.state
set -euo pipefail
old=$1 new=$2 rounds=$3
shift 3
[[ ${1:-} == "--" ]] && shift
python=$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python
for ((i = 1; i <= rounds; i++)); do
    for side in old new; do
        tree=${!side}
        echo "== round $i $side ($tree)"
        (cd "$tree" && PYTHONPATH="$tree" "$python" "$@")
    done
done
