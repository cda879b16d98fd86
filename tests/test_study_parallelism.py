"""scripts/study_parallelism.py: the modes side by side; a tiny study run end to end."""
import csv
import json

import pytest

from conftest import check, run_python

from chainer_yolo_dist.analysis import study_parallelism as sp


def test_plan_runs_sync_on_virtual_ranks_and_the_others_on_real_ranks():
    runs = {r.name: r for r in sp.plan((1, 2, 4), max_ranks=2)}
    # One worker is the same update in every mode: only sync runs it.
    assert [n for n in runs if n.endswith('k1')] == ['sync-k1', 'sync-lars-k1']
    assert (runs['sync-k4'].processes, runs['sync-k4'].virtual_ranks) == (2, 2)
    assert runs['sync-lars-k4'].extra_args == ('--lars',)
    assert (runs['async-k4'].processes, runs['async-k4'].servers) == (5, 1)
    assert (runs['local-k4'].processes, runs['local-k4'].virtual_ranks) == (4, 1)
    assert runs['stale-k2'].how == '2 ranks' and runs['sync-k4'].how == '2 ranks x 2 virtual'
    with pytest.raises(ValueError, match='unknown'):
        sp.plan((2,), variants=('sync', 'hogwild'))
    with pytest.raises(ValueError, match='distinct positive'):
        sp.plan((2, 2))


def test_command_gives_each_mode_its_options(tmp_path):
    shared = sp.train_args(6, 2, 1, 1024, 256)
    sync, local = sp.plan((4,), variants=('sync', 'local'), max_ranks=2)
    cmd = sp.command(sync, shared, str(tmp_path), python='python', mpiexec='mpiexec')
    assert cmd[:3] == ['mpiexec', '-n', '2'] and '--profile' in cmd
    assert cmd[cmd.index('--virtual-ranks') + 1] == '2'
    cmd = sp.command(local, shared, str(tmp_path), python='python', mpiexec='mpiexec')
    assert cmd[:3] == ['mpiexec', '-n', '4'] and '--virtual-ranks' not in cmd
    assert cmd[cmd.index('--parallelism') + 1] == 'local'
    assert cmd[cmd.index('--eval-interval') + 1] == '1'


@pytest.mark.slow
def test_tiny_study_writes_every_output(tmp_path):
    """One mode of each way of reading its statistics (the profile's AllReduce and the
    computed bytes; the servers' files; the gathered per-rank stats): about 40 s idle."""
    out = tmp_path / 'study'
    proc = check(run_python([
        'scripts/study_parallelism.py', '--workers', '2', '--variants', 'sync', 'async',
        'stale', '--epochs', '2', '--warmup-epochs', '1', '--warmup-hold-epochs', '0.5',
        '--n-train-images', '128', '--n-test-images', '32', '--target', '0.3',
        '--out', str(out)], timeout=600))
    assert 'study: 3 runs' in proc.stdout
    record = json.loads((out / 'parallelism.json').read_text())
    assert [r['status'] for r in record['runs']] == ['finished'] * 3
    with open(out / 'parallelism.csv') as f:
        rows = {r['run']: r for r in csv.DictReader(f)}
    assert set(rows) == {'sync-k2', 'async-k2', 'stale-k2'}
    for name, row in rows.items():
        assert float(row['images_per_second']) > 0 and 0 <= float(row['final_top1']) <= 1
        assert float(row['bytes_per_worker']) > 0 and float(row['wait_max_s']) >= 0, name
    # 128 images over 2 workers of 32 for 2 epochs: 4 updates per worker, 8 gradients
    # applied by the server (each with its staleness), 4 late updates in stale.
    assert int(rows['async-k2']['updates']) == 8
    assert int(rows['stale-k2']['updates']) == 4
    assert float(rows['stale-k2']['staleness_mean']) == 1.0
    assert float(rows['sync-k2']['staleness_mean']) == 0.0
    md = (out / 'parallelism.md').read_text()
    assert '| async-k2 | 2 | 3 ranks (1 server + 2 workers) |' in md
    for name in ('parallelism_accuracy.png', 'parallelism_throughput.png',
                 'parallelism_staleness.png'):
        assert (out / name).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n', name
    for run in rows:
        assert (out / 'runs' / run / 'metrics.json').is_file()
        assert (out / 'logs' / (run + '.txt')).is_file()
    # The report alone redraws from the run directories.
    (out / 'parallelism.csv').unlink()
    check(run_python(['scripts/study_parallelism.py', '--report-only', str(out)], timeout=120))
    assert (out / 'parallelism.csv').is_file()
