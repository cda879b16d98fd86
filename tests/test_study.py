"""The scaling study (scripts/study.py): its plan, its table, the generalisation check and the
speed-ups on fixture run directories, and a tiny study end to end under mpiexec."""
import csv
import io
import json
import os

import pytest

from chainer_yolo_dist.analysis import runs as runs_lib
from chainer_yolo_dist.analysis import study, study_report
from conftest import check, run_python
from test_compare import make_run


# ---- the plan ------------------------------------------------------------------------------

def test_plan_runs_each_k_on_at_most_max_ranks_then_the_ablations_at_the_largest_k():
    runs = study.plan([8, 1, 2, 4, 16, 32], max_ranks=2)
    assert [r.name for r in runs] == ['k01', 'k02', 'k04', 'k08', 'k16', 'k32',
                                      'k32-no-warmup', 'k32-sqrt']
    assert [(r.workers, r.ranks, r.virtual_ranks) for r in runs[:6]] == [
        (1, 1, 1), (2, 2, 1), (4, 2, 2), (8, 2, 4), (16, 2, 8), (32, 2, 16)]
    assert runs[6].extra_args == ('--warmup-epochs', '0', '--warmup-hold-epochs', '0')
    assert runs[7].extra_args == ('--lr-rule', 'sqrt_k_eta')
    assert {r.variant for r in runs[:6]} == {study.MAIN}


def test_real_ranks_divide_k():
    assert study.real_ranks(3, 2) == 1      # 3 workers cannot be split over 2 ranks
    assert study.real_ranks(6, 4) == 3
    assert study.real_ranks(32, 2) == 2
    assert study.real_ranks(1, 8) == 1


@pytest.mark.parametrize('workers, match', [([2, 4], 'include 1'), ([1, 1], 'distinct'),
                                            ([0, 1], 'positive'), ([], 'positive')])
def test_plan_refuses_bad_workers(workers, match):
    with pytest.raises(ValueError, match=match):
        study.plan(workers)


def test_the_default_study_spans_the_papers_batch_shares():
    from chainer_yolo_dist.core import presets
    shares = [presets.load(study.DEFAULT_PRESET, k, n_train=study.DEFAULT_N_TRAIN)
              .batch_fraction for k in study.DEFAULT_WORKERS]
    assert shares[0] == pytest.approx(0.008) and shares[-1] == pytest.approx(0.256)
    assert min(shares) < 0.07 < 0.09 < max(shares)


def test_log_interval_gives_about_ten_entries_an_epoch():
    # 1,000 images, n = 8: 125 iterations an epoch at k = 1, 4 at k = 32.
    assert study.log_interval('synthetic_demo', 1, 1000) == 12
    assert study.log_interval('synthetic_demo', 32, 1000) == 1


def test_command_runs_k_workers_as_ranks_times_virtual_ranks():
    run = study.plan([1, 8], max_ranks=2)[1]
    cmd = study.command(run, ['--epochs', '3'], '/s', 5, python='/v/bin/python')
    assert cmd[:5] == ['/v/bin/mpiexec', '-n', '2', '/v/bin/python', 'scripts/train_yolo.py']
    assert cmd[cmd.index('--virtual-ranks') + 1] == '4'
    assert cmd[cmd.index('--out') + 1] == '/s/runs/k8'
    assert cmd[-2:] == ['--epochs', '3']


def test_a_diverged_run_is_recognised_with_its_iteration(tmp_path):
    run_dir = tmp_path / 'k32'
    run_dir.mkdir()
    (run_dir / 'error.txt.rank1').write_text(
        'error: rank 1: NonFiniteLossError: non-finite loss nan at iteration 17 (computed on '
        'the weights after update 16); training stopped before update 17, no file holds '
        'non-finite weights\n')
    log = tmp_path / 'k32.txt'
    log.write_text('...\n')
    assert study.divergence(str(run_dir)) == 17
    assert study.outcome(str(run_dir), 1, str(log)) == ('diverged', 17)
    # Another failure, a timeout and a finished run.
    assert study.outcome(str(tmp_path / 'none'), 1, str(log)) == ('failed', None)
    assert study.outcome(str(tmp_path / 'none'), None, str(log)) == ('timeout', None)
    (run_dir / 'metrics.json').write_text('{}')
    assert study.outcome(str(run_dir), 0, str(log)) == ('finished', None)


