"""core.parallelism: one switch for sync / async / local / stale, weight decay or LARS once.

Run in one process (a one-rank MPI world) through run_python; the four modes training together
are tests/test_parallelism_trainer.py.
"""
import json

from conftest import check, run_python

SCRIPT = r'''
import json, sys
import chainermn
from chainer_yolo_dist.core import parallelism
from chainer_yolo_dist.core.optimizers import hook_names
sys.path.insert(0, 'tests/mpi_scripts')
import parallel_common as pc

comm = chainermn.create_communicator('naive')
out = {}
for mode in ('sync', 'local', 'stale'):
    for lars in (False, True):
        par = parallelism.setup_parallelism(mode, comm)
        model = pc.build()
        settings = parallelism.OptimizerSettings(lr=0.1, weight_decay=5e-4, lars=lars)
        opt = parallelism.build_parallel_optimizer(par, model, settings)
        opt.update(model, *pc.batch(0, 0))
        out['%s lars=%s' % (mode, lars)] = {
            'hooks': hook_names(opt), 'type': type(opt).__name__,
            'finish': sorted(parallelism.finish(opt))}
errors = []
for call in (lambda: parallelism.setup_parallelism('hogwild', comm),
             lambda: parallelism.setup_parallelism('async', comm)):
    try:
        call()
    except ValueError as e:
        errors.append(str(e))
out['errors'] = errors
print(json.dumps(out))
'''


def test_each_mode_gets_its_optimizer_with_exactly_one_regularisation_hook():
    out = json.loads(check(run_python(['-c', SCRIPT], timeout=60)).stdout.splitlines()[-1])
    for mode, cls in (('sync', '_MultiNodeOptimizer'), ('local', 'LocalSGDOptimizer'),
                      ('stale', 'StaleSyncOptimizer')):
        assert out['%s lars=False' % mode]['hooks'] == ['WeightDecay']
        assert out['%s lars=True' % mode]['hooks'] == ['GradientLARS']
        assert out['%s lars=False' % mode]['type'] == cls
    assert out['sync lars=False']['finish'] == []
    assert 'wait_s' in out['local lars=False']['finish']
    assert 'staleness' in out['stale lars=False']['finish']
    unknown, alone = out['errors']
    assert 'unknown parallelism' in unknown and 'sync, async, local, stale' in unknown
    assert 'needs at least one worker' in alone
