"""examples/cluster/slurm_train_yolo.sh under a real Slurm: the time limit's SIGTERM costs
nothing, and the resubmitted job ends where an uninterrupted run ends.

`make test-slurm` (run by .ci/run) starts a one-node Slurm from Debian's packages
(tools/slurm_local.sh: slurmctld, slurmd, munge; installed with apt-get where it can) and runs
this file with CHAINER_YOLO_DIST_SLURM_CONF set; elsewhere, or when Slurm cannot be had, the
test is skipped with the reason.

The cycle, as a user lives it on a cluster:
1. the job script is submitted with 2 tasks on one node and a 1-minute limit, on the
   synthetic demo preset (no data, no pretrained file); at the limit Slurm sends SIGTERM to
   every process of the job (the script, mpiexec, hydra's proxy, the ranks, their loader
   workers): the ranks agree on an update, write a snapshot and exit 75 within KillWait;
2. the same script is submitted again: ``--resume auto`` continues from that snapshot and the
   job completes. It ends the run 100 updates after the snapshot (``--iterations`` is not
   part of a run's identity, the schedule is in epochs), so that the test takes about three
   minutes on a fast machine and on a busy one;
3. its ``model.npz`` equals that of the same run under plain ``mpiexec``, never stopped.
"""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import MPIEXEC, REPO, _env as launch_env, assert_continued_exactly, check

SLURM_CONF = os.environ.get('CHAINER_YOLO_DIST_SLURM_CONF')
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SLURM_CONF, reason=os.environ.get(
        'CHAINER_YOLO_DIST_SLURM_SKIP', 'needs a running Slurm: make test-slurm starts one')),
]

SCRIPT = 'examples/cluster/slurm_train_yolo.sh'
#: Updates after the snapshot of job 1 (which is given more than it can do in its minute).
MORE = 100
TRAIN = ['--n-train-images', '64', '--n-test-images', '4', '--image-size', '64',
         '--insize', '64', '--no-multiscale', '--batchsize', '2', '--eval-batchsize', '2',
         '--log-interval', '100', '--loaderjob', '1']
#: The example's GPU cluster request, brought to this one-node CPU Slurm (sbatch options
#: override the script's #SBATCH lines); no warning signal, so the limit's SIGTERM is what
#: stops job 1.
FIT_HERE = ['--gres=none', '--nodes=1', '--ntasks-per-node=2', '--cpus-per-task=1',
            '--signal=B:USR1@0']
ENDED = ('COMPLETED', 'FAILED', 'TIMEOUT', 'CANCELLED', 'NODE_FAIL', 'OUT_OF_MEMORY',
         'PREEMPTED', 'BOOT_FAIL', 'DEADLINE')


def _env(out, iterations=None):
    extra = TRAIN + (['--iterations', str(iterations)] if iterations else [])
    return launch_env(dict(SLURM_CONF=SLURM_CONF, OMP_NUM_THREADS='1', OUT=str(out),
                           PRESET='synthetic_demo', DATA='', PRETRAINED='',
                           EXTRA=' '.join(extra)))


def _submit(out, minutes, iterations):
    proc = subprocess.run(['sbatch', '--parsable', '--time=%d' % minutes,
                           '--output=%s/slurm-%%j.out' % out] + FIT_HERE + [SCRIPT],
                          cwd=REPO, env=_env(out, iterations), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split(';')[0]


def _wait(job, out, timeout):
    """The ended job's (state, exit code) and its output file's text."""
    deadline = time.time() + timeout
    while True:
        show = subprocess.run(['scontrol', 'show', 'job', '-o', job], env=_env(out),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, timeout=30).stdout
        state = re.search(r'JobState=(\S+)', show)
        if state and state.group(1) in ENDED:
            break
        if time.time() > deadline:
            subprocess.run(['scancel', job], env=_env(out), timeout=30)
            pytest.fail('job %s still %s after %d s' % (job, show.strip(), timeout))
        time.sleep(2)
    with open(os.path.join(str(out), 'slurm-%s.out' % job)) as f:
        text = f.read()
    return state.group(1), re.search(r'ExitCode=(\S+)', show).group(1), text


def test_the_time_limit_stops_the_job_with_a_snapshot_and_a_resubmission_ends_exactly(
        tmp_path):
    out, whole = tmp_path / 'run', tmp_path / 'whole'
    out.mkdir()
    job = _submit(out, minutes=1, iterations=100000)
    state, code, text = _wait(job, out, timeout=240)
    stops = re.findall(r'stopped by (SIG\w+) after iteration (\d+): snapshot', text)
    assert state == 'TIMEOUT' and code.startswith('75:'), (state, code, text[-3000:])
    assert len(stops) == 1 and stops[0][0] == 'SIGTERM', text[-3000:]
    stopped_at = int(stops[0][1])
    assert stopped_at > 0
    snapshot = out / ('snapshot_iter_%d' % stopped_at)
    assert snapshot.exists() and not (out / 'model.npz').exists()

    job = _submit(out, minutes=10, iterations=stopped_at + MORE)
    reference = subprocess.Popen(  # beside job 2: the machine's two cores are shared
        [MPIEXEC, '-n', '2', sys.executable, 'scripts/train_yolo.py',
         '--preset', 'synthetic_demo', '--out', str(whole), '--no-progress',
         '--iterations', str(stopped_at + MORE)] + TRAIN,
        cwd=REPO, env=launch_env(dict(OMP_NUM_THREADS='1')), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, universal_newlines=True, start_new_session=True)
    try:
        state, code, text = _wait(job, out, timeout=480)
        assert state == 'COMPLETED' and code == '0:0', (state, code, text[-3000:])
        assert 'resumed from %s at iteration %d' % (snapshot, stopped_at) in text, text[-3000:]
        log, _ = reference.communicate(timeout=480)
    finally:
        if reference.poll() is None:
            os.killpg(reference.pid, signal.SIGKILL)
            reference.communicate()
    check(subprocess.CompletedProcess(reference.args, reference.returncode, log, ''))
    assert_continued_exactly(whole / 'model.npz', out / 'model.npz')
