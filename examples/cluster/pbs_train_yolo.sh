#!/bin/bash
# YOLOv3 on VOC 07+12 with paper 001's recipe for 64 GPUs, ABCI-style: 16 full nodes of 4
# V100s, one MPI rank per GPU (docs/cluster.md). Submit from the repository root:
#     qsub -v OUT=runs/yolov3-voc-64 examples/cluster/pbs_train_yolo.sh
# At the wall-time limit PBS sends SIGTERM to the job, then SIGKILL after its kill delay
# (raise it with `qsub -W kill_delay=120` where the site allows): mpiexec forwards SIGTERM to
# every rank, the ranks agree on an update, write a snapshot and exit 75, and the script
# submits itself again, which continues with --resume auto. OUT, PRESET, DATA (empty: the
# preset's embedded data), PRETRAINED (empty: none) and EXTRA (more options) choose the run.
#PBS -N yolov3-voc-64
#PBS -l select=16:ncpus=40:ngpus=4:mpiprocs=4
#PBS -l walltime=12:00:00
#PBS -j oe
set -u
cd "${PBS_O_WORKDIR:-.}"
OUT=${OUT:-runs/yolov3-voc-64}
PRESET=${PRESET:-yolov3_voc_2019}
DATA=${DATA-$HOME/data/VOCdevkit}
PRETRAINED=${PRETRAINED-$HOME/data/darknet53.conv.74}
EXTRA=${EXTRA:-}
mkdir -p "$OUT"
NP=$(wc -l < "$PBS_NODEFILE")
args=(--preset "$PRESET" --out "$OUT" --resume auto --no-progress)
if [ -n "$DATA" ]; then args+=(--data-dir "$DATA"); fi
if [ -n "$PRETRAINED" ]; then args+=(--pretrained "$PRETRAINED"); fi

# A signal may come at any moment, even before mpiexec runs: note it, forward it once.
stop=
pid=
forward() {
    stop=1
    if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null; fi
}
trap forward TERM USR1

# One rank per GPU: $PBS_NODEFILE lists each node once per mpiprocs slot.
# shellcheck disable=SC2086  # EXTRA is a list of options
.venv/bin/mpiexec -n "$NP" -f "$PBS_NODEFILE" \
    .venv/bin/python scripts/train_yolo.py "${args[@]}" $EXTRA &
pid=$!
if [ -n "$stop" ]; then kill -TERM "$pid"; fi
while :; do  # a trapped signal interrupts wait: wait again until mpiexec has ended
    wait "$pid"
    kill -0 "$pid" 2>/dev/null || break
done
wait "$pid"; status=$?  # bash keeps the ended job's status
if [ "$status" -eq 75 ]; then  # stopped on the signal, snapshot written: continue
    qsub -v "OUT=$OUT,PRESET=$PRESET,DATA=$DATA,PRETRAINED=$PRETRAINED,EXTRA=$EXTRA" \
        examples/cluster/pbs_train_yolo.sh
fi
exit "$status"
