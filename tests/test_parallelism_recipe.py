"""``--parallelism`` on train_darknet.py: every mode trains the synthetic classification demo
above chance, and records what its communication did."""
import json

import pytest

from conftest import check, run_mpi

pytestmark = pytest.mark.slow


@pytest.mark.parametrize('mode, processes', [('async', 3), ('local', 2), ('stale', 2)])
def test_every_mode_trains_above_chance(tmp_path, mode, processes):
    out = tmp_path / mode
    check(run_mpi(processes, ['scripts/train_darknet.py', '--parallelism', mode,
                              '--n-train-images', '256', '--n-test-images', '64',
                              '--iterations', '40', '--eval-interval', '0', '--loaderjob', '0',
                              '--no-progress', '--out', str(out)], timeout=300))
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['top1'] > 0.25 + 0.1, metrics  # 4 classes: chance is 0.25
    assert metrics['parallelism']['mode'] == mode
    config = json.loads((out / 'config.json').read_text())
    assert config['workers'] == 2 and config['parallelism'] == mode
    if mode == 'async':
        server = json.loads((out / 'parallelism_server0.json').read_text())
        assert server['updates'] == 2 * 40 and sum(server['staleness'].values()) == 80
        assert metrics['parallelism']['pushes'] == 40


def test_async_refuses_resume_and_detection(tmp_path):
    proc = run_mpi(3, ['scripts/train_darknet.py', '--parallelism', 'async', '--resume',
                       str(tmp_path / 'x'), '--out', str(tmp_path / 'run')], timeout=120)
    assert proc.returncode == 2 and '--resume is not available' in proc.stderr
    proc = run_mpi(2, ['scripts/train_yolo.py', '--parallelism', 'async', '--out',
                       str(tmp_path / 'run2')], timeout=120)
    assert proc.returncode == 2 and 'invalid choice' in proc.stderr
