"""Fault injection: every failure ends the whole job within seconds with its cause named, and
leaves nothing half-written (docs/reliability.md). Real ranks under mpiexec, each run with a
timeout; a few iterations of the CPU demo recipe on tiny data. The tests that train are marked
slow; those that end before training (a mistake refused at start-up) are not."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import MPIEXEC, REPO, _env, check, resolve_script, run_mpi, run_python
from test_datasets_voc import add_image, write_split

TINY = ['scripts/train_yolo.py', '--n-train-images', '16', '--n-test-images', '4',
        '--image-size', '64', '--insize', '64', '--no-multiscale', '--batchsize', '2',
        '--eval-batchsize', '2', '--no-progress', '--log-interval', '1']
#: Seconds a failure may take to end the job (the issue's bound), after Python's start-up.
END_WITHIN = 10


def _vocformat(tmp_path, n=8):
    root = str(tmp_path / 'data')
    for i in range(n):
        add_image(root, 'img%d' % i, [('a', (5, 5, 30, 25), 0), ('b', (20, 10, 55, 38), 0)],
                  seed=i)
    write_split(root, 'train', ['img%d' % i for i in range(n)])
    write_split(root, 'test', ['img0', 'img1'])
    return root


def _vocformat_args(root):
    return ['scripts/train_yolo.py', '--dataset', 'vocformat', '--data-dir', root,
            '--class-names', 'a', 'b', '--train-split', 'train', '--test-split', 'test',
            '--insize', '64', '--no-multiscale', '--batchsize', '2', '--eval-batchsize', '2',
            '--no-progress', '--log-interval', '1']


def _start(n, args):
    return subprocess.Popen([MPIEXEC, '-n', str(n), sys.executable] + args, cwd=REPO,
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def _wait_for(path, proc, timeout=120):
    """Waits until ``path`` exists (training has started) while ``proc`` runs."""
    deadline = time.time() + timeout
    while not os.path.exists(path):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, 'no %s after %d s' % (path, timeout)
        time.sleep(0.2)


def _finish(proc, timeout):
    """``(returncode, stdout, stderr, seconds)`` of ``proc``, killed if past ``timeout``."""
    start = time.time()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail('the job did not end within %d s:\n%s' % (timeout, err[-3000:]))
    return proc.returncode, out, err, time.time() - start


def _descendants(pid):
    children = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open('/proc/%s/stat' % entry) as f:
                    ppid = int(f.read().rsplit(')', 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return f.read().replace(b'\0', b' ').decode()
    except OSError:
        return ''


@pytest.mark.slow  # trains until the file goes
def test_a_file_that_disappears_mid_training_ends_the_job(tmp_path):
    root = _vocformat(tmp_path)
    out = tmp_path / 'run'
    proc = _start(2, _vocformat_args(root) + ['--iterations', '2000', '--loaderjob', '2',
                                              '--out', str(out)])
    _wait_for(out / 'log', proc)
    for name in os.listdir(os.path.join(root, 'JPEGImages')):
        os.unlink(os.path.join(root, 'JPEGImages', name))
    code, _, err, seconds = _finish(proc, timeout=60)
    assert code != 0 and seconds < END_WITHIN, (seconds, err[-2000:])
    assert 'JPEGImages/img' in err and 'unreadable image' in err, err[-2000:]
    assert not (out / 'model.npz').exists() and not (out / 'metrics.json').exists()


@pytest.mark.slow  # trains until the worker is killed
def test_a_killed_loader_worker_ends_the_job(tmp_path):
    out = tmp_path / 'run'
    proc = _start(2, TINY + ['--iterations', '2000', '--loaderjob', '2', '--out', str(out)])
    _wait_for(out / 'log', proc)
    # The workers are forked by each rank's forkserver, whose command line they share.
    servers = [p for p in _descendants(proc.pid) if 'forkserver' in _cmdline(p)]
    workers = [c for s in servers for c in _descendants(s)]
    assert workers, 'no loader worker found'
    os.kill(workers[0], signal.SIGKILL)
    code, _, err, seconds = _finish(proc, timeout=60)
    assert code != 0 and seconds < END_WITHIN, (seconds, err[-2000:])
    assert 'data-loading worker process (pid %d)' % workers[0] in err, err[-2000:]


@pytest.mark.slow  # trains until the rank is killed
def test_a_killed_rank_ends_the_job(tmp_path):
    out = tmp_path / 'run'
    proc = _start(2, TINY + ['--iterations', '2000', '--loaderjob', '0', '--out', str(out)])
    _wait_for(out / 'log', proc)
    ranks = [p for p in _descendants(proc.pid) if 'train_yolo.py' in _cmdline(p)
             and 'forkserver' not in _cmdline(p)]
    os.kill(ranks[-1], signal.SIGKILL)
    code, _, err, seconds = _finish(proc, timeout=60)
    assert code != 0 and seconds < END_WITHIN, (seconds, err[-2000:])


@pytest.mark.slow  # two training runs
def test_two_jobs_never_share_a_run_directory(tmp_path):
    out = tmp_path / 'run'
    first = _start(1, TINY + ['--iterations', '2000', '--loaderjob', '0', '--out', str(out)])
    _wait_for(out / 'log', first)
    second = run_python(TINY + ['--iterations', '2', '--out', str(out)], timeout=120)
    assert second.returncode == 2, second.stderr[-2000:]
    owner = [p for p in _descendants(first.pid) if 'train_yolo.py' in _cmdline(p)][0]
    assert 'in use by a running job' in second.stderr
    assert 'process %d' % owner in second.stderr, second.stderr
    assert 'Traceback' not in second.stderr
    # A killed job leaves no stuck lock: the next job may clear the directory and run.
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate()
    check(run_python(TINY + ['--iterations', '1', '--loaderjob', '0', '--overwrite',
                             '--out', str(out)], timeout=120))
    assert (out / 'metrics.json').exists()


def test_a_new_run_refuses_a_directory_holding_another_run(tmp_path):
    out = tmp_path / 'run'
    out.mkdir()
    (out / 'config.json').write_text('{}')
    proc = run_python(TINY + ['--iterations', '1', '--out', str(out)], timeout=120)
    assert proc.returncode == 2 and 'already holds files (config.json)' in proc.stderr
    assert '--overwrite' in proc.stderr and 'Traceback' not in proc.stderr


@pytest.mark.slow  # a training run
def test_non_finite_weights_are_never_written(tmp_path):
    out = tmp_path / 'run'
    proc = run_python(TINY + ['--eta', '1e38', '--iterations', '1', '--snapshot-interval', '5',
                              '--warmup-epochs', '0', '--warmup-hold-epochs', '0',
                              '--loaderjob', '0', '--out', str(out)], timeout=120)
    assert proc.returncode != 0
    assert 'not finite at iteration 1' in proc.stderr and 'model.npz' in proc.stderr, \
        proc.stderr[-2000:]
    assert not (out / 'model.npz').exists() and not (out / 'metrics.json').exists()
    assert 'not finite at iteration 1' in (out / 'error.txt.rank0').read_text()
    assert not list(out.glob('snapshot_iter_*'))


@pytest.mark.parametrize('option, message', [
    # (a value out of its option's range is refused while parsing: tests/test_option_sweep.py)
    (['--insize', '100'], '--insize 100 is not a multiple of the stride 32'),
    (['--lr-rule', 'k'], "--lr-rule must be one of"),
    (['--preset', 'no_such_preset'], "unknown preset 'no_such_preset'"),
    (['--dataset', 'vocformat'], '--dataset vocformat needs --class-names'),
    (['--preset', 'yolov2_voc_2018'], 'give --pretrained PATH'),
])
def test_bad_settings_are_refused_before_mpi(tmp_path, option, message):
    """The options resolve in-process (core/resolve.py) before any process communicates; how
    such a mistake ends a 2-rank job is the next test's."""
    out = tmp_path / 'run'
    with pytest.raises(ValueError, match=re.escape(message)):
        resolve_script('detection', TINY[1:] + ['--out', str(out)] + option)
    assert not out.exists()


