"""Every option of every script, given a value it cannot take, ends the script with one
``error:`` line naming the option or the value, status 2, no traceback, and nothing left in
the working folder.

The options are read from each script's own parser, so an option added later is swept too:
its invalid values follow from its argparse type (:class:`chainer_yolo_dist.core.numbers.
Bounded` knows its bounds), its choices, or the tables below; an option that has none must be
exempted here with the reason. The sweep runs in-process up to where the script would start
MPI (the parse, ``core.resolve.resolve``, and rank 0's data loading), so it costs seconds; a
few ``mpiexec`` launches check that a mistake is printed once, by rank 0, and leaves nothing.
"""
import argparse
import contextlib
import functools
import importlib
import io
import os
from unittest import mock

import pytest

from chainer_yolo_dist.core import cli, mpi, resolve, run
from conftest import SCRIPTS, load_script, run_mpi, run_python

TRAINING = {script: system for system, script in SCRIPTS.items()}
EVALUATION = ('eval_yolo', 'eval_darknet')
REPORTS = ('simulate_scaling', 'study', 'study_parallelism')
#: What a script needs besides the swept option to parse at all.
PREFIX = {'eval_yolo': ['model.npz'], 'eval_darknet': ['model.npz'],
          'simulate_scaling': ['--preset', 'yolov2_voc_2018']}

#: Invalid values of the argparse types that are functions: type name -> values.
BY_TYPE = {'_dataset': ['no_such_dataset'], '_fraction': ['0', '-1', 'x'],
           '_signals': ['SIGNOPE'], 'positive_int_list': ['0', 'x', '']}

