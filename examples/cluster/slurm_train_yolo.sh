#!/bin/bash
# YOLOv2 on VOC 07+12 with paper 000's recipe for 128 GPUs: 32 nodes x 4 GPUs, one MPI rank
# per GPU (docs/cluster.md). Submit from the repository root, once:
#     mkdir -p runs/yolov2-voc-128 && sbatch examples/cluster/slurm_train_yolo.sh
# Every piece of state lives in --out, so the same script serves every submission:
# - 5 minutes before the wall-time limit Slurm sends SIGUSR1 to this script (B:); it forwards
#   the signal to mpiexec, which forwards it to every rank; the ranks agree on an update,
#   write a snapshot and exit 75, and the script requeues the job, which continues with
#   --resume auto;
# - at the limit itself (or on scancel or preemption) Slurm sends SIGTERM to every process of
#   the job: the ranks stop the same way within KillWait and the job ends with status 75;
#   submit the script again (or chain it: sbatch --dependency=afternotok:JOBID ...) and it
#   continues. tests/test_slurm.py runs this cycle under a real one-node Slurm.
# The environment chooses the run: OUT, PRESET, DATA (empty: the preset's embedded synthetic
# data), PRETRAINED (empty: none) and EXTRA (more train_yolo.py options, split on spaces).
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
DATA=${DATA-$HOME/data/VOCdevkit}
PRETRAINED=${PRETRAINED-$HOME/data/darknet19_448.conv.23}
EXTRA=${EXTRA:-}
mkdir -p "$OUT"
args=(--preset "$PRESET" --out "$OUT" --resume auto --no-progress)
if [ -n "$DATA" ]; then args+=(--data-dir "$DATA"); fi
if [ -n "$PRETRAINED" ]; then args+=(--pretrained "$PRETRAINED"); fi

# A signal may come at any moment, even before mpiexec runs: note which, forward it once.
stop=
pid=
forward() {
    stop=$1
    if [ -n "$pid" ]; then kill -USR1 "$pid" 2>/dev/null; fi
}
trap 'forward USR1' USR1
trap 'forward TERM' TERM

# The venv's MPICH (hydra) launches through Slurm inside the allocation; with the cluster's
# own MPI use its mpiexec (or srun --mpi=pmix) with mpi4py built against it instead.
# shellcheck disable=SC2086  # EXTRA is a list of options
.venv/bin/mpiexec -n "$SLURM_NTASKS" -ppn "$SLURM_NTASKS_PER_NODE" \
    .venv/bin/python scripts/train_yolo.py "${args[@]}" $EXTRA &
pid=$!
if [ -n "$stop" ]; then kill -USR1 "$pid"; fi
while :; do  # a trapped signal interrupts wait: wait again until mpiexec has ended
    wait "$pid"
    kill -0 "$pid" 2>/dev/null || break
done
wait "$pid"; status=$?  # bash keeps the ended job's status
if [ "$status" -eq 75 ] && [ "$stop" = USR1 ]; then
    # Stopped on the warning, snapshot written, the job still inside its limit: requeue it.
    scontrol requeue "$SLURM_JOB_ID"
fi
exit "$status"