@pytest.mark.parametrize('option, message', [
    # a value refused while the options are parsed, by rank 0 alone
    (['--iterations', '0'], 'argument --iterations: expected an integer >= 1, got \'0\''),
    # a setting refused by the resolution, on every rank before MPI communicates
    (['--insize', '100'], '--insize 100 is not a multiple of the stride 32'),
    # the data, loaded by rank 0 (it needs the data: no in-process check before the job)
    (['--dataset', 'voc0712', '--data-dir', 'nope'], 'Pascal VOC data not found at nope'),
])
def test_a_bad_setting_is_one_line_from_one_rank(tmp_path, option, message):
    out = tmp_path / 'run'
    start = time.time()
    proc = run_mpi(2, TINY + ['--out', str(out)] + option, timeout=120)
    seconds = time.time() - start
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert lines == ['error: ' + lines[0][len('error: '):]] and message in lines[0], lines
    assert 'MPI_Abort' not in proc.stderr and not (out / 'log').exists()
    assert seconds < 60


def test_an_all_skipped_training_split_is_named_with_its_report(tmp_path):
    root = str(tmp_path / 'data')
    for i in range(3):
        add_image(root, 'bad%d' % i, None, seed=i)  # no annotation file: the image is bad
    add_image(root, 'good', [('a', (5, 5, 30, 25), 0)], seed=9)
    write_split(root, 'train', ['bad0', 'bad1', 'bad2'])
    write_split(root, 'test', ['good'])
    out = tmp_path / 'run'
    proc = run_mpi(2, _vocformat_args(root) + ['--on-bad-sample', 'skip', '--out', str(out)],
                   timeout=120)
    assert proc.returncode == 2
    assert 'the training split of dataset vocformat has no usable examples' in proc.stderr
    assert 'bad_samples_' in proc.stderr and (out / 'bad_samples_train.json').exists()