#: Invalid uses of the options that take a name or a path: dest -> argv lists ({tmp}: the
#: empty working folder, {file}: a file in it that is no model, data or folder).
BY_DEST = {
    'preset': [['--preset', 'no_such_preset']],
    'model': [['--model', 'no_such_model']],
    'dataset': [['--dataset', 'no_such_dataset']],
    'lr_rule': [['--lr-rule', 'no_such_rule']],
    'decay': [['--decay', 'no_such_decay']],
    'communicator': [['--communicator', 'no_such_communicator'],
                     ['--communicator', 'pure_nccl']],  # needs a GPU, and the sweep has none
    'resume': [['--resume', '{tmp}/no_such_run'], ['--resume', 'auto']],  # auto needs --out
    'out': [['--out', '{file}'], ['--out', '{file}/run']],
    'pretrained': [['--pretrained', '{tmp}/no_such.npz'], ['--pretrained', '{file}']],
    'fid_weights': [['--fid-weights', '{tmp}/no_such.npz'], ['--fid-weights', '{file}']],
    'fid_extractor': [['--fid-extractor', '{file}']],  # an absent one is trained there
    'snapshot': [['{tmp}/no_such_run/model.npz'], ['{file}']],
    'models': [['{tmp}/no_such_run/model.npz'], ['{file}']],
}
#: The same, for one script: (script, dest) -> argv lists.
BY_SCRIPT_DEST = {
    ('train_yolo', 'data_dir'): [['--dataset', 'voc0712', '--data-dir', '{tmp}/nope']],
    ('train_yolo', 'train_split'): [['--dataset', 'vocformat', '--class-names', 'a',
                                     '--data-dir', '{tmp}', '--train-split', 'nope']],
    ('train_yolo', 'test_split'): [['--dataset', 'vocformat', '--class-names', 'a',
                                    '--data-dir', '{tmp}', '--test-split', 'nope']],
    ('train_darknet', 'data_dir'): [['--dataset', 'imagenet', '--data-dir', '{tmp}/nope']],
    ('train_darknet', 'train_list'): [['--dataset', 'imagenet', '--data-dir', '{tmp}',
                                       '--train-list', '{tmp}/nope.txt']],
    ('train_darknet', 'val_list'): [['--dataset', 'imagenet', '--data-dir', '{tmp}',
                                     '--val-list', '{tmp}/nope.txt']],
    # (pure_nccl on a CPU node: refused once the file is read; the sweep's file is absent)
    ('eval_yolo', 'communicator'): [['--communicator', 'no_such_communicator']],
    ('train_slowfast', 'data_dir'): [['--dataset', 'ava', '--data-dir', '{tmp}/nope']],
    ('train_cyclegan', 'dir_a'): [['--dataset', 'folders', '--dir-a', '{tmp}/nope',
                                   '--dir-b', '{tmp}/nope']],
    ('train_cyclegan', 'dir_b'): [['--dataset', 'folders', '--dir-a', '{tmp}',
                                   '--dir-b', '{tmp}/nope']],
    ('train_cyclegan', 'test_dir_a'): [['--dataset', 'folders', '--dir-a', '{tmp}',
                                        '--dir-b', '{tmp}', '--test-dir-a', '{tmp}/nope']],
    ('train_cyclegan', 'test_dir_b'): [['--dataset', 'folders', '--dir-a', '{tmp}',
                                        '--dir-b', '{tmp}', '--test-dir-b', '{tmp}/nope']],
}
#: Options that contradict another one: script -> argv lists.
CONTRADICTIONS = {
    'train_yolo': [['--multiscale', '320', '608', '10', '--no-multiscale'],
                   ['--object-scales', '0.5', '0.1'], ['--multiscale', '608', '320', '10'],
                   ['--pretrained', '{file}', '--from-scratch'],
                   ['--double-buffering', '--virtual-ranks', '2'],
                   ['--parallelism', 'local', '--resume', 'auto'],
                   ['--dataset', 'vocformat']],  # needs --class-names
    'train_darknet': [['--parallelism', 'sync', '--average-every', '2'],
                      ['--parallelism', 'local', '--push-every', '2'],
                      ['--parallelism', 'async', '--servers', '2'],  # 2 processes: no worker
                      ['--parallelism', 'stale', '--virtual-ranks', '2']],
    'train_slowfast': [['--clip-frames', '6']],  # not a multiple of the Slow pathway's 4
    'train_cyclegan': [['--insize', '30']],
}
#: Options with no invalid value, and why (script or '*' for every script, dest).
EXEMPT = {
    ('*', 'help'): 'prints the help',
    ('*', 'class_names'): 'any names are classes; a box of another class is a bad sample '
                          '(tests/test_datasets_voc.py)',
    ('train_cyclegan', 'fid_extractor'): None,  # swept by BY_DEST ({file})
    ('eval_yolo', 'config'): 'read by the evaluation, which needs MPI (tests/test_models.py)',
    ('eval_yolo', 'data_dir'): 'read by the evaluation, which needs MPI',
    ('eval_yolo', 'test_split'): 'read by the evaluation, which needs MPI',
    ('eval_yolo', 'model'): 'a config.json beside the file names it; checked when built',
    ('eval_yolo', 'dataset'): 'read by the evaluation, which needs MPI',
    ('eval_yolo', 'out'): 'written after the evaluation',
    ('eval_darknet', 'config'): 'read after the models (tests/test_eval_darknet.py)',
    ('eval_darknet', 'data_dir'): 'read after the models (tests/test_eval_darknet.py)',
    ('eval_darknet', 'val_list'): 'read after the models (tests/test_eval_darknet.py)',
    ('eval_darknet', 'out'): 'written after the evaluation',
    ('train_slowfast', 'eval_boxes'): 'a CSV read with AVA\'s own files, after them '
                                      '(tests/test_slowfast_ava.py)',
    ('simulate_scaling', 'calibrate'): 'run folders read by the planner',
    ('study', 'preset'): 'the study\'s runs refuse it (one train_yolo.py per run)',
    ('study', 'out'): 'a study folder, made or reused (tests/test_study.py)',
    ('study', 'report_only'): 'an existing study folder (tests/test_study.py)',
    ('study_parallelism', 'out'): 'a study folder, made or reused',
    ('study_parallelism', 'report_only'): 'an existing study folder',
}
#: Argument groups the studies pass on to their runs unread.
PASSED_ON = ('train_args',)


class _Parsed(Exception):
    pass


