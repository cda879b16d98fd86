"""GPU check, stage ``persistents`` (under ``mpiexec -n 2``): batch-normalisation statistics
held in CuPy arrays, averaged over two ranks sharing one GPU through the ``naive``
communicator, with the host-buffer guard on (``CHAINER_YOLO_DIST_CHECK_MPI_BUFFERS=1``, which
the runner sets: any device memory handed to mpi4py raises instead of crashing the rank).

``core.persistents.mean_persistents(comm, link)`` must leave every float persistent (float16,
float32 and float64 statistics) equal to the mean over the ranks exactly (the values are
multiples of 1/64, so every sum and halving is exact in each dtype), still a CuPy array at the
same device address (in place), and the parameters untouched. The ranks share the GPU: this
is the host-staged path, the one a GPU run takes for its statistics whenever the communicator
is not ``pure_nccl``; two ranks cannot share a GPU under ``pure_nccl`` (NCCL refuses).
"""
import sys

import numpy as np

import chainer
import chainer.links as L

from chainer_yolo_dist.benchmarks import gpu_check_worker as worker


def build(rank):
    """A network with float32, float16 and float64 statistics of this rank's own (multiples of
    1/64), ``N = 10 + rank`` and a linear layer whose weights must not change."""
    np.random.seed(0)  # the same parameters on every rank
    net = chainer.Chain()
    with net.init_scope():
        net.bn = L.BatchNormalization(5)
        net.half = L.BatchNormalization((2, 3), dtype=np.float16)
        net.wide = L.BatchNormalization(4, dtype=np.float64)
        net.fc = L.Linear(3, 2)
    rng = np.random.RandomState(10 + rank)
    for bn in (net.bn, net.half, net.wide):
        bn.avg_mean[...] = rng.randint(-64, 64, bn.avg_mean.shape) / 64.
        bn.avg_var[...] = rng.randint(1, 128, bn.avg_var.shape) / 64.
        bn.N = 10 + rank
    return net


def _statistics(net):
    return {'%s/%s' % (name, stat): getattr(getattr(net, name), stat)
            for name in ('bn', 'half', 'wide') for stat in ('avg_mean', 'avg_var')}


def _address(array):
    return array.data.ptr if hasattr(array, 'data') and hasattr(array.data, 'ptr') else \
        array.__array_interface__['data'][0]


def persistents(report, options):
    from chainer_yolo_dist.core import mpi
    comm = mpi.create_communicator('naive')  # installs the guard (the runner's env var)
    report.fact('ranks', comm.size)
    report.fact('mpi_comm_type', type(comm.mpi_comm).__name__)
    device = chainer.get_device('@numpy' if options.cpu_smoke else '@cupy:0')
    device.use()
    net = build(comm.rank)
    params_before = {path: p.array.copy() for path, p in net.namedparams()}
    net.to_device(device)
    before = {k: chainer.backend.CpuDevice().send(v) for k, v in _statistics(net).items()}
    addresses = {k: _address(v) for k, v in _statistics(net).items()}
    try:
        from chainer_yolo_dist.core.persistents import mean_persistents
    except ImportError as e:
        report.check('mean_persistents importable', False, e)
        return
    mean_persistents(comm, net)
    after = _statistics(net)
    mine = {
        'types': sorted({type(v).__module__.split('.')[0] for v in after.values()}),
        'moved': sorted(k for k, v in after.items() if _address(v) != addresses[k]),
        'before': before,
        'after': {k: chainer.backend.CpuDevice().send(v) for k, v in after.items()},
        'params_changed': sorted(
            path for path, p in net.namedparams()
            if not np.array_equal(chainer.backend.CpuDevice().send(p.array),
                                  params_before[path])),
        'N': [net.bn.N, net.half.N, net.wide.N],
    }
    ranks = comm.gather_obj(mine)
    if comm.rank != 0:
        return
    _judge(report, ranks, 'numpy' if options.cpu_smoke else 'cupy')


def _judge(report, ranks, xp_name):
    wrong = []
    for key in sorted(ranks[0]['after']):
        expected = sum(r['before'][key].astype(np.float64) for r in ranks) / len(ranks)
        for rank, r in enumerate(ranks):
            got = r['after'][key]
            if not np.array_equal(got.astype(np.float64), expected):
                wrong.append('%s on rank %d: max |diff| %.3g'
                             % (key, rank, np.abs(got - expected).max()))
    report.check('exact mean of every float persistent', not wrong, '; '.join(wrong[:3]) or
                 '%d arrays (float16, float32, float64) over %d ranks'
                 % (len(ranks[0]['after']), len(ranks)))
    types = sorted({t for r in ranks for t in r['types']})
    moved = sorted({k for r in ranks for k in r['moved']})
    report.check('in place, on the device', types == [xp_name] and not moved,
                 'array types %s, moved: %s' % (types, moved or 'none'))
    changed = sorted({k for r in ranks for k in r['params_changed']})
    report.check('parameters untouched', not changed, ', '.join(changed) or 'none changed')
    report.fact('N_per_rank', [r['N'] for r in ranks])
    report.summary = ('%d ranks on one %s device, naive communicator, guard %s: statistics '
                      'averaged exactly in place' % (len(ranks), xp_name,
                                                     report.facts.get('mpi_comm_type')))


if __name__ == '__main__':
    sys.exit(worker.main({'persistents': persistents}, description=__doc__))
