"""Snapshots and resume (issues 23 and 24): ``--resume FILE | RUN_DIR | auto``, a snapshot's
identity including its parallelism, damaged snapshots and pretrained files refused in one line
naming the file, CycleGAN's snapshot sets complete or absent, kept whole by iteration, and its
``metrics.json`` the same after a resume (docs/reliability.md, "Snapshots and resume").

The file-level checks run in-process on files made here; the tests that train are marked
slow (tiny runs of the CPU demos, each subprocess with a timeout)."""
import json
import os
import shutil

import numpy as np
import pytest

from conftest import check, resolve_script, run_mpi, run_python
from test_faults import TINY

from chainer_yolo_dist.core import snapshots

RANK_KEY = 'extensions/%s/rank_states' % snapshots.SnapshotSet.name


def _npz(path, **arrays):
    """An .npz at exactly ``path`` (numpy.savez would append '.npz' to a name without it)."""
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(str(path), 'wb') as f:
        np.savez(f, **arrays)
    return str(path)


def _snapshot(folder, iteration, ranks=0):
    """A trainer snapshot of ``iteration`` in ``folder`` counting ``ranks`` rank states, with
    those files."""
    path = os.path.join(str(folder), 'snapshot_iter_%d' % iteration)
    _npz(path, **{RANK_KEY: np.array(ranks), 'updater/iteration': np.array(iteration)})
    for rank in range(ranks):
        _npz(snapshots.rank_state_path(path, rank), iteration=np.array(iteration))
    return path


def _cut(path, keep=0.5):
    """Truncates ``path`` to ``keep`` of its size (a killed copy, a full disk)."""
    size = os.path.getsize(path)
    with open(path, 'r+b') as f:
        f.truncate(int(size * keep))
    return path


def _one_line(error):
    message = str(error.value)
    assert '\n' not in message, message
    return message


# --- --resume FILE | RUN_DIR | auto ----------------------------------------------------------

def test_each_form_of_resume_names_a_snapshot(tmp_path):
    run = tmp_path / 'run'
    two, ten = _snapshot(run, 2), _snapshot(run, 10)  # by iteration: 10 sorts before 2 as text
    assert snapshots.find_snapshot(two, None) == two
    assert snapshots.find_snapshot(str(run), None) == ten
    assert snapshots.find_snapshot('auto', str(run)) == ten
    assert snapshots.check_resume('auto', str(run)) == ten
    assert snapshots.check_resume(None, str(run)) is None
    # auto with nothing to resume: a fresh start (the same job script resubmitted)
    (tmp_path / 'empty').mkdir()
    assert snapshots.find_snapshot('auto', str(tmp_path / 'empty')) is None
    assert snapshots.find_snapshot('auto', str(tmp_path / 'not_yet')) is None


def test_resume_mistakes_are_one_line_each(tmp_path):
    missing = str(tmp_path / 'nonexistent')
    with pytest.raises(ValueError) as e:
        snapshots.find_snapshot(missing, None)
    assert _one_line(e) == '--resume %s: no such file or folder' % missing
    (tmp_path / 'empty').mkdir()
    empty = str(tmp_path / 'empty')
    with pytest.raises(ValueError) as e:
        snapshots.find_snapshot(empty, None)
    assert _one_line(e).startswith('--resume %s: no complete snapshot in %s' % (empty, empty))
    with pytest.raises(ValueError) as e:  # a new timestamped folder: nothing to continue
        snapshots.check_resume('auto', None)
    assert _one_line(e).startswith('--resume auto needs --out')


def test_an_incomplete_newest_set_is_passed_over(tmp_path):
    run = tmp_path / 'run'
    four = _snapshot(run, 4, ranks=2)
    six = _snapshot(run, 6, ranks=2)
    os.remove(snapshots.rank_state_path(six, 1))  # rank 1's state of 6 never written
    assert 'rank 1\'s state' in snapshots.snapshot_problem(six)
    assert snapshots.find_snapshot('auto', str(run)) == four
    assert snapshots.find_snapshot(str(run), None) == four
    _cut(snapshots.rank_state_path(four, 0))  # and rank 0's of 4 cut short
    assert snapshots.find_snapshot('auto', str(run)) is None
    with pytest.raises(ValueError) as e:
        snapshots.find_snapshot(str(run), None)
    message = _one_line(e)
    assert 'no complete snapshot in %s' % run in message and six in message
    with pytest.raises(ValueError) as e:  # named directly: what is missing, by name
        snapshots.find_snapshot(six, None)
    assert snapshots.rank_state_path(six, 1) in _one_line(e)