@functools.lru_cache(maxsize=None)
def parser_of(name):
    """``(module, parser)`` of ``scripts/NAME.py``: the parser its ``parse_args`` (or ``main``)
    builds, captured where it would parse."""
    module = load_script(name)
    seen = []

    def capture(self, args=None, namespace=None):
        seen.append(self)
        raise _Parsed

    with mock.patch.object(argparse.ArgumentParser, 'parse_args', capture):
        with contextlib.suppress(_Parsed):
            (getattr(module, 'parse_args', None) or module.main)([])
    return module, seen[0]


def invalid_values(script, action):
    """argv lists that give ``action`` a value it cannot take, or None when it has none."""
    if (script, action.dest) in BY_SCRIPT_DEST:
        return BY_SCRIPT_DEST[script, action.dest]
    if action.dest in BY_DEST:
        return BY_DEST[action.dest]
    n = action.nargs if isinstance(action.nargs, int) else 1
    values = None
    if action.choices is not None:
        values = ['no_such_choice']
    elif isinstance(action.type, cli.Bounded):
        values = bounded_invalid(action.type)
    elif action.type is int:
        values = ['x', '1.5']
    elif action.type is float:
        values = ['x', 'nan']
    elif getattr(action.type, '__name__', None) in BY_TYPE:
        values = BY_TYPE[action.type.__name__]
    if values is None:
        return None
    flag = action.option_strings[:1]
    return [flag + [value] * n for value in values]


def bounded_invalid(t):
    step = 1 if t.kind is int else 0.5
    values = ['x'] + (['1.5'] if t.kind is int else ['nan', 'inf'])
    if t.low is not None:
        values.append('%g' % (t.low if t.low_open else t.low - step))
    if t.high is not None:
        values.append('%g' % (t.high if t.high_open else t.high + step))
    return values


def _cases():
    cases, unswept = [], []
    for script in sorted(TRAINING) + list(EVALUATION) + list(REPORTS):
        _, parser = parser_of(script)
        for action in parser._actions:
            if action.nargs == 0 or action.dest in PASSED_ON:
                continue  # a flag: its mistakes are contradictions (CONTRADICTIONS)
            if (script, action.dest) in EXEMPT or ('*', action.dest) in EXEMPT:
                if EXEMPT.get((script, action.dest), EXEMPT.get(('*', action.dest))):
                    continue
            values = invalid_values(script, action)
            if values is None:
                unswept.append('%s %s' % (script, action.dest))
                continue
            cases += [(script, argv) for argv in values]
        cases += [(script, argv) for argv in CONTRADICTIONS.get(script, ())]
    return cases, unswept


CASES, UNSWEPT = _cases()


def test_every_option_of_every_script_is_swept_or_exempted_with_a_reason():
    assert not UNSWEPT, ('options with no invalid value: give them a bounded type, or add '
                         'them to BY_DEST / BY_SCRIPT_DEST, or to EXEMPT with the reason: %s'
                         % ', '.join(UNSWEPT))
    assert len(CASES) > 300  # every script's options, not a few


def refusal(script, argv):
    """The message ``script ARGV`` is refused with before any process would communicate
    (parse, resolution, rank 0's data), as ``(status, text)``; None when it is accepted."""
    module, _ = parser_of(script)
    if argv[0].startswith('-'):  # else the case gives the script's own positional
        argv = PREFIX.get(script, []) + argv
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = module.parse_args(argv) if hasattr(module, 'parse_args') else (
                parse_report(script, argv))
    except SystemExit as e:
        return e.code, err.getvalue()
    if script in REPORTS:
        return None
    try:
        if script in TRAINING:
            system = importlib.import_module('chainer_yolo_dist.%s.recipe'
                                             % TRAINING[script]).SYSTEM
            plan = resolve.resolve(system, dict(vars(args), out_parent='runs'), 2)
            system.load_data(plan.request)  # rank 0's, before training
        elif script == 'eval_yolo':
            module.evaluate(args)  # refuses a file before it would start MPI
        else:
            module.evaluate(args)
    except (mpi.SetupError,) + run.SETUP_ERRORS as e:
        return 2, 'error: %s\n' % run._message(e)
    return None


def parse_report(script, argv):
    module, parser = parser_of(script)
    args = parser.parse_args(argv)
    if hasattr(module, '_check'):
        module._check(parser, args)
    return args


