"""The run directory's faults (issues 23 and 24): a refused or failed start leaves the file
system as it found it (a user's files, a crashed run's record), leftovers are removed only
from a directory that is the run's own, a finished run leaves no lock, and an aborting rank
names itself and its host (docs/reliability.md, "Run directories")."""
import os
import socket
import time

import pytest

from conftest import REPO, check, run_mpi, run_python
from chainer_yolo_dist.core import mpi, rundir
from chainer_yolo_dist.core.atomic import TMP_PREFIX

TINY = ['scripts/train_yolo.py', '--n-train-images', '16', '--n-test-images', '8',
        '--image-size', '64', '--insize', '64', '--no-multiscale', '--batchsize', '2',
        '--eval-batchsize', '2', '--no-progress', '--log-interval', '1']
CRASH = ('Traceback (most recent call last):\n...\nrank 0 on node7: uncaught ValueError in '
         'the main thread; ending the whole MPI job\n')


def _files(folder):
    """``{relative path: content}`` of every file under ``folder`` (directories as None)."""
    found = {}
    for parent, dirs, names in os.walk(str(folder)):
        for name in dirs:
            found[os.path.relpath(os.path.join(parent, name), str(folder))] = None
        for name in names:
            path = os.path.join(parent, name)
            with open(path, 'rb') as f:
                found[os.path.relpath(path, str(folder))] = f.read()
    return found


def _crashed_run(out):
    """A folder as a run that crashed after iteration 2 leaves it."""
    out.mkdir()
    (out / 'config.json').write_text('{}')
    (out / 'snapshot_iter_2').write_bytes(b'npz')
    (out / 'log').write_text('[]')
    (out / 'error.txt.rank0').write_text(CRASH)
    (out / (TMP_PREFIX + 'snapshot_iter_3.a1b2')).write_bytes(b'half')
    (out / '.lock').write_text('host node7, process 4242, since 2024-01-01 00:00:00 UTC')
    return out


def _users_folder(tmp_path):
    """A folder of the user's, holding names a run might also use."""
    out = tmp_path / 'mine'
    out.mkdir()
    (out / 'thesis.tmp').write_text('chapter 1')
    (out / 'error.txt').write_text('my notes')
    return out


# rundir itself, in this process

def test_a_user_folder_is_refused_and_kept_as_it_was(tmp_path):
    out = _users_folder(tmp_path)
    before = _files(out)
    with pytest.raises(rundir.RunDirectoryError, match='already holds files'):
        rundir.acquire(str(out))
    assert _files(out) == before  # nothing removed, and no .lock left behind


def test_a_crashed_runs_record_survives_a_plain_start(tmp_path):
    out = _crashed_run(tmp_path / 'run')
    before = _files(out)
    with pytest.raises(rundir.RunDirectoryError, match='error.txt.rank0'):
        rundir.acquire(str(out))
    assert _files(out) == before  # its crash record, its leftovers and its .lock untouched


def test_a_resumed_run_moves_the_crash_record_aside_and_removes_only_its_leftovers(tmp_path):
    out = _crashed_run(tmp_path / 'run')
    (out / 'tmpsnapshot_iter_3xyz').mkdir()
    (out / 'thesis.tmp').write_text('chapter 1')
    crashed_at = time.time() - 3600
    os.utime(str(out / 'error.txt.rank0'), (crashed_at, crashed_at))
    claim = rundir.acquire(str(out), resume=True)
    try:
        assert sorted(claim) == sorted([TMP_PREFIX + 'snapshot_iter_3.a1b2',
                                        'tmpsnapshot_iter_3xyz'])
        aside = 'error.txt.previous-%s.rank0' % time.strftime('%Y%m%d-%H%M%S',
                                                              time.gmtime(crashed_at))
        assert claim.moved == [('error.txt.rank0', aside)] and claim.created == ()
        assert (out / aside).read_text() == CRASH and not (out / 'error.txt.rank0').exists()
        assert sorted(os.listdir(str(out))) == sorted(
            ['.lock', 'config.json', 'snapshot_iter_2', 'log', 'thesis.tmp', aside])
        assert 'process %d' % os.getpid() in (out / '.lock').read_text()
    finally:
        rundir.release(str(out), claim.created)
    assert not (out / '.lock').exists() and (out / 'config.json').exists()


