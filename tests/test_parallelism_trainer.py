"""Every mode, built by core.parallelism, plugs into Chainer's StandardUpdater/Trainer and
trains (mpiexec -n 3).

tests/mpi_scripts/parallelism_trainer.py: 40 iterations of the small network (float32) per
worker on its scattered share; sync = 3 workers (ChainerMN), async = 1 server + 2 workers
(pull every 2 steps), local = 3 workers averaging every 4 steps, stale = 3 workers. The held-out
loss starts at about log 3
(chance) for every worker; it must fall, and every worker must end with the same weights
(the servers' final parameters, or the last averaging). Losses still differ a little between
ranks: each keeps its own batch-normalisation running statistics.
"""
import json

import pytest

from conftest import check, run_mpi


@pytest.mark.parametrize('mode,workers', [('sync', [0, 1, 2]), ('async', [1, 2]),
                                          ('local', [0, 1, 2]), ('stale', [0, 1, 2])])
def test_mode_trains_under_a_standard_updater(tmp_path, mode, workers):
    check(run_mpi(3, ['tests/mpi_scripts/parallelism_trainer.py', mode, str(tmp_path)],
                  timeout=120))
    records = [json.loads((tmp_path / ('rank%d.json' % r)).read_text()) for r in workers]
    assert len({r['checksum'] for r in records}) == 1
    for r in records:
        assert r['iteration'] == 40
        assert r['loss_after'] < 0.85 * r['loss_before']
        if mode != 'sync':
            assert r['stats']['wait_s'] >= 0
            assert r['stats']['steps'] == 40
    if mode == 'local':
        assert records[0]['stats']['averagings'] == 10
    if mode == 'async':
        server = json.loads((tmp_path / 'server0.json').read_text())
        assert server['updates'] == 80 == sum(server['staleness'].values())