@pytest.mark.parametrize('script, argv', CASES,
                         ids=['%s %s' % (s, ' '.join(a)) for s, a in CASES])
def test_an_invalid_value_is_one_error_line_with_status_2_and_leaves_nothing(
        script, argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'afile').write_text('no model, no data, no folder\n')
    argv = [a.replace('{tmp}', str(tmp_path)).replace('{file}', str(tmp_path / 'afile'))
            for a in argv]
    outcome = refusal(script, argv)
    assert outcome is not None, '%s %s was accepted' % (script, ' '.join(argv))
    status, text = outcome
    lines = text.strip().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith('error: '), text
    assert 'Traceback' not in text and 'Errno' not in text, text
    named = ([a for a in argv if a.startswith('--')]
             + [os.path.basename(a.rstrip('/')) for a in argv])
    assert any(word in lines[0] for word in named if word), (
        'the message names neither the option nor the value: %s' % lines[0])
    assert sorted(os.listdir(tmp_path)) == ['afile']


@pytest.mark.parametrize('argv', [
    ['scripts/train_slowfast.py', '--dropout', '1.5'],  # refused while parsing
    ['scripts/train_yolo.py', '--dataset', 'voc0712', '--data-dir', 'nope'],  # by rank 0's data
])
def test_under_mpiexec_a_mistake_is_printed_once_and_leaves_nothing(argv, tmp_path):
    proc = run_mpi(2, [os.path.join(os.path.dirname(os.path.dirname(__file__)), argv[0])]
                   + argv[1:], timeout=120, cwd=str(tmp_path))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith('error: '), (
        proc.stderr[-3000:])
    assert os.listdir(tmp_path) == []  # no runs/<preset>-<time>/, no .lock, no error.txt


def test_eval_yolo_says_what_a_file_of_another_script_is(tmp_path):
    import chainer
    from chainer_yolo_dist.classification.models import build_classifier
    from chainer_yolo_dist.slowfast.models import build_detector
    classifier, slowfast = tmp_path / 'classifier.npz', tmp_path / 'slowfast.npz'
    chainer.serializers.save_npz(str(classifier), build_classifier('darknet19', 4, 1 / 8))
    chainer.serializers.save_npz(str(slowfast), build_detector('slow_narrow', 3))
    for path, message in ((classifier, 'this is a classifier, not a detector: evaluate it '
                           'with scripts/eval_darknet.py'),
                          (slowfast, 'this is a SlowFast model, not a detector'),
                          (tmp_path / 'nope' / 'model.npz', 'model.npz: no such file')):
        status, text = refusal('eval_yolo', [str(path)])
        assert status == 2 and message in text, text


def test_eval_yolo_names_a_missing_file_before_asking_for_options(tmp_path):
    proc = run_python(['scripts/eval_yolo.py', str(tmp_path / 'runs/nope/model.npz')],
                      timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        'error: %s: no such file' % (tmp_path / 'runs/nope/model.npz')]


def _bounds():
    cases = []
    for script in sorted(TRAINING) + list(EVALUATION) + list(REPORTS):
        _, parser = parser_of(script)
        for action in parser._actions:
            t = action.type
            if isinstance(t, cli.Bounded):
                n = action.nargs if isinstance(action.nargs, int) else 1
                cases += [(script, [action.option_strings[0]] + ['%r' % bound] * n)
                          for bound, is_open in ((t.low, t.low_open), (t.high, t.high_open))
                          if bound is not None and not is_open]
    return cases


@pytest.mark.parametrize('script, argv', _bounds(), ids=lambda v: str(v))
def test_a_bound_that_is_part_of_the_range_parses(script, argv):
    """The sweep's other side: 0 where zero means off, a momentum of 0, a seed of 2**32 - 1."""
    module, parser = parser_of(script)
    args = parser.parse_args(PREFIX.get(script, []) + argv)
    dest = next(a.dest for a in parser._actions if argv[0] in a.option_strings)
    value = getattr(args, dest)
    assert (value[0] if isinstance(value, list) else value) == float(argv[1])
