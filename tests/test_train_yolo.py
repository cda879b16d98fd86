"""scripts/train_yolo.py end to end, under mpiexec with real ranks (naive communicator)."""
import json
import time

import numpy as np
import pytest

from conftest import check, run_mpi, run_python

# A few iterations of the CPU demo recipe on a tiny synthetic split.
TINY = ['scripts/train_yolo.py', '--n-train-images', '32', '--n-test-images', '8',
        '--image-size', '64', '--insize', '64', '--multiscale', '64', '96', '2',
        '--batchsize', '4', '--eval-batchsize', '4', '--no-progress', '--log-interval', '2']


def _load_npz(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.slow  # a 2-rank training run, evaluation and benchmark
def test_two_ranks_write_every_output(tmp_path):
    out = tmp_path / 'run'
    proc = check(run_mpi(2, TINY + ['--iterations', '6', '--loaderjob', '1', '--out', str(out)],
                         timeout=240))
    for name in ('log', 'loss.png', 'config.json', 'metrics.json', 'snapshot_iter_6',
                 'model.npz'):
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / 'metrics.json').read_text())
    assert set(metrics) >= {'map', 'ap', 'epochs', 'iterations', 'elapsed_seconds',
                            'images_per_second'}
    assert metrics['iterations'] == 6
    assert set(metrics['ap']) == {'disc', 'square', 'triangle', 'cross'}
    assert 0 <= metrics['map'] <= 1 and metrics['images_per_second'] > 0
    config = json.loads((out / 'config.json').read_text())
    recipe = config['preset']
    assert config['ranks'] == 2 and config['workers'] == 2 and recipe['global_batchsize'] == 8
    assert config['nodes'] == 1  # both ranks on this one machine (node)
    assert config['communicator'] == 'naive'
    # k * eta with k = 2 (paper 000 sec. 4.1), and every setting recorded.
    assert recipe['peak_lr'] == pytest.approx(2 * config['eta'])
    assert recipe['name'] == 'synthetic_demo' and recipe['multiscale'] == [64, 96, 2]
    log = json.loads((out / 'log').read_text())
    assert [entry['iteration'] for entry in log] == [2, 4, 6]
    for key in ('main/loss', 'main/loss/box', 'main/loss/conf', 'main/loss/prob', 'lr'):
        assert all(np.isfinite(entry[key]) for entry in log), key
    # Only rank 0 writes: a single log line of the final result.
    assert proc.stdout.count('mAP ') == 1

    # eval_yolo.py on the saved model, in one process, reproduces the run's final mAP.
    result = out / 'eval.json'
    check(run_python(['scripts/eval_yolo.py', str(out / 'model.npz'), '--out', str(result)],
                     timeout=120))
    evaluated = json.loads(result.read_text())
    assert evaluated['map'] == pytest.approx(metrics['map'], abs=1e-9)
    assert evaluated['insize'] == 64

    # The benchmark harness runs on the same pieces (its numbers are not checked here).
    check(run_python(['scripts/benchmark.py', '--model', 'yolov3_small', '--insize', '64',
                      '--batchsize', '2', '--steps', '1', '--warmup', '1', '--processes', '1',
                      '2', '--out', str(tmp_path / 'bench')], timeout=180))
    bench = json.loads((tmp_path / 'bench' / 'train_step_yolov3_small_64.json').read_text())
    assert [r['processes'] for r in bench['runs']] == [1, 2]
    assert (tmp_path / 'bench' / 'train_step_yolov3_small_64.png').stat().st_size > 0


@pytest.mark.slow  # two 2-rank training runs
def test_resume_continues_exactly(tmp_path):
    """Two ranks, augmentation and multi-scale on: 4 + resume 4 == 8 uninterrupted."""
    full, resumed = tmp_path / 'full', tmp_path / 'resumed'
    args = TINY + ['--iterations', '8', '--snapshot-interval', '4', '--loaderjob', '1']
    check(run_mpi(2, args + ['--out', str(full)], timeout=240))
    check(run_mpi(2, args + ['--out', str(resumed), '--resume',
                             str(full / 'snapshot_iter_4')], timeout=240))
    a, b = _load_npz(full / 'model.npz'), _load_npz(resumed / 'model.npz')
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    log_full = json.loads((full / 'log').read_text())
    log_resumed = json.loads((resumed / 'log').read_text())
    assert log_resumed[-1]['iteration'] == 8
    assert log_resumed[-1]['main/loss'] == log_full[-1]['main/loss']
    assert log_resumed[-1]['lr'] == log_full[-1]['lr']
    # On another number of ranks the shares of the data differ: a clear refusal.
    proc = run_python(args + ['--out', str(tmp_path / 'one'), '--resume',
                              str(full / 'snapshot_iter_4')], timeout=120)
    assert proc.returncode != 0
    assert 'same number of ranks' in proc.stderr and 'snapshot_iter_4' in proc.stderr


@pytest.mark.slow  # three training runs
def test_the_seed_fixes_every_random_choice(tmp_path):
    """Initial weights, shuffle, augmentation and multi-scale sizes all follow --seed."""
    args = TINY + ['--iterations', '3', '--loaderjob', '0']
    for name, seed in (('a', '5'), ('b', '5'), ('c', '6')):
        check(run_python(args + ['--seed', seed, '--out', str(tmp_path / name)], timeout=120))
    a, b, c = (_load_npz(tmp_path / n / 'model.npz') for n in 'abc')
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert any(not np.array_equal(a[key], c[key]) for key in a)


@pytest.mark.slow  # a training run
def test_non_finite_loss_stops_before_update(tmp_path):
    out = tmp_path / 'run'
    proc = run_python(TINY + ['--iterations', '30', '--lr', '1e12', '--warmup-epochs', '0',
                              '--warmup-hold-epochs', '0', '--snapshot-interval', '1',
                              '--keep-snapshots', '100',
                              '--loaderjob', '0', '--out', str(out)], timeout=240)
    assert proc.returncode != 0
    message = [line for line in proc.stderr.splitlines() if 'NonFiniteLossError' in line]
    assert message and 'at iteration' in message[-1], proc.stderr[-3000:]
    iteration = int(message[-1].split('at iteration ')[1].split()[0])
    # Snapshots exist only for the iterations before the bad one, and hold finite weights.
    snapshots = sorted(int(p.name.split('_')[-1]) for p in out.glob('snapshot_iter_*'))
    assert snapshots == list(range(1, iteration))
    for s in snapshots:
        for key, value in _load_npz(out / ('snapshot_iter_%d' % s)).items():
            if value.dtype.kind == 'f':
                assert np.isfinite(value).all(), (s, key)


def test_failing_rank_ends_job_quickly(tmp_path):
    """Rank 0 fails to load the data while rank 1 waits in a collective: the job must end."""
    start = time.time()
    proc = run_mpi(2, ['scripts/train_yolo.py', '--dataset', 'vocformat',
                       '--data-dir', str(tmp_path / 'missing'), '--class-names', 'a',
                       '--out', str(tmp_path / 'out')], timeout=60)
    elapsed = time.time() - start
    assert proc.returncode != 0
    assert 'missing' in proc.stderr
    # Python and Chainer start-up take a few seconds; the abort itself about one.
    assert elapsed < 10 + _startup_seconds(), elapsed


def _startup_seconds():
    start = time.time()
    check(run_python(['-c', 'import chainer, chainermn, chainercv.links'], timeout=60))
    return time.time() - start
