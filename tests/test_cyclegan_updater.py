"""CycleGAN updater: what it reports, the schedule, exact resume, and two ranks kept in sync."""
import io

import chainer
import numpy as np
import pytest

from chainer_yolo_dist.cyclegan.networks import PatchDiscriminator, ResnetGenerator
from chainer_yolo_dist.cyclegan.updater import (
    ADAM_ALPHA, ADAM_BETA1, CONSTANT_EPOCHS, DECAY_EPOCHS, NETWORKS, CycleGANUpdater,
    discriminator_lr, linear_decay)
from conftest import check, run_mpi


def test_paper_settings():
    assert (ADAM_ALPHA, ADAM_BETA1, CONSTANT_EPOCHS, DECAY_EPOCHS) == (2e-4, 0.5, 100, 100)


def test_linear_decay_is_zhus_lambda_rule():
    assert [linear_decay(e) for e in (0, 50, 99)] == [1.0, 1.0, 1.0]
    assert linear_decay(100) == pytest.approx(100 / 101.)
    assert linear_decay(150) == pytest.approx(50 / 101.)
    assert linear_decay(199) == pytest.approx(1 / 101.)
    assert linear_decay(200) == 0.0 and linear_decay(250) == 0.0
    assert linear_decay(100.7) == linear_decay(100)  # stepped once per epoch
    assert linear_decay(3, constant_epochs=2, decay_epochs=3) == pytest.approx(1 - 2 / 4.)
    with pytest.raises(ValueError):
        linear_decay(-1)


def test_discriminator_rate_rules():
    assert discriminator_lr(2e-4) == 1e-4  # paper 002 appendix A.1.2
    assert discriminator_lr(2e-4, 'equal') == 2e-4  # Zhu's code
    with pytest.raises(ValueError):
        discriminator_lr(2e-4, 'double')


def _setup(seed=0, n_images=4):
    np.random.seed(seed)
    nets = {'gen_ab': ResnetGenerator(1, 4), 'gen_ba': ResnetGenerator(1, 4),
            'dis_a': PatchDiscriminator(4), 'dis_b': PatchDiscriminator(4)}
    optimizers = {}
    for name in NETWORKS:
        alpha = ADAM_ALPHA if name.startswith('gen') else discriminator_lr(ADAM_ALPHA)
        optimizers[name] = chainer.optimizers.Adam(alpha=alpha, beta1=ADAM_BETA1)
        optimizers[name].setup(nets[name])
    rng = np.random.RandomState(3)
    data = [(rng.uniform(-1, 1, (3, 32, 32)).astype(np.float32),
             rng.uniform(-1, 1, (3, 32, 32)).astype(np.float32)) for _ in range(n_images)]
    iterator = chainer.iterators.SerialIterator(data, 2, shuffle=False)
    return nets, CycleGANUpdater(iterator, optimizers, pool_size=2, pool_seed=11)


def _params(nets):
    return {(k, n): p.array.copy() for k, net in nets.items() for n, p in net.namedparams()}


def test_reports_all_losses_and_updates_every_network():
    nets, updater = _setup()
    before = _params(nets)
    observation = {}
    with chainer.reporter.Reporter().scope(observation):
        updater.update()
    for key in ('gen/loss', 'gen/loss_gan', 'gen/loss_cycle', 'gen/loss_id', 'dis_a/loss',
                'dis_b/loss'):
        assert np.isfinite(float(observation[key].array)), key
    after = _params(nets)
    assert all(not np.array_equal(before[k], after[k]) for k in before)
    assert len(updater.pool_a.images) == 2 and len(updater.pool_b.images) == 2


def test_missing_optimizer_is_refused():
    nets, updater = _setup()
    with pytest.raises(ValueError, match='dis_b'):
        CycleGANUpdater(updater.get_iterator('main'),
                        {k: updater.get_optimizer(k) for k in NETWORKS[:3]})


def test_resume_from_snapshot_is_exact():
    # 4 straight steps against 2 steps, save, load into fresh objects, 2 steps: the image
    # pools (of size 2, full after the first step of 2 images) must resume too.
    nets, updater = _setup()
    for _ in range(4):
        updater.update()
    expected = _params(nets)

    nets, updater = _setup()
    for _ in range(2):
        updater.update()
    buf = io.BytesIO()
    chainer.serializers.save_npz(buf, updater)
    buf.seek(0)
    nets, updater = _setup(seed=5)  # other initial weights: all state must come from the file
    chainer.serializers.load_npz(buf, updater)
    assert updater.iteration == 2
    for _ in range(2):
        updater.update()
    got = _params(nets)
    assert all(np.array_equal(expected[k], got[k]) for k in expected)


def test_two_ranks_stay_bit_identical():
    proc = check(run_mpi(2, ['tests/mpi_scripts/cyclegan_sync.py'], timeout=120))
    assert 'OK' in proc.stdout


def test_uint8_batches_cross_as_uint8_and_scale_to_the_same_bits():
    # Issue 21 (14): images stored as uint8 are copied as uint8 and scaled where they land;
    # the result is bitwise what scaling on the host first gave.
    from chainer_yolo_dist.cyclegan.data import to_network_range
    from chainer_yolo_dist.cyclegan.updater import pair_converter
    rng = np.random.RandomState(0)
    raw = [(rng.randint(0, 256, (3, 8, 8)).astype(np.uint8),
            rng.randint(0, 256, (3, 8, 8)).astype(np.uint8)) for _ in range(3)]
    sent = []

    class Recording(chainer.backend.CpuDevice):
        def send_array(self, array):
            sent.append(array.dtype)
            return super().send_array(array)

    a, b = pair_converter(raw, Recording())
    assert sent == [np.uint8, np.uint8]  # what crossed to the device
    for got, k in ((a, 0), (b, 1)):
        expected = np.stack([to_network_range(pair[k]) for pair in raw])
        assert got.dtype == np.float32 and got.shape == (3, 3, 8, 8)
        assert got.tobytes() == expected.tobytes()
    # float32 images (resized or rendered) are already in [-1, 1]; a mixed batch converts the
    # uint8 ones on the host
    floats = [(to_network_range(x), y) for x, y in raw]
    a2, b2 = pair_converter(floats, -1)  # an int device, as old updaters pass
    assert a2.tobytes() == a.tobytes() and b2.tobytes() == b.tobytes()
    a3, _ = pair_converter(floats[:1] + raw[1:], None)
    assert a3.tobytes() == a.tobytes()


def test_the_pools_live_on_their_discriminators_devices():
    nets, updater = _setup()
    assert updater.pool_a.device == nets['dis_a'].device
    assert updater.pool_b.device == nets['dis_b'].device
