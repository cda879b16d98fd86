#!/bin/bash
# YOLOv2 on VOC 07+12 with paper 000's recipe for 128 GPUs: 32 nodes x 4 GPUs, one MPI rank
# per GPU (docs/cluster.md). Submit from the repository root, once:
#     sbatch examples/cluster/slurm_train_yolo.sh
# Every piece of state lives in --out, so the job requeues itself unchanged: 5 minutes before
# the wall-time limit Slurm sends SIGUSR1 to the script (B:), the script forwards it to
# mpiexec, which forwards it to every rank; the ranks agree on an update, write a snapshot
# and exit 75, and the script requeues the job, which continues with --resume auto.
#SBATCH --job-name=yolov2-voc-128
#SBATCH --nodes=32
#SBATCH --ntasks-per-node=4
#SBATCH --gres=gpu:4
#SBATCH --cpus-per-task=10
#SBATCH --time=04:00:00
#SBATCH --signal=B:USR1@300
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=runs/yolov2-voc-128/slurm-%j.out
set -u
OUT=${OUT:-runs/yolov2-voc-128}
PRESET=${PRESET:-yolov2_voc_2018}
DATA=${DATA:-$HOME/data/VOCdevkit}
PRETRAINED=${PRETRAINED:-$HOME/data/darknet19_448.conv.23}
mkdir -p "$OUT"

# The venv's MPICH (hydra) launches through Slurm inside the allocation; with the cluster's
# own MPI use its mpiexec (or srun --mpi=pmix) with mpi4py built against it instead.
.venv/bin/mpiexec -n "$SLURM_NTASKS" -ppn "$SLURM_NTASKS_PER_NODE" \
    .venv/bin/python scripts/train_yolo.py --preset "$PRESET" --data-dir "$DATA" \
    --pretrained "$PRETRAINED" --out "$OUT" --resume auto --no-progress &
pid=$!
trap 'kill -USR1 $pid' USR1 TERM
wait $pid; status=$?
while kill -0 $pid 2>/dev/null; do wait $pid; status=$?; done  # wait again after the trap
if [ "$status" -eq 75 ]; then  # stopped on the signal, snapshot written: continue later
    scontrol requeue "$SLURM_JOB_ID"
fi
exit "$status"
