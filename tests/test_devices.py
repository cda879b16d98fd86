"""Which GPU a rank takes, which communicators a node may use, and how batches and profiles
treat a device (issue 21: the GPU path on CPUs, where it can be tested there)."""
import json
import types

import chainer
import numpy as np
import pytest

from chainer_yolo_dist.core import devices, resolve, updaters
from chainer_yolo_dist.core.presets import load
from conftest import check, run_mpi


def test_training_ranks_are_numbered_per_node_without_the_servers():
    hosts = ['a', 'a', 'a', 'b', 'b']
    # rank 0 is a parameter server: the workers of node a are its ranks 1 and 2 -> GPUs 0, 1
    assert devices.training_local_ranks(hosts, [False, True, True, True, True]) == [
        -1, 0, 1, 0, 1]


@pytest.mark.parametrize('local_rank, gpus, device', [(0, 4, 0), (3, 4, 3), (5, 4, 1),
                                                      (2, 1, 0)])
def test_a_rank_takes_its_local_index_modulo_the_visible_gpus(local_rank, gpus, device):
    assert devices.choose_gpu(local_rank, gpus) == device


def test_two_ranks_on_one_gpu_are_refused_in_one_line_naming_both():
    places = [('n1', '0000:10:00.0'), None, ('n2', '0000:10:00.0'), ('n1', '0000:10:00.0')]
    with pytest.raises(ValueError) as e:
        devices.refuse_shared_gpus(places)
    message = str(e.value)
    assert '\n' not in message and 'ranks 0 and 3' in message and 'n1' in message
    devices.refuse_shared_gpus(places[:3])  # same bus id on two hosts: two GPUs


def test_real_ranks_choose_distinct_gpus_and_refuse_a_shared_one():
    proc = check(run_mpi(2, ['tests/mpi_scripts/select_device.py'], timeout=120))
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{')]
    got = {(r['case'], r['rank']): r.get('device', r.get('error')) for r in rows}
    assert got[('one_gpu_per_rank', 0)] == 0 and got[('one_gpu_per_rank', 1)] == 1
    for rank in (0, 1):  # every rank raises the same error, so every rank stops alike
        assert 'ranks 0 and 1 would share GPU 0000:10:00.0' in got[('one_visible_gpu_shared',
                                                                    rank)]
    assert got[('server_rank_takes_none', 0)] == -1
    assert got[('server_rank_takes_none', 1)] == 0


def test_cupy_without_a_device_counts_as_no_gpu(monkeypatch):
    from chainer.backends import cuda

    def no_device():
        raise RuntimeError('cudaErrorNoDevice: no CUDA-capable device is detected')
    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=no_device)))
    monkeypatch.setattr(cuda, 'available', True)
    monkeypatch.setattr(cuda, 'cupy', fake, raising=False)
    assert devices.gpu_count() == 0
    fake.cuda.runtime.getDeviceCount = lambda: 0
    assert devices.gpu_count() == 0
    fake.cuda.runtime.getDeviceCount = lambda: 2
    assert devices.gpu_count() == 2


@pytest.mark.parametrize('name, explicit, gpus, refused', [
    ('pure_nccl', True, 0, 'needs a CUDA GPU'),
    ('flat', True, 0, 'use pure_nccl on GPUs or naive on CPUs'),
    ('flat', True, 1, 'would hand GPU memory to MPI'),
    ('hierarchical', False, 2, 'would hand GPU memory to MPI'),
    ('naive', True, 1, None),  # trains on the CPU of a GPU node
    ('pure_nccl', False, 1, None),
    ('naive', False, 0, None),
])
def test_only_communicators_that_keep_device_memory_away_from_mpi_run(name, explicit, gpus,
                                                                      refused):
    if refused is None:
        devices.check_communicator(name, explicit, gpus)
    else:
        with pytest.raises(ValueError, match=refused):
            devices.check_communicator(name, explicit, gpus)