def test_prepare_out_refuses_a_used_directory_unless_told_to_overwrite(tmp_path):
    (tmp_path / 'old.txt').write_text('x')
    with pytest.raises(ValueError, match='--overwrite'):
        study.prepare_out(str(tmp_path))
    study.prepare_out(str(tmp_path), overwrite=True)
    assert os.listdir(tmp_path) == []


# ---- the table and the generalisation check on fixture run directories --------------------

def _entry(name, k, ranks, variant=study.MAIN, status='finished', diverged_at=None):
    return {'name': name, 'workers': k, 'ranks': ranks, 'virtual_ranks': k // ranks,
            'variant': variant, 'status': status, 'diverged_at': diverged_at}


def _fixture_run(root, name, k, **kw):
    """test_compare's run directory (loss 2 / (1 + epoch / k ** 0.25), 4 epochs of 10
    iterations, logged every 5) with the fields a study's runs record."""
    path = make_run(root, name, k, preset='synthetic_demo', **kw)
    with open(os.path.join(path, 'config.json')) as f:
        config = json.load(f)
    config['preset'].update(n_train=1000, batch_fraction=16 * k / 1000.0)
    with open(os.path.join(path, 'config.json'), 'w') as f:
        json.dump(config, f)
    return runs_lib.load_run(path)


def test_table_rows_from_run_directories(tmp_path):
    base = _fixture_run(tmp_path, 'k1', 1, metrics={'map': 0.71})
    four = _fixture_run(tmp_path, 'k4', 4, metrics={'map': 0.5}, seconds_per_epoch=5.0)
    broken = _fixture_run(tmp_path, 'k4-no-warmup', 4)  # no metrics.json: it diverged
    pairs = [(_entry('k1', 1, 1), base), (_entry('k4', 4, 2), four),
             (_entry('k4-no-warmup', 4, 2, 'without warmup', 'diverged', 31), broken),
             (_entry('k4-sqrt', 4, 2, 'square-root rule', 'failed'), None)]
    rows = study_report.table_rows(pairs)
    one, k4, diverged, failed = rows
    assert (one['workers'], one['global_batch'], one['batch_share_percent']) == (1, 16, 1.6)
    assert one['map_percent'] == pytest.approx(71.0)
    # The last epoch is iterations 31-40: entries at 35 and 40, epochs 3.5 and 4.
    assert one['last_epoch_loss'] == pytest.approx((2 / 4.5 + 2 / 5) / 2)
    assert k4['last_epoch_loss'] == pytest.approx((2 / (1 + 3.5 / 4 ** .25)
                                                   + 2 / (1 + 4 / 4 ** .25)) / 2)
    assert (k4['ranks'], k4['virtual_ranks'], k4['peak_lr']) == (2, 2, pytest.approx(4e-4))
    assert k4['train_seconds'] == pytest.approx(20.0)
    # A diverged run keeps what it logged; its throughput comes from the log.
    assert (diverged['status'], diverged['diverged_at_iteration']) == ('diverged', 31)
    assert diverged['map_percent'] is None
    assert diverged['train_seconds'] == pytest.approx(40.0)
    assert diverged['images_per_second'] == pytest.approx(40 * 64 / 40.0)
    assert (failed['status'], failed['global_batch'], failed['map_percent']) == ('failed',
                                                                                 None, None)
    parsed = list(csv.DictReader(io.StringIO(study_report.to_csv(rows))))
    assert [r['run'] for r in parsed] == ['k1', 'k4', 'k4-no-warmup', 'k4-sqrt']
    assert parsed[2]['diverged_at_iteration'] == '31' and parsed[1]['diverged_at_iteration'] == ''
    md = study_report.to_markdown(rows).splitlines()
    assert len(md) == 2 + 4 and '| k4 | linear rule, warmup | 4 | 2 x 2 | 64 | 6.4% |' in md[3]