@pytest.mark.parametrize('damage', ['truncated', 'zeroed_tail', 'empty'])
def test_a_damaged_snapshot_is_refused_naming_it(tmp_path, damage):
    path = _snapshot(tmp_path / 'run', 2)
    if damage == 'truncated':
        _cut(path)
    elif damage == 'zeroed_tail':  # the zip directory at the end overwritten
        size = os.path.getsize(path)
        with open(path, 'r+b') as f:
            f.seek(size // 2)
            f.write(b'\0' * (size - size // 2))
    else:
        _cut(path, 0)
    with pytest.raises(ValueError) as e:
        snapshots.check_resume(path, None)
    message = _one_line(e)
    assert message.startswith('--resume %s: cannot resume from it: ' % path), message
    assert ('empty file' if damage == 'empty' else 'truncated or corrupt') in message


def test_retention_keeps_complete_sets_by_iteration(tmp_path):
    run = tmp_path / 'run'
    for it in (2, 4, 5, 8):
        _snapshot(run, it, ranks=2)
    os.remove(snapshots.rank_state_path(str(run / 'snapshot_iter_5'), 0))  # 5 incomplete
    orphan = _npz(snapshots.rank_state_path(str(run / 'snapshot_iter_7'), 1))  # no trainer's
    leftover = _npz(run / 'rank_states' / '.tmp-snapshot_iter_3.rank0.npz.x1.npz')
    six = _snapshot(run, 6, ranks=2)  # the set just written, after a resume from 4: 8 is
    os.utime(str(run / 'snapshot_iter_2'))  # of the abandoned continuation; mtimes say nothing
    assert snapshots.retained_iterations(str(run), 3, 6) == [2, 4, 6]
    writer = snapshots.SnapshotSet(_Comm(), None, keep=3)
    writer.rank_state = object()
    writer._retain(str(run), 6)
    assert [it for it, _ in snapshots.snapshot_files(str(run))] == [2, 4, 6]
    assert sorted(os.listdir(str(run / 'rank_states'))) == sorted(
        'snapshot_iter_%d.rank%d.npz' % (it, r) for it in (2, 4, 6) for r in (0, 1))
    assert not os.path.exists(orphan) and not os.path.exists(leftover)
    assert snapshots.find_snapshot('auto', str(run)) == six


class _Comm(object):
    rank, size = 0, 1


# --- the run identity -----------------------------------------------------------------------

def test_the_parallelism_and_its_options_are_part_of_a_snapshot_s_identity():
    sync = snapshots.run_identity(resolve_script('detection', ['--iterations', '2']).settings)
    local = snapshots.run_identity(resolve_script(
        'detection', ['--iterations', '2', '--parallelism', 'local', '--average-every',
                      '3']).settings)
    assert sync['parallelism'] == 'sync' and 'average_every' not in sync
    assert local['parallelism'] == 'local' and local['average_every'] == 3
    assert local['average_optimizer_state'] is False
    json.dumps(local)  # stored as JSON in the snapshot


# --- --pretrained files ---------------------------------------------------------------------

def _classifier_npz(tmp_path):
    from chainer_yolo_dist.classification.darknet import Darknet19
    import chainer
    path = str(tmp_path / 'model.npz')
    chainer.serializers.save_npz(path, Darknet19(n_class=3, channels_scale=1 / 8))
    return path


def test_a_truncated_pretrained_npz_is_one_line_naming_it(tmp_path):
    from chainer_yolo_dist.classification.model_files import inspect_classifier_file
    from chainer_yolo_dist.detection.transfer import check_pretrained
    from chainer_yolo_dist.slowfast.models import trunk_prefix
    path = _cut(_classifier_npz(tmp_path))
    for check_file in (lambda: check_pretrained(path, 'yolov2'),
                       lambda: inspect_classifier_file(path), lambda: trunk_prefix(path)):
        with pytest.raises(ValueError) as e:
            check_file()
        message = _one_line(e)
        assert message.startswith(path + ': ') and 'truncated or corrupt' in message, message


def _darknet_file(path, values):
    """A Darknet weights file of ``values`` float32 values after a version 0.2.0 header
    (sparse: its zeros take no disk)."""
    with open(path, 'wb') as f:
        np.array([0, 2, 0], '<i4').tofile(f)
        np.array([0], '<i8').tofile(f)
        f.truncate(20 + 4 * values)
    return str(path)


@pytest.mark.parametrize('model,cfg', [('yolov2', 'darknet19_trunk_spec'),
                                       ('yolov3', 'darknet53_trunk_spec')])
def test_a_truncated_darknet_file_is_refused_before_the_data(tmp_path, model, cfg):
    import test_darknet_weights
    from chainer_yolo_dist.detection.transfer import check_pretrained
    # the trunk's size from the tests' own transcription of Darknet's cfg files
    need = sum(4 * n + n * c * k * k
               for _, n, k, c, _ in getattr(test_darknet_weights, cfg)('/extractor'))
    assert check_pretrained(_darknet_file(tmp_path / 'whole.conv', need), model) is None
    cut = _darknet_file(tmp_path / 'cut.conv', need - 1000)
    with pytest.raises(ValueError) as e:
        check_pretrained(cut, model)
    message = _one_line(e)
    assert message.startswith(cut + ': truncated Darknet weights') and '4000 bytes short' \
        in message, message


# --- end to end: the detection demo ---------------------------------------------------------

@pytest.fixture(scope='module')
def detection_run(tmp_path_factory):
    """Snapshots 2 and 4 of the tiny detector (one process)."""
    out = tmp_path_factory.mktemp('detection') / 'run'
    check(run_python(TINY + ['--iterations', '4', '--snapshot-interval', '2', '--loaderjob',
                             '0', '--out', str(out)], timeout=180))
    return out


def _error_line(proc):
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr and 'MPI_Abort' not in proc.stderr
    return lines[0]


@pytest.mark.slow  # a tiny training run, then five starts
def test_resume_forms_end_to_end(detection_run, tmp_path):
    run = tmp_path / 'run'
    shutil.copytree(str(detection_run), str(run))
    proc = check(run_python(TINY + ['--iterations', '6', '--loaderjob', '0', '--out', str(run),
                                    '--resume', str(run)], timeout=180))
    assert 'resumed from %s at iteration 4' % (run / 'snapshot_iter_4') in proc.stdout
    proc = check(run_python(TINY + ['--iterations', '8', '--loaderjob', '0', '--out', str(run),
                                    '--resume', 'auto'], timeout=180))
    assert 'resumed from %s at iteration 6' % (run / 'snapshot_iter_6') in proc.stdout
    assert json.loads((run / 'metrics.json').read_text())['iterations'] == 8
    fresh = tmp_path / 'fresh'  # auto where there is nothing to resume: from the beginning
    proc = check(run_python(TINY + ['--iterations', '2', '--loaderjob', '0', '--out',
                                    str(fresh), '--resume', 'auto'], timeout=180))
    assert 'starting from the beginning' in proc.stdout and 'resumed from' not in proc.stdout
    missing = str(tmp_path / 'nonexistent')
    line = _error_line(run_python(TINY + ['--iterations', '2', '--loaderjob', '0', '--out',
                                          str(tmp_path / 'x'), '--resume', missing],
                                  timeout=180))
    assert line == 'error: --resume %s: no such file or folder' % missing
    # a sync snapshot does not continue as local
    line = _error_line(run_python(TINY + ['--iterations', '6', '--loaderjob', '0', '--out',
                                          str(tmp_path / 'y'), '--parallelism', 'local',
                                          '--resume', str(detection_run / 'snapshot_iter_2')],
                                  timeout=180))
    assert 'parallelism sync (now local)' in line, line


@pytest.mark.slow  # a tiny training run, then a 2-rank start
def test_a_truncated_snapshot_is_one_line_from_one_rank(detection_run, tmp_path):
    cut = tmp_path / 'cut' / 'snapshot_iter_4'
    cut.parent.mkdir()
    shutil.copy(str(detection_run / 'snapshot_iter_4'), str(cut))
    _cut(str(cut))
    line = _error_line(run_mpi(2, TINY + ['--iterations', '6', '--loaderjob', '0', '--out',
                                          str(tmp_path / 'run'), '--resume', str(cut)],
                               timeout=180))
    assert line.startswith('error: --resume %s: cannot resume from it: truncated or corrupt'
                           % cut), line


# --- end to end: CycleGAN's snapshot sets and metrics ---------------------------------------

CYCLEGAN = ['scripts/train_cyclegan.py', '--insize', '32', '--n-train-images', '4',
            '--n-test-images', '8', '--fid-images', '8', '--n-samples', '2', '--ngf', '4',
            '--ndf', '4', '--n-blocks', '1', '--pool-size', '2', '--log-interval', '4',
            '--snapshot-interval', '2', '--seed', '3', '--no-progress']


def _arrays(path):
    with np.load(str(path)) as f:
        return {k: f[k] for k in f.files}


def _sets(run):
    """``{iteration: [ranks with a state file]}`` of the trainer snapshots in ``run``, and no
    other rank-state file there."""
    found = {it: [] for it, _ in snapshots.snapshot_files(str(run))}
    for name in os.listdir(str(run / 'rank_states')):
        it, rank = name[len('snapshot_iter_'):-len('.npz')].split('.rank')
        assert int(it) in found, name
        found[int(it)].append(int(rank))
    return {it: sorted(ranks) for it, ranks in found.items()}


@pytest.mark.slow  # four 2-rank CycleGAN runs
def test_cyclegan_sets_are_whole_and_a_resumed_run_reports_the_whole_run(tmp_path,
                                                                         extractor):
    args = CYCLEGAN + ['--fid-extractor', extractor]
    whole, run = tmp_path / 'whole', tmp_path / 'run'
    check(run_mpi(2, args + ['--iterations', '8', '--out', str(whole)], timeout=300))
    check(run_mpi(2, args + ['--iterations', '4', '--out', str(run)], timeout=300))
    states = run / 'rank_states'
    for it in (2, 4):  # every rank's state written before the trainer snapshot appears
        snapshot = os.path.getmtime(str(run / ('snapshot_iter_%d' % it)))
        assert all(os.path.getmtime(str(states / ('snapshot_iter_%d.rank%d.npz' % (it, r))))
                   <= snapshot for r in (0, 1))
    os.remove(str(states / 'snapshot_iter_4.rank1.npz'))  # the newest set made incomplete
    proc = check(run_mpi(2, args + ['--iterations', '6', '--out', str(run), '--resume',
                                    'auto'], timeout=300))
    assert 'resumed from %s at iteration 2' % (run / 'snapshot_iter_2') in proc.stdout
    # kept by iteration, whole: set 4 as rewritten after the resume from the older set, 6
    assert _sets(run) == {4: [0, 1], 6: [0, 1]}
    proc = check(run_mpi(2, args + ['--iterations', '8', '--out', str(run), '--resume',
                                    'auto'], timeout=300))
    assert 'resumed from %s at iteration 6' % (run / 'snapshot_iter_6') in proc.stdout
    assert _sets(run) == {6: [0, 1], 8: [0, 1]}
    a, b = _arrays(whole / 'model.npz'), _arrays(run / 'model.npz')
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    expected = json.loads((whole / 'metrics.json').read_text())
    got = json.loads((run / 'metrics.json').read_text())
    assert got['cycle_loss_first'] == expected['cycle_loss_first']
    assert got['cycle_loss_last'] == expected['cycle_loss_last']
