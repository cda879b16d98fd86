"""Every parallelism mode reduces to (or follows) synchronous SGD where it should, in float64.

Under ``mpiexec -n 3`` (tests/mpi_scripts/parallelism_equivalence.py): the small network of
tests/mpi_scripts/parallel_common.py, MomentumSGD (lr 0.1, momentum 0.9) with weight decay
0.01 or LARS, 3 steps, each worker on its own batches. The reference is ChainerMN's
synchronous multi-node optimizer (naive communicator) over *the same workers and batches*:

* async, staleness bound 0, push and pull every step: 1 server + 2 workers against synchronous
  SGD on those 2 workers; 2 servers (sharded parameters) + 1 worker with LARS against
  synchronous SGD with LARS on that worker (LARS at the servers sees whole parameters);
* local SGD with period 1: 3 workers against synchronous SGD on the 3 ranks, with and without
  averaging the momentum (MomentumSGD is linear, so both are exact); with LARS it is *not*
  synchronous SGD (each rank scales its own gradient), which the last case pins down;
* stale: 3 workers against a serial replay of the one-step-stale schedule.
Float64 makes a real mismatch visible: the runs agree to ~1e-16, far below the ~0.08 the
parameters move in 3 steps.
"""
import numpy as np
import pytest

from conftest import check, run_mpi

SCRIPT = 'tests/mpi_scripts/parallelism_equivalence.py'


def run(tmp_path, *args):
    out = tmp_path / 'out.npz'
    check(run_mpi(3, [SCRIPT, args[0], str(out)] + list(args[1:]), timeout=120))
    data = np.load(out)
    names = sorted(k[len('mode/'):] for k in data if k.startswith('mode/'))
    assert len(names) == 8  # 2 convolutions, BN, linear: W and b / gamma and beta each
    mode = np.concatenate([data['mode/' + n].ravel() for n in names])
    reference = np.concatenate([data['reference/' + n].ravel() for n in names])
    initial = data['initial/all']
    # training moved the weights, so agreement is not agreement of two untouched copies
    assert np.abs(reference - initial).max() > 1e-2
    return mode, reference


@pytest.mark.parametrize('servers,lars', [(1, False), (2, True)])
def test_async_with_staleness_bound_0_is_synchronous_sgd(tmp_path, servers, lars):
    mode, reference = run(tmp_path, 'async', '--servers', str(servers),
                          *(['--lars'] if lars else []))
    np.testing.assert_allclose(mode, reference, rtol=0, atol=1e-12)


@pytest.mark.parametrize('average_state', [False, True])
def test_local_sgd_with_period_1_is_synchronous_sgd(tmp_path, average_state):
    mode, reference = run(tmp_path, 'local', *(['--average-state'] if average_state else []))
    np.testing.assert_allclose(mode, reference, rtol=0, atol=1e-12)


def test_local_sgd_with_lars_is_not_synchronous_sgd(tmp_path):
    mode, reference = run(tmp_path, 'local', '--lars')
    assert np.abs(mode - reference).max() > 1e-3


def test_stale_mode_applies_each_mean_gradient_one_step_late(tmp_path):
    mode, reference = run(tmp_path, 'stale')
    np.testing.assert_allclose(mode, reference, rtol=0, atol=1e-12)