def _set_losses(run_path, losses):
    """Rewrites a fixture's log with ``losses`` at iterations 5, 10, ... (2 a epoch)."""
    log = [{'epoch': (i * 5) // 10, 'iteration': i * 5, 'main/loss': v,
            'elapsed_time': float(i)} for i, v in enumerate(losses, 1)]
    with open(os.path.join(run_path, 'log'), 'w') as f:
        json.dump(log, f)
    return runs_lib.load_run(run_path)


def test_crossings_are_located_between_bin_centres(tmp_path):
    base = _set_losses(make_run(tmp_path, 'a', 1), [4, 3, 2, 1.0])
    # Above, above, below, below: one crossing, between the centres of bins 1 and 2 (epochs
    # 0.75 and 1.25), where the differences are +1 and -1, so at epoch 1.0.
    run = _set_losses(make_run(tmp_path, 'b', 4), [5, 4, 1, 0.5])
    result = study_report.crossings(base, run, bins_per_epoch=2)
    assert result['epochs'] == pytest.approx([1.0])
    assert (result['compared'], result['above'], result['to_epoch']) == (4, 0.5, 2.0)
    assert study_report.describe_crossings(result) == (
        'crosses once, at epoch 1.0; above the 1-worker loss in 50% of epochs 0 to 2')


def test_a_curve_that_never_crosses_is_said_to_stay_above(tmp_path):
    base = _set_losses(make_run(tmp_path, 'a', 1), [4, 3, 2, 1.0])
    run = _set_losses(make_run(tmp_path, 'b', 32), [4.5, 3.5, 2.5, 1.5, 1.2, 1.1])
    result = study_report.crossings(base, run, bins_per_epoch=2)
    assert result['epochs'] == [] and result['above'] == 1.0
    text = study_report.describe_crossings(result)
    assert text == ('never crosses: the k-worker loss stays above the 1-worker loss over '
                    'epochs 0 to 2')


def test_crossings_repeat_and_ignore_ties(tmp_path):
    base = _set_losses(make_run(tmp_path, 'a', 1), [2, 2, 2, 2, 2, 2])
    run = _set_losses(make_run(tmp_path, 'b', 2), [3, 2, 1, 3, 3, 1])
    result = study_report.crossings(base, run, bins_per_epoch=2)
    # +1, 0 (ignored), -1, +1, +1, -1: crossings between bins 0 and 2, 2 and 3, 4 and 5.
    assert result['epochs'] == pytest.approx([0.75, 1.5, 2.5])
    assert study_report.describe_crossings(result).startswith(
        'crosses 3 times, at epochs 0.8, 1.5, 2.5 (first 0.8, last 2.5)')


def test_default_steps_fall_at_70_and_90_percent():
    assert study.default_steps(study.DEFAULT_EPOCHS) == study.DEFAULT_STEPS == (14, 18)
    assert study.default_steps(10) == (7, 9)


def test_speedups_against_the_one_worker_run_beside_the_model(tmp_path):
    base = _fixture_run(tmp_path, 'k1', 1, metrics={'map': 0.7})
    two = _fixture_run(tmp_path, 'k2', 2, metrics={'map': 0.7})
    for run, ips in ((base, 30.0), (two, 45.0)):
        run.metrics['images_per_second'] = ips
    two.recipe.update(model='yolov3_small', n_class=4)
    base.recipe.update(model='yolov3_small', n_class=4)
    pairs = [(_entry('k1', 1, 1), base), (_entry('k2', 2, 2), two),
             (_entry('k2-sqrt', 2, 2, 'square-root rule'), two)]
    rows, notes = study_report.speedup_rows(pairs, link_bandwidth=1e9)
    assert [r['run'] for r in rows] == ['k1', 'k2']       # the main series only
    assert rows[1]['speedup'] == pytest.approx(1.5)
    assert rows[1]['efficiency'] == pytest.approx(0.75)
    # The model: one rank moves 16 images in 16 / 30 s, then a ring AllReduce over 2 ranks
    # of the gradients (1 x their bytes over the link).
    from chainer_yolo_dist.analysis import scaling
    grad = 4 * scaling.model_facts('yolov3_small', 4)[0]
    expected = 2 * 16 / (16 / 30.0 + grad / 1e9)
    assert rows[1]['predicted_images_per_second'] == pytest.approx(expected)
    assert rows[0]['predicted_speedup'] == pytest.approx(1.0)
    assert '1 GB/s (given)' in notes[0]