@pytest.mark.slow  # a training run, then its resume
def test_resume_with_other_settings_is_refused_by_name(tmp_path):
    out = tmp_path / 'run'
    check(run_python(TINY + ['--iterations', '2', '--loaderjob', '0', '--out', str(out)],
                     timeout=120))
    again = run_python(TINY + ['--iterations', '4', '--loaderjob', '0', '--batchsize', '4',
                               '--resume', str(out / 'snapshot_iter_2'), '--out', str(out)],
                       timeout=120)
    assert again.returncode == 2 and 'batchsize_per_worker 2 (now 4)' in again.stderr, \
        again.stderr[-2000:]
    assert 'Traceback' not in again.stderr


@pytest.mark.slow  # a training run, then its resume
def test_leftovers_of_an_interrupted_run_are_removed_on_resume(tmp_path):
    out = tmp_path / 'run'
    check(run_python(TINY + ['--iterations', '2', '--loaderjob', '0', '--out', str(out)],
                     timeout=120))
    (out / 'tmpsnapshot_iter_3abc').mkdir()
    (out / '.tmp-model.npz.x1y2.npz').write_bytes(b'half')
    (out / 'model.npz.tmp').write_bytes(b'half')
    proc = check(run_python(TINY + ['--iterations', '3', '--loaderjob', '0', '--out', str(out),
                                    '--resume', str(out / 'snapshot_iter_2')], timeout=120))
    for name in ('tmpsnapshot_iter_3abc', '.tmp-model.npz.x1y2.npz'):
        assert not (out / name).exists()
        assert 'removed %s' % (out / name) in proc.stdout
    # A *.tmp may be the user's: only names that the package alone writes are removed.
    assert (out / 'model.npz.tmp').read_bytes() == b'half'
    assert 'removed %s' % (out / 'model.npz.tmp') not in proc.stdout
    # metrics.json is the last file written: a directory with it holds a finished run.
    assert (out / 'metrics.json').stat().st_mtime >= (out / 'model.npz').stat().st_mtime


@pytest.mark.slow  # trains until the disk is full
def test_a_full_disk_fails_cleanly(tmp_path):
    disk = tmp_path / 'disk'
    disk.mkdir()
    mount = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', str(disk)],
                           capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip('cannot mount a small tmpfs here: %s' % mount.stderr.strip())
    try:
        out = disk / 'run'
        proc = run_python(TINY + ['--iterations', '2', '--loaderjob', '0', '--out', str(out)],
                          timeout=120)
        assert proc.returncode != 0 and 'No space left on device' in proc.stderr
        names = os.listdir(out) if out.exists() else []
        assert not [n for n in names if n.startswith('.tmp-')], names
        assert 'metrics.json' not in names
    finally:
        subprocess.run(['umount', str(disk)], capture_output=True)


def test_a_bad_option_value_is_one_line_from_one_rank(tmp_path):
    proc = run_mpi(2, ['scripts/train_yolo.py', '--batchsize', 'abc'], timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: argument --batchsize: expected an integer >= 1, got 'abc' (train_yolo.py -h "
        "lists the options)"]
