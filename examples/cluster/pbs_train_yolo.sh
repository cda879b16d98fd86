#!/bin/bash
# YOLOv3 on VOC 07+12 with paper 001's recipe for 64 GPUs, ABCI-style: 16 full nodes of 4
# V100s, one MPI rank per GPU (docs/cluster.md). Submit from the repository root:
#     qsub -v OUT=runs/yolov3-voc-64 examples/cluster/pbs_train_yolo.sh
# At the wall-time limit PBS sends SIGTERM to the job, then SIGKILL after its kill delay
# (raise it with `qsub -W kill_delay=120` where the site allows): mpiexec forwards SIGTERM to
# every rank, the ranks agree on an update, write a snapshot and exit 75, and the script
# submits itself again, which continues with --resume auto.
#PBS -N yolov3-voc-64
#PBS -l select=16:ncpus=40:ngpus=4:mpiprocs=4
#PBS -l walltime=12:00:00
#PBS -j oe
set -u
cd "${PBS_O_WORKDIR:-.}"
OUT=${OUT:-runs/yolov3-voc-64}
PRESET=${PRESET:-yolov3_voc_2019}
DATA=${DATA:-$HOME/data/VOCdevkit}
PRETRAINED=${PRETRAINED:-$HOME/data/darknet53.conv.74}
mkdir -p "$OUT"
NP=$(wc -l < "$PBS_NODEFILE")

# One rank per GPU: $PBS_NODEFILE lists each node once per mpiprocs slot.
.venv/bin/mpiexec -n "$NP" -f "$PBS_NODEFILE" \
    .venv/bin/python scripts/train_yolo.py --preset "$PRESET" --data-dir "$DATA" \
    --pretrained "$PRETRAINED" --out "$OUT" --resume auto --no-progress &
pid=$!
trap 'kill -TERM $pid' TERM USR1
wait $pid; status=$?
while kill -0 $pid 2>/dev/null; do wait $pid; status=$?; done  # wait again after the trap
if [ "$status" -eq 75 ]; then  # stopped on the signal, snapshot written: continue
    qsub -v "OUT=$OUT,PRESET=$PRESET,DATA=$DATA,PRETRAINED=$PRETRAINED" \
        examples/cluster/pbs_train_yolo.sh
fi
exit "$status"