def test_the_benchmark_gives_the_allreduce_bandwidth():
    bandwidth = study_report.bench_link_bandwidth()
    assert bandwidth is not None and 1e8 < bandwidth < 1e11


# ---- end to end ----------------------------------------------------------------------------

TINY_TRAIN = ['--n-test-images', '4', '--image-size', '64', '--insize', '64', '--no-multiscale',
              '--batchsize', '2', '--loaderjob', '0', '--eval-batchsize', '4']


@pytest.mark.slow
def test_a_tiny_study_writes_every_output(tmp_path):
    out = tmp_path / 'study'
    proc = check(run_python(['scripts/study.py', '--workers', '1,2', '--epochs', '2',
                             '--steps', '1', '--n-train-images', '16', '--run-timeout', '150',
                             '--out', str(out), '--'] + TINY_TRAIN, timeout=600))
    names = ['k1', 'k2', 'k2-no-warmup', 'k2-sqrt']
    for name in ('study.json', 'study.csv', 'study.md', 'study_loss.png', 'study_map.png',
                 'study_speedup.png'):
        assert (out / name).stat().st_size > 0, name
    for name in names:
        for f in ('config.json', 'log', 'metrics.json', 'model.npz'):
            assert (out / 'runs' / name / f).stat().st_size > 0, (name, f)
        assert not list((out / 'runs' / name).glob('snapshot_iter_*'))
        assert (out / 'logs' / (name + '.txt')).stat().st_size > 0
    rows = list(csv.DictReader(open(out / 'study.csv')))
    assert [r['run'] for r in rows] == names
    assert [r['variant'] for r in rows] == [study.MAIN, study.MAIN, 'without warmup',
                                            'square-root rule']
    assert [(r['workers'], r['ranks'], r['virtual_ranks'], r['global_batch'])
            for r in rows] == [('1', '1', '1', '2'), ('2', '2', '1', '4'),
                               ('2', '2', '1', '4'), ('2', '2', '1', '4')]
    assert [float(r['batch_share_percent']) for r in rows] == [12.5, 25.0, 25.0, 25.0]
    assert [float(r['peak_lr']) for r in rows] == pytest.approx(
        [0.0025, 0.005, 0.005, 0.0025 * 2 ** 0.5])
    for r in rows:
        assert r['status'] == 'finished' and r['diverged_at_iteration'] == ''
        assert 0 <= float(r['map_percent']) <= 100 and float(r['last_epoch_loss']) > 0
        assert float(r['images_per_second']) > 0
    # Same images for every run: 16 per epoch, 2 epochs.
    record = json.loads((out / 'study.json').read_text())
    its = [json.loads((out / 'runs' / n / 'metrics.json').read_text())['iterations']
           for n in names]
    assert its == [16, 8, 8, 8]
    no_warmup = json.loads((out / 'runs' / 'k2-no-warmup' / 'log').read_text())
    assert no_warmup[0]['lr'] == pytest.approx(0.005)      # the peak from the first update
    assert record['runs'][0]['command'][2] == '1'          # mpiexec -n 1 for k = 1
    md = (out / 'study.md').read_text()
    assert 'Generalisation check' in md and md.count('- k2') == 3
    assert '| k2 | 2 | 2 | 1 |' in md                     # the speed-up table
    assert 'study: 4 runs' in proc.stdout

    # The run directories are ordinary runs: compare_map.py reads them unchanged.
    check(run_python(['scripts/compare_map.py', str(out / 'runs'), '--out',
                      str(tmp_path / 'cmp')], timeout=120))