def test_fp16_allreduce_is_dropped_and_said_wherever_pure_nccl_does_not_reduce():
    preset = load('yolov3_voc_2019', 4)
    assert preset.allreduce_grad_dtype == 'float16'
    name, dtype, said = resolve.communicator_in_force(preset, {}, gpus=0)
    assert (name, dtype) == ('naive', None)
    assert any('float16 AllReduce dropped: the naive communicator' in s for s in said)
    name, dtype, said = resolve.communicator_in_force(preset, {'parallelism': 'local'}, gpus=1)
    assert (name, dtype) == ('pure_nccl', None)
    assert said == ['float16 AllReduce dropped: --parallelism local reduces through float32 '
                    'host buffers']
    assert resolve.communicator_in_force(preset, {}, gpus=1) == ('pure_nccl', 'float16', [])
    with pytest.raises(ValueError, match='needs a CUDA GPU'):
        resolve.communicator_in_force(preset, {'communicator': 'pure_nccl'}, gpus=0)


def test_cudnn_fast_bn_without_cudnn_is_a_departure():
    preset = load('yolov3_voc_2019', 4)
    assert preset.cudnn_fast_bn
    assert 'no GPU, so no cuDNN' in resolve.cudnn_departure(preset, False, False)
    assert 'finds no cuDNN' in resolve.cudnn_departure(preset, True, False)
    assert resolve.cudnn_departure(preset, True, True) is None
    assert resolve.cudnn_departure(load('yolov2_voc_2018', 4), False, False) is None


@pytest.mark.parametrize('dtype', [np.uint8, np.float32])
def test_batches_cross_in_their_own_dtype_and_are_scaled_on_the_device(dtype):
    rng = np.random.RandomState(0)
    images = [rng.randint(0, 256, (3, 5, 4)).astype(dtype) for _ in range(3)]
    x = devices.images_to_device(images, None)
    assert x.dtype == np.float32 and x.shape == (3, 3, 5, 4)
    # bitwise what the host computed before: float32, then divided by 255
    expected = np.stack(images).astype(np.float32)
    expected /= 255
    np.testing.assert_array_equal(x, expected)


class _FakeGpu(object):
    """What the clock needs of Chainer's GpuDevice: ``.device.synchronize()``."""

    def __init__(self):
        self.waits = 0
        self.device = types.SimpleNamespace(synchronize=self._wait)

    def _wait(self):
        self.waits += 1


def test_the_profile_clock_waits_for_a_gpu_device_object_at_every_phase():
    gpu = _FakeGpu()
    clock = updaters.PhaseClock(gpu)
    for phase in updaters.PHASES:
        clock.mark(phase)
    assert gpu.waits == len(updaters.PHASES)
    assert updaters.device_synchronizer(chainer.get_device('@numpy')) is None
    assert updaters.device_synchronizer(-1) is None and updaters.device_synchronizer(None) is None


def test_the_updater_gives_the_clock_its_own_device(monkeypatch):
    seen = []

    class Clock(updaters.PhaseClock):
        def __init__(self, device=-1):
            seen.append(device)
            super().__init__(device)
    monkeypatch.setattr(updaters, 'PhaseClock', Clock)
    link = chainer.links.Linear(2, 1)

    class Loss(chainer.Chain):
        def __init__(self):
            super().__init__()
            with self.init_scope():
                self.link = link

        def forward(self, x):
            return chainer.functions.sum(self.link(x))
    target = Loss()
    optimizer = chainer.optimizers.SGD().setup(target)
    data = [np.ones(2, np.float32)] * 4
    it = chainer.iterators.SerialIterator(data, 2)
    updater = updaters.DataParallelUpdater([it], optimizer, chainer.dataset.concat_examples,
                                           '@numpy', profile=True)
    updater.update()
    assert seen == [updater.device] and updater.device is not None


@pytest.mark.parametrize('name', ['darknet19', 'darknet53', 'cnn11'])
def test_classifiers_are_fully_initialised_on_the_host_before_any_move(name):
    """Nothing is left for a first forward pass to draw on a GPU from CuPy's unseeded
    generator: every parameter exists when the recipe moves the chain to its device."""
    from chainer_yolo_dist.classification.models import build_classifier
    model = build_classifier(name, 4, 1 / 8, seed=1)
    assert all(p.array is not None for p in model.params())
    again = build_classifier(name, 4, 1 / 8, seed=1)
    for (key, p), q in zip(model.namedparams(), again.params()):
        np.testing.assert_array_equal(p.array, q.array, err_msg=key)
