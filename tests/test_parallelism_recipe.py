"""``--parallelism`` on train_darknet.py: every mode trains the synthetic classification demo
above chance, and records what its communication did."""
import json

import pytest

from conftest import check, load_script, run_mpi


@pytest.mark.slow  # a training run per mode
@pytest.mark.parametrize('mode, processes', [('async', 3), ('local', 2), ('stale', 2)])
def test_every_mode_trains_above_chance(tmp_path, mode, processes):
    out = tmp_path / mode
    proc = check(run_mpi(processes, ['scripts/train_darknet.py', '--parallelism', mode,
                                     '--n-train-images', '256', '--n-test-images', '64',
                                     '--iterations', '40', '--eval-interval', '0',
                                     '--loaderjob', '0', '--no-progress', '--out', str(out)],
                         timeout=300))
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['top1'] > 0.25 + 0.1, metrics  # 4 classes: chance is 0.25
    assert metrics['parallelism']['mode'] == mode
    config = json.loads((out / 'config.json').read_text())
    assert config['workers'] == 2 and config['parallelism'] == mode
    if mode == 'async':
        server = json.loads((out / 'parallelism_server0.json').read_text())
        assert server['updates'] == 2 * 40 and sum(server['staleness'].values()) == 80
        assert metrics['parallelism']['pushes'] == 40
        # One process is a server: the start counts workers; the log's lr is the servers'.
        assert '2 workers + 1 server x batch' in proc.stdout
        log = json.loads((out / 'log').read_text())
        assert log and all(entry.get('lr', 0) > 0 for entry in log)


def test_detection_refuses_async(tmp_path, capsys):
    """Refused before MPI starts, by train_yolo.py's options (async resumes since issue 23:
    tests/test_faults_parallelism.py)."""
    with pytest.raises(SystemExit) as exit:
        load_script('train_yolo').parse_args(['--parallelism', 'async', '--out',
                                              str(tmp_path / 'run2')])
    assert exit.value.code == 2 and 'invalid choice' in capsys.readouterr().err
