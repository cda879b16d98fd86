#!/usr/bin/env bash
# `make test-slurm`: tests/test_slurm.py under a one-node Slurm started for it
# (tools/slurm_local.sh) and stopped after it; where Slurm cannot be had, the test is
# reported as skipped with the reason.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
dir=$(mktemp -d /tmp/chainer_yolo_dist_slurm.XXXXXX)
trap 'tools/slurm_local.sh stop "$dir"' EXIT
if started=$(tools/slurm_local.sh start "$dir" 2>"$dir/start.err"); then
    conf=$(printf '%s\n' "$started" | tail -n 1)
    export CHAINER_YOLO_DIST_SLURM_CONF=${conf#SLURM_CONF=}
    echo "test-slurm: a one-node Slurm with $CHAINER_YOLO_DIST_SLURM_CONF"
else
    CHAINER_YOLO_DIST_SLURM_SKIP=$(tail -n 1 "$dir/start.err")
    export CHAINER_YOLO_DIST_SLURM_SKIP
    echo "test-slurm: $CHAINER_YOLO_DIST_SLURM_SKIP"
fi
"$PY" -m pytest -q -rs tests/test_slurm.py
