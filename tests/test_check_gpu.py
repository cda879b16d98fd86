"""The GPU check (scripts/check_gpu.py) on a machine without a GPU: its table, its runner (a
PASS / FAIL / SKIP line per stage, a stage killed with everything it started at its budget, the
JSON summary written atomically), its judges, and the CPU paths of its workers."""
import json
import os
import sys
import time

import numpy as np
import pytest

from conftest import run_python

from chainer_yolo_dist.benchmarks import gpu_check, gpu_check_judges as judges
from chainer_yolo_dist.benchmarks import gpu_check_parity as parity
from chainer_yolo_dist.benchmarks import gpu_check_worker as worker

PY = sys.executable


def _python(code):
    """Command builder of a stage running ``python -c CODE WORK``."""
    return lambda ctx: [PY, '-c', code, ctx.work]


def _alive(pid):
    """Whether ``pid`` runs (a zombie waiting for a parent that never reaps it counts as
    ended)."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def _run(stages, tmp_path, gpus=1, **kwargs):
    lines = []
    records = gpu_check.run_stages(stages, str(tmp_path / 'work'), gpus,
                                   out=str(tmp_path / 'out'), log=lines.append, **kwargs)
    return records, lines


def test_dry_run_lists_every_stage_and_a_total_within_ten_minutes():
    proc = run_python(['scripts/check_gpu.py', '--dry-run'], timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for stage in gpu_check.STAGES:
        row = [line for line in lines if line.split()[:1] == [stage.name]]
        assert len(row) == 1, stage.name
        if stage.gpus == 1:
            assert '%.0f s' % stage.budget in row[0]
        else:
            assert 'SKIP' in row[0]
    one_gpu = gpu_check.total_budget(gpu_check.STAGES, 1)
    assert lines[-1].startswith('total budget with 1 GPU: %.0f s' % one_gpu)
    assert one_gpu <= gpu_check.DEVICE_COMMAND_SECONDS - 60  # time left to start and copy
    proc = run_python(['scripts/check_gpu.py', '--dry-run', '--gpus', '4', '--only',
                       'parity,multi_ranks'], timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert [line.split()[0] for line in proc.stdout.splitlines()[1:-1]] == [
        'parity', 'multi_ranks']
    parity, ranks = (s for s in gpu_check.STAGES if s.name in ('parity', 'multi_ranks'))
    assert 'total budget with 4 GPUs: %.0f s' % (parity.budget + ranks.budget) in proc.stdout


def test_without_cuda_the_check_says_so_in_one_line_and_exits_2():
    proc = run_python(['scripts/check_gpu.py', '--out', 'unused'], timeout=60)
    assert proc.returncode == 2
    assert len(proc.stdout.splitlines()) == 1
    assert proc.stdout.startswith('GPU check: no CUDA GPU here (')
    proc = run_python(['scripts/check_gpu.py', '--dry-run', '--only', 'nonsense'], timeout=60)
    assert proc.returncode == 2 and 'no stage \'nonsense\'' in proc.stderr


def test_runner_passes_fails_and_times_out_one_line_per_stage(tmp_path):
    grandchild = tmp_path / 'grandchild.pid'
    stages = [
        gpu_check.Stage('ok', 20, 'exits 0', _python('pass'), gpu_check.judge_exit),
        gpu_check.Stage('crash', 20, 'exits 3', _python('import sys; sys.exit(3)'),
                        gpu_check.judge_exit),
        gpu_check.Stage('hang', 1, 'sleeps past its budget',
                        _python('import time; time.sleep(5)'), gpu_check.judge_exit),
        # A hang below the stage's own process: the whole tree goes at the budget.
        gpu_check.Stage('hang_tree', 1, 'its child sleeps', _python(
            'import subprocess, sys, time\n'
            'p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])\n'
            'open(%r, "w").write(str(p.pid))\n'
            'time.sleep(60)' % str(grandchild)), gpu_check.judge_exit),
        gpu_check.Stage('multi', 20, 'needs 2 GPUs', _python('pass'), gpu_check.judge_exit,
                        gpus=2),
    ]
    start = time.time()
    records, lines = _run(stages, tmp_path)
    assert time.time() - start < 30
    assert [r['status'] for r in records] == ['PASS', 'FAIL', 'FAIL', 'FAIL', 'SKIP']
    assert 'exit status 3' in records[1]['summary']
    for record in records[2:4]:
        assert record['timed_out'] and 'timed out after 1 s' in record['summary']
        assert record['seconds'] < 1 + gpu_check_process_grace() + 2
    assert not _alive(int(grandchild.read_text()))
    assert 'needs 2 GPUs, 1 available' in records[4]['summary']
    assert len(lines) == len(stages)
    for i, (line, stage, record) in enumerate(zip(lines, stages, records), 1):
        assert line.startswith('[%d/%d] %-16s %s' % (i, len(stages), stage.name,
                                                     record['status']))
    assert gpu_check.exit_status(records) == 1
    assert gpu_check.exit_status(records[:1] + records[4:]) == 0


def gpu_check_process_grace():
    from chainer_yolo_dist.benchmarks.gpu_check_process import GRACE_SECONDS
    return GRACE_SECONDS


def test_summary_json_is_complete_and_written_atomically(tmp_path):
    stages = [gpu_check.Stage('ok', 20, 'exits 0', _python('print("hello")'),
                              gpu_check.judge_exit),
              gpu_check.Stage('crash', 20, 'exits 1', _python('raise SystemExit(1)'),
                              gpu_check.judge_exit)]
    records, _ = _run(stages, tmp_path)
    out = tmp_path / 'out'
    summary = json.loads((out / gpu_check.SUMMARY_NAME).read_text())
    assert summary['complete'] and summary['counts'] == {'PASS': 1, 'FAIL': 1, 'SKIP': 0}
    assert [(s['stage'], s['status']) for s in summary['stages']] == [('ok', 'PASS'),
                                                                      ('crash', 'FAIL')]
    for s in summary['stages']:
        assert set(s) >= {'stage', 'status', 'seconds', 'budget_seconds', 'summary', 'details'}
    assert (out / gpu_check.LOG_DIR_NAME / 'ok.log').read_text() == 'hello\n'
    assert not [p for p in out.rglob('*') if p.name.startswith('.tmp-')]


RESULT = ('import json, os, sys; w = sys.argv[1]\n'
          'json.dump(%r, open(os.path.join(w, "result.json"), "w"))\n'
          'sys.exit(%d)')


@pytest.mark.parametrize('result,status,verdict,words', [
    ({'checks': [{'name': 'a', 'ok': True, 'detail': ''}], 'summary': 'all good'}, 0,
     'PASS', 'all good'),
    ({'checks': [{'name': 'a', 'ok': True, 'detail': ''},
                 {'name': 'resume', 'ok': False, 'detail': 'max diff 0.5'}]}, 0,
     'FAIL', 'resume: max diff 0.5'),
    ({'checks': [], 'skip': 'async needs 2 ranks'}, 0, 'SKIP', 'async needs 2 ranks'),
    ({'checks': []}, 0, 'FAIL', 'made no check'),
    ({'checks': [{'name': 'a', 'ok': True, 'detail': ''}]}, 1, 'FAIL', 'exit status 1'),
])
def test_a_worker_result_judged(tmp_path, result, status, verdict, words):
    stage = gpu_check.Stage('worker', 20, 'writes a result', _python(RESULT % (result, status)))
    records, _ = _run([stage], tmp_path)
    assert records[0]['status'] == verdict
    assert words in records[0]['summary']


def test_a_timed_out_worker_reports_what_it_had_found(tmp_path):
    code = (RESULT % ({'checks': [{'name': 'first', 'ok': True, 'detail': ''}]}, 0)).replace(
        'sys.exit(0)', 'import time; time.sleep(30)')
    records, _ = _run([gpu_check.Stage('slow', 2, 'hangs after a check', _python(code))],
                      tmp_path)
    assert records[0]['status'] == 'FAIL'
    assert 'timed out after 2 s' in records[0]['summary']
    assert 'passed before: first' in records[0]['summary']


def test_stage_environment():
    env = gpu_check.stage_env('/w', 123.0, gpus=4, mpiexec='mpirun --x',
                              base={'PYTHONPATH': 'rel:/abs', 'OMP_NUM_THREADS': '7'})
    assert env['PYTHONPATH'].split(os.pathsep) == [gpu_check.REPO, os.path.abspath('rel'),
                                                   '/abs']
    assert env['OMP_NUM_THREADS'] == '7'
    assert env['CHAINER_YOLO_DIST_CHECK_MPI_BUFFERS'] == '1'
    assert env[worker.ENV_GPUS] == '4' and env[worker.ENV_MPIEXEC] == 'mpirun --x'
    assert float(env[worker.ENV_DEADLINE]) == 123.0
    assert worker.mpiexec_prefix('mpirun --allow-run-as-root') == ['mpirun',
                                                                   '--allow-run-as-root']
    assert not worker.is_open_mpi(worker.find_mpiexec())  # the venv's MPICH


def test_cpu_smoke_of_the_first_stages_through_the_runner(tmp_path):
    """The environment, parity (NumPy against NumPy) and persistents (mpiexec -n 2, naive,
    guard on) workers on the CPU: their code runs and their verdicts come through."""
    stages = gpu_check.select(gpu_check.STAGES, ['environment', 'parity', 'persistents'])
    records, _ = _run(stages, tmp_path, cpu_smoke=True)
    assert [r['status'] for r in records] == ['PASS'] * 3, [r['summary'] for r in records]
    cases = {c['name'] for c in records[1]['details']['checks']}
    assert {'yolov2_loss', 'yolov3_loss', 'cyclegan_losses', 'cyclegan_reflection_pad',
            'classification_loss', 'slowfast_conv3d_fast_conv1', 'slowfast_conv3d_pieces',
            'slowfast_roi_align', 'slowfast_head', 'slowfast_network'} <= cases
    assert 'exact mean' in records[2]['details']['checks'][0]['name']


def test_parity_compare_flags_what_differs():
    a = {'out/y': np.array([1.0, -2.0, 4.0], np.float32), 'grad/x': None}
    assert parity.compare(a, dict(a), 1e-4) == (0.0, [])
    worst, failures = parity.compare(a, {'out/y': a['out/y'] * (1 + 3e-4), 'grad/x': None},
                                     1e-4)
    assert failures and worst == pytest.approx(3e-4, rel=1e-2)
    assert parity.compare(a, {'out/y': a['out/y'] * (1 + 3e-5), 'grad/x': None}, 1e-4)[1] == []
    _, failures = parity.compare(a, {'out/y': np.array([1, np.nan, 4], np.float32),
                                     'grad/x': None}, 1e-4)
    assert failures == ['out/y: not finite']
    _, failures = parity.compare(a, {'out/y': a['out/y'], 'grad/x': np.ones(2)}, 1e-4)
    assert failures == ['grad/x: a gradient on one device only']


def test_loss_trend_needs_finite_values_and_a_falling_window():
    series = list(zip(range(5, 35, 5), [9.0, 8.0, 9.5, 7.0, 6.0, 5.0]))
    trend = judges.loss_trend(series, window=2)
    assert trend['fell'] and trend['first'] == 8.5 and trend['last'] == 5.5
    assert trend['first_iterations'] == [5, 10] and trend['last_iterations'] == [25, 30]
    assert not judges.loss_trend(series[::-1], 2)['fell']
    assert not judges.loss_trend(series[:3], 2)['fell']  # windows would overlap
    broken = judges.loss_trend(series + [(35, float('nan'))], 2)
    assert not broken['finite'] and not broken['fell']


def test_compare_npz(tmp_path):
    w = {'a/W': np.arange(6, dtype=np.float32).reshape(2, 3), 'a/N': np.array(3)}
    np.savez(tmp_path / 'x.npz', **w)
    np.savez(tmp_path / 'same.npz', **w)
    np.savez(tmp_path / 'close.npz', **dict(w, **{'a/W': w['a/W'] + 1e-4}))
    np.savez(tmp_path / 'far.npz', **dict(w, **{'a/W': w['a/W'] + 0.1}))
    np.savez(tmp_path / 'fewer.npz', **{'a/W': w['a/W']})
    same = judges.compare_npz(tmp_path / 'x.npz', tmp_path / 'same.npz', 1e-3)
    assert same['bitwise'] and same['within'] and same['max_abs'] == 0
    close = judges.compare_npz(tmp_path / 'x.npz', tmp_path / 'close.npz', 1e-3)
    assert not close['bitwise'] and close['within'] and close['worst'] == 'a/W'
    assert close['max_relative'] == pytest.approx(1e-4 / 5, rel=1e-2)
    assert not judges.compare_npz(tmp_path / 'x.npz', tmp_path / 'far.npz', 1e-3)['within']
    fewer = judges.compare_npz(tmp_path / 'x.npz', tmp_path / 'fewer.npz', 1e-3)
    assert not fewer['within'] and fewer['mismatched_keys'] == ['a/N']


def test_profile_against_timing_uses_the_quiet_updates_only():
    # Updates take 1 s; the logging after iterations 4 and 8 adds 5 s to the next interval.
    ends, t = [], 100.0
    for it in range(1, 11):
        t += 1.0 + (5.0 if it - 1 in (4, 8) else 0.0)
        ends.append([it, t, 0])
    profile = {'ranks': [[{'iteration': it, 'step': 0.95} for it in range(1, 11)]]}
    ratio = judges.profile_against_timing(profile, {'updates': ends},
                                          quiet=lambda it: it % 4 != 0)
    assert ratio['iterations'] == 6  # 3..10 less 5 and 9
    assert ratio['ratio'] == pytest.approx(0.95)
    noisy = judges.profile_against_timing(profile, {'updates': ends}, quiet=lambda it: True)
    assert noisy['ratio'] < 0.9


def test_make_carry_packs_what_the_device_lacks(tmp_path):
    from chainer_yolo_dist.benchmarks import gpu_check_carry as carry
    site = tmp_path / 'site'
    for name in ('chainer', 'chainer/__pycache__', 'chainerx', 'chainermn', 'chainercv',
                 'chainercv/utils/bbox', 'PIL', 'matplotlib/tests'):
        (site / name).mkdir(parents=True, exist_ok=True)
    (site / 'chainer' / '__init__.py').write_text('')
    (site / 'chainer' / '__pycache__' / 'x.pyc').write_text('')
    (site / 'chainercv/utils/bbox/_nms_gpu_post.cpython-312-x86_64-linux-gnu.so').write_text('')
    (site / 'chainer-7.8.1.dist-info').mkdir()
    (site / 'zz_chainer_yolo_dist_compat.pth').write_text(
        'import os; os.environ["CARRY_PTH_RAN"] = "1"\n')
    dest = tmp_path / 'venv' / 'carry'
    sizes = carry.make_carry(str(site), str(dest))
    assert 'six.py' in sizes['missing'] and 'chainer' not in sizes['missing']
    assert (dest / 'base' / 'chainer-7.8.1.dist-info').is_dir()
    assert not (dest / 'base' / 'chainer' / '__pycache__').exists()
    assert not (dest / 'plots' / 'matplotlib' / 'tests').exists()
    import tarfile
    with tarfile.open(sizes['archive']) as tar:
        assert 'carry/base/sitecustomize.py' in tar.getnames()
    # sitecustomize makes base a site directory: its .pth files run at start-up
    proc = run_python(['-c', 'import os; print(os.environ.get("CARRY_PTH_RAN"))'], timeout=60,
                      env={'PYTHONPATH': str(dest / 'base')})
    assert proc.stdout.strip() == '1', proc.stderr
    assert 'tarfile --filter data -e' in carry.run_command('.venv312/carry')
    with pytest.raises(ValueError, match='make setup-py312'):
        carry.make_carry(str(tmp_path / 'nothing'), str(tmp_path / 'c2'))


def test_a_worker_sub_run_is_ended_at_its_timeout(tmp_path):
    report = worker.Report('x', str(tmp_path))
    status, seconds, _ = worker.run_logged(
        report, 'slow', [PY, '-c', 'import time; time.sleep(30)'], str(tmp_path), timeout=1)
    assert status is None and seconds < 10
    assert 'did not finish' in worker.outcome(status, [])
    done = worker.run_parallel(report, {'ok': [PY, '-c', 'print("done")'],
                                        'bad': [PY, '-c', 'raise SystemExit(4)']},
                               str(tmp_path))
    assert done['ok'][0] == 0 and done['ok'][2] == ['done'] and done['bad'][0] == 4
    assert worker.read_result(str(tmp_path))['facts']['ok_seconds'] >= 0