def test_a_second_crash_record_moved_aside_keeps_the_first(tmp_path):
    out = _crashed_run(tmp_path / 'run')
    rundir.release(str(out), rundir.acquire(str(out), resume=True).created)
    (out / 'error.txt.rank0').write_text('the second crash\n')
    first = [n for n in os.listdir(str(out)) if n.startswith('error.txt.previous-')]
    os.utime(str(out / 'error.txt.rank0'), (os.path.getmtime(str(out / first[0])),) * 2)
    claim = rundir.acquire(str(out), resume=True)
    rundir.release(str(out), claim.created)
    records = {n: (out / n).read_text() for n in os.listdir(str(out))
               if n.startswith('error.txt')}
    assert len(records) == 2 and records[first[0]] == CRASH, records
    assert sorted(records.values()) == sorted([CRASH, 'the second crash\n'])
    assert all(n.startswith('error.txt.previous-') for n in records), records


def test_a_folder_with_only_a_lock_or_our_leftovers_is_free(tmp_path):
    out = tmp_path / 'run'
    out.mkdir()
    (out / '.lock').write_text('host node7, process 4242, since 2024-01-01 00:00:00 UTC')
    (out / (TMP_PREFIX + 'model.npz.x1.npz')).write_bytes(b'half')
    (out / 'tmpsnapshot_iter_1abc').mkdir()
    claim = rundir.acquire(str(out))
    assert sorted(claim) == [TMP_PREFIX + 'model.npz.x1.npz', 'tmpsnapshot_iter_1abc']
    assert os.listdir(str(out)) == ['.lock'] and claim.created == ()
    rundir.release(str(out), claim.created)
    assert os.listdir(str(out)) == []  # not made by acquire: the folder stays


def test_overwrite_clears_the_folder(tmp_path):
    out = _crashed_run(tmp_path / 'run')
    claim = rundir.acquire(str(out), overwrite=True)
    assert os.listdir(str(out)) == ['.lock']
    rundir.release(str(out), claim.created)


def test_release_removes_the_lock_and_the_folders_acquire_made_if_empty(tmp_path):
    out = tmp_path / 'runs' / 'tiny-20240101-000000'
    claim = rundir.acquire(str(out))
    assert claim.created == (str(tmp_path / 'runs'), str(out))
    rundir.release(str(out), claim.created)
    assert os.listdir(str(tmp_path)) == []
    # A run that wrote files keeps them, and its folder; only the lock goes.
    claim = rundir.acquire(str(out))
    (out / 'metrics.json').write_text('{}')
    rundir.release(str(out), claim.created)
    assert os.listdir(str(out)) == ['metrics.json']
    rundir.release(str(out), claim.created)  # twice, or on a rank that holds nothing: no-op


def test_a_busy_folder_is_refused_and_its_owners_lock_kept(tmp_path):
    out = tmp_path / 'run'
    claim = rundir.acquire(str(out))
    owner = (out / '.lock').read_text()
    try:
        with pytest.raises(rundir.RunDirectoryError, match='in use by a running job'):
            rundir.acquire(str(out))
        assert (out / '.lock').read_text() == owner and out.is_dir()
    finally:
        rundir.release(str(out), claim.created)
    assert not out.exists()


def test_a_start_that_fails_in_acquire_leaves_nothing(tmp_path, monkeypatch):
    (tmp_path / 'file').write_text('x')
    # 'file' is no folder: one line naming it, not the OS's [Errno 20]
    with pytest.raises(rundir.RunDirectoryError, match=r'file/run: .*file is a file, not a '
                       'folder'):
        rundir.acquire(str(tmp_path / 'file' / 'run'))
    with pytest.raises(rundir.RunDirectoryError, match=r'--out .*file: it is a file'):
        rundir.acquire(str(tmp_path / 'file'))

    def cannot_lock(out):
        raise PermissionError(13, os.strerror(13), os.path.join(out, rundir.LOCK_NAME))
    monkeypatch.setattr(rundir, '_lock', cannot_lock)
    with pytest.raises(PermissionError):
        rundir.acquire(str(tmp_path / 'new' / 'run'))
    assert os.listdir(str(tmp_path)) == ['file']


# the scripts, for real

def test_out_at_a_users_folder_is_refused_and_its_files_kept(tmp_path):
    out = _users_folder(tmp_path)
    before = _files(out)
    proc = run_python(TINY + ['--iterations', '1', '--out', str(out)], timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert 'already holds files (error.txt, thesis.tmp)' in proc.stderr, proc.stderr[-2000:]
    assert _files(out) == before


def test_a_crashed_runs_record_survives_a_plain_restart(tmp_path):
    out = _crashed_run(tmp_path / 'run')
    before = _files(out)
    proc = run_mpi(2, TINY + ['--iterations', '1', '--out', str(out)], timeout=120)
    assert proc.returncode == 2 and 'already holds files' in proc.stderr, proc.stderr[-2000:]
    assert 'Traceback' not in proc.stderr
    assert _files(out) == before


def test_a_failed_start_leaves_no_folder(tmp_path):
    """The data directory is missing: found by rank 0 after it claimed the run directory."""
    args = [os.path.join(REPO, 'scripts', 'train_yolo.py'), '--dataset', 'vocformat',
            '--data-dir', str(tmp_path / 'missing'), '--class-names', 'a', '--no-progress']
    work = tmp_path / 'work'
    work.mkdir()
    proc = run_mpi(2, args + ['--out', str(tmp_path / 'out')], timeout=120, cwd=str(work))
    assert proc.returncode == 2 and 'not found' in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / 'out').exists()
    # Without --out: no new runs/<preset>-<time>/ (nor runs/) in the working directory.
    proc = run_mpi(2, args, timeout=120, cwd=str(work))
    assert proc.returncode == 2 and 'not found' in proc.stderr, proc.stderr[-2000:]
    assert os.listdir(str(work)) == []
    # A folder that was there stays, as it was.
    (tmp_path / 'out').mkdir()
    proc = run_mpi(2, args + ['--out', str(tmp_path / 'out')], timeout=120, cwd=str(work))
    assert proc.returncode == 2 and os.listdir(str(tmp_path / 'out')) == []


def test_a_finished_run_leaves_no_lock(tmp_path):
    out = tmp_path / 'run'
    check(run_mpi(2, TINY + ['--iterations', '1', '--loaderjob', '0', '--out', str(out)],
                  timeout=240))
    names = os.listdir(str(out))
    assert 'metrics.json' in names and '.lock' not in names, names


# the messages

def test_an_aborting_rank_names_itself_and_its_host(tmp_path):
    error_file = str(tmp_path / 'error.txt')
    script = ('from chainer_yolo_dist.core import mpi\n'
              'mpi.abort_on_exception()\n'
              'mpi.ERROR_FILE = %r\n'
              'from mpi4py import MPI\n'
              'if MPI.COMM_WORLD.rank == 1:\n'
              '    raise ValueError("boom")\n'
              'MPI.COMM_WORLD.barrier()\n' % error_file)
    proc = run_mpi(2, ['-c', script], timeout=60)
    assert proc.returncode != 0
    line = 'rank 1 on %s: uncaught ValueError in the main thread' % socket.gethostname()
    assert line in proc.stderr, proc.stderr[-2000:]
    assert line in (tmp_path / 'error.txt.rank1').read_text()


@pytest.mark.parametrize('message, expected', [
    ('error: rank 3: NonFiniteLossError: nan', 'error: rank 3 on HOST: NonFiniteLossError: nan'),
    ('Traceback\nValueError: rank 3: x\nrank 3: uncaught ValueError in the main thread',
     'Traceback\nValueError: rank 3: x\nrank 3 on HOST: uncaught ValueError in the main thread'),
    ('error: rank 3 on HOST: no update completed', 'error: rank 3 on HOST: no update completed'),
    ('error: something', 'error: rank 3 on HOST: something'),
    ('a data-loading worker process (pid 7) of rank 3 died',
     'rank 3 on HOST: a data-loading worker process (pid 7) of rank 3 died'),
])
def test_abort_messages_name_the_rank_and_host(message, expected):
    host = socket.gethostname()
    assert mpi._with_origin(message.replace('HOST', host), 3) == expected.replace('HOST', host)


def test_a_missing_rank_state_is_said_in_words(tmp_path):
    from chainer_yolo_dist.core import snapshots

    class Target(object):
        def serialize(self, serializer):
            pass

    problem = snapshots._load_rank_state(str(tmp_path / 'snapshot_iter_6'), 1, Target(), 6)
    assert 'snapshot_iter_6.rank1.npz is missing or unreadable' in problem, problem
    assert problem.endswith('(%s)' % os.strerror(2)), problem  # not a bare '(2)'
