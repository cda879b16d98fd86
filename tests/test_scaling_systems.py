"""The CycleGAN (paper 002) and SlowFast (paper 004) scaling models: their counted facts, their
calibration, their predictions, the script and the figures around them."""
import json
import os

import numpy as np
import pytest

from chainer_yolo_dist.analysis import (figures, scaling_cyclegan, scaling_slowfast,
                                        scaling_system_figures)
from chainer_yolo_dist.analysis.flop_count import count_forward_flops
from conftest import REPO, simulate_scaling

PAPER_GPUS = [4, 64, 128, 256, 512]


# ---- CycleGAN --------------------------------------------------------------------------------

def test_cyclegan_facts_are_those_of_the_real_networks():
    """Parameters and the discriminator's FLOPs recounted at 256 px; the generator's at 64 px,
    x16 (every layer of it scales with the area: reflection padding, stride-2 convolutions
    with padding 1, transposed convolutions to exactly 2x); the 256-px count is the slow test."""
    from chainer_yolo_dist.cyclegan.networks import (PatchDiscriminator, ResnetGenerator,
                                                     count_parameters)
    gen_params, dis_params, gen_flops, dis_flops = scaling_cyclegan.CYCLEGAN_FACTS[
        scaling_cyclegan.PAPER_NETWORKS]
    gen, dis = ResnetGenerator(9, 64), PatchDiscriminator(64)
    assert (count_parameters(gen), count_parameters(dis)) == (gen_params, dis_params)
    x = np.zeros((1, 3, 256, 256), np.float32)
    assert count_forward_flops(dis, x).total == dis_flops
    small = count_forward_flops(gen, np.zeros((1, 3, 64, 64), np.float32))
    assert small.deconv > 0  # the transposed convolutions are counted
    assert 16 * small.total == gen_flops


@pytest.mark.slow
def test_cyclegan_generator_flops_counted_at_256():
    assert scaling_cyclegan.count_facts(64, 64, 9, 256) == scaling_cyclegan.CYCLEGAN_FACTS[
        scaling_cyclegan.PAPER_NETWORKS]


def test_cyclegan_update_runs_six_generator_and_six_discriminator_passes():
    """The per-image compute composes 6 generator and 6 discriminator forward passes: the real
    losses of one update, counted by the hook on small networks, give exactly that."""
    from chainer_yolo_dist.cyclegan import losses
    from chainer_yolo_dist.cyclegan.networks import PatchDiscriminator, ResnetGenerator
    nets = (ResnetGenerator(2, 8), ResnetGenerator(2, 8), PatchDiscriminator(8),
            PatchDiscriminator(8))
    a = np.zeros((1, 3, 32, 32), np.float32)
    b = np.ones((1, 3, 32, 32), np.float32) * 0.5

    def update():
        out = losses.generator_losses(*nets, a, b)
        losses.discriminator_loss(nets[3], b, out['fake_b'].array)
        losses.discriminator_loss(nets[2], a, out['fake_a'].array)

    whole = count_forward_flops(update).total
    gen = count_forward_flops(nets[0], a).total
    dis = count_forward_flops(nets[2], a).total
    assert whole == scaling_cyclegan.GEN_PASSES * gen + scaling_cyclegan.DIS_PASSES * dis


def test_cyclegan_calibration_reproduces_the_4_gpu_time_exactly():
    for framework in scaling_cyclegan.FRAMEWORKS:
        q = scaling_cyclegan.predict([4], framework=framework)[0]
        assert q.run_seconds == pytest.approx(68.77 * 3600, rel=1e-12)
        assert q.speedup == 1.0
        assert q.draws_per_process == 4822  # scale 4 x D 4,822 / 4 processes


def test_cyclegan_predictions_are_monotone_and_below_ideal():
    preds = scaling_cyclegan.predict(PAPER_GPUS)
    assert [q.draws_per_process for q in preds] == [4822, 302, 151, 76, 38]
    speedups = [q.speedup for q in preds]
    assert speedups == sorted(speedups)
    assert [q.run_seconds for q in preds] == sorted((q.run_seconds for q in preds),
                                                    reverse=True)
    for q in preds[1:]:
        assert q.speedup < 4822 / q.draws_per_process  # the AllReduce costs something
    # Fusion gives Horovod fewer collectives (3 against 4), hence fewer latency steps.
    assert len(scaling_cyclegan.allreduce_messages('horovod')) == 3
    assert (scaling_cyclegan.allreduce_seconds(512, 'horovod')
            < scaling_cyclegan.allreduce_seconds(512, 'chainermn'))


def test_cyclegan_comparison_with_fig4():
    rows = {r['quantity']: r for r in scaling_cyclegan.comparison()}
    assert rows['hours on 512 GPUs']['published'] == pytest.approx(0.73)
    assert rows['speed-up of 512 GPUs over 4']['published'] == 93.8
    # The model is within 10% of the paper at 512 GPUs (docs/scaling_model.md quotes it).
    assert abs(rows['speed-up of 512 GPUs over 4']['error']) < 0.10


# ---- SlowFast --------------------------------------------------------------------------------

@pytest.mark.slow  # builds SlowFast R50 (about 20 s on 2 busy cores)
def test_slowfast_facts_are_those_of_the_real_network():
    """Parameters of the detector built at the preset; FLOPs from the trunk's analytic count,
    which the hook over ConvolutionND / TapConvolution3D equals on a small clip."""
    from chainer_yolo_dist.slowfast.models import build_detector
    from chainer_yolo_dist.slowfast.networks import count_parameters
    detector = build_detector('slowfast_r50', 80)
    params, flops = scaling_slowfast.SLOWFAST_FACTS[('slowfast_r50', 80, 16, 224)]
    assert count_parameters(detector) == params
    assert 2 * detector.trunk.macs(16, 224, 224)[0] == flops
    x = np.zeros((1, 3, 8, 64, 64), np.float32)
    assert count_forward_flops(detector.trunk, x).conv == 2 * detector.trunk.macs(8, 64, 64)[0]


@pytest.mark.slow  # builds the R50 trunk
def test_slowfast_r50_with_pyslowfast_fusion_and_kinetics_head_has_34_566_488_parameters():
    """The trunk with PySlowFast's 7-frame lateral kernel plus a 400-class Kinetics classifier
    (2,304 pooled channels) is the 34,566,488-parameter SlowFast 8x8 R50."""
    from chainer_yolo_dist.slowfast.networks import SlowFast, count_parameters
    trunk = SlowFast(fusion_kernel=7)
    assert count_parameters(trunk) + 2304 * 400 + 400 == 34566488


def test_slowfast_calibration_reproduces_the_1_node_time_exactly():
    for loader in scaling_slowfast.LOADERS:
        for overlap in (False, True):
            q = scaling_slowfast.predict([4], 'before', loader=loader, overlap=overlap)[0]
            assert q.run_seconds == pytest.approx(544 * 60, rel=1e-9), (loader, overlap)
            assert q.stall_seconds == 110


def test_slowfast_predictions_are_monotone():
    for conf in scaling_slowfast.CONFIGURATIONS:
        # Without the growth more nodes are always faster; with it the speed-up peaks at 64.
        flat = [q.speedup for q in scaling_slowfast.predict(PAPER_GPUS, conf, growth='none')]
        assert flat == sorted(flat), conf
        preds = scaling_slowfast.predict(PAPER_GPUS, conf)
        speedups = [q.speedup for q in preds]
        assert speedups[:4] == sorted(speedups[:4]) and speedups[4] < speedups[3], conf
        shares = [q.comm_share for q in preds]
        assert shares == sorted(shares), conf
    before = scaling_slowfast.predict(PAPER_GPUS, 'before', growth='none')
    after = scaling_slowfast.predict(PAPER_GPUS, 'after', growth='none')
    # The fix pays off where the stall outweighs the slower 6-worker step (Table 3): many nodes.
    assert after[-1].speedup > before[-1].speedup
    assert after[0].speedup < before[0].speedup
    # Overlap hides communication: never more exposed than without.
    hidden = scaling_slowfast.predict(PAPER_GPUS, 'after', overlap=True, growth='none')
    for q, h in zip(after, hidden):
        assert h.comm_share <= q.comm_share


def test_slowfast_comparisons_cover_every_published_number():
    rows = scaling_slowfast.comparisons()
    published = [r['published'] for r in rows]
    for value in (544, 30, 27, 22, 15.5, 19.7, 34.5, 43.8, 59.7, 78.1, 1.8):
        assert value in published, value
    fitted = {r['quantity']: r['fitted'] for r in rows if r['fitted']}
    assert sorted(fitted.values()) == ['compute', 'delta', 'gamma', 't_clip', 't_clip, delta',
                                       't_clip, gamma']
    shares = scaling_slowfast.share_comparison()
    assert [(r['nodes'], r['published'], r['fitted']) for r in shares] == [
        (32, 43.8, True), (64, 59.7, False), (128, 78.1, False)]


def test_slowfast_growth_is_zero_where_the_paper_says_the_iteration_keeps_its_time():
    """Sec. 4.2: up to 32 nodes with at most 6 workers the iteration keeps Table 3's time; on
    1 node (the calibration) neither term adds anything."""
    g = scaling_slowfast.growth_seconds
    for nodes in (1, 16, 32):
        assert g(nodes, 6, 1.0, 1.0) == 0.0
    assert g(1, 8, 1.0, 1.0) == 0.0
    assert g(64, 6, 1.0, 1.0) == 1.0 and g(128, 6, 1.0, 0.0) == 9.0
    assert g(32, 8, 0.0, 1.0) == pytest.approx(2 * 1023 / 1024)


def test_slowfast_fitted_growth_reproduces_its_points_and_128_nodes_bend():
    fit = scaling_slowfast.fit_growth()
    assert fit['gamma'] > 0 and fit['delta'] > 0
    after = scaling_slowfast.predict([128, 256, 512], 'after')
    before = scaling_slowfast.predict([256], 'before')
    assert after[1].run_seconds == pytest.approx(15.5 * 60, rel=1e-9)
    assert before[0].run_seconds == pytest.approx(27 * 60, rel=1e-9)
    assert 100 * after[0].comm_share == pytest.approx(43.8, rel=1e-9)
    # Sec. 4.3: 128 nodes scale worse than 64; without the growth the model halves the time.
    assert after[2].run_seconds > after[1].run_seconds
    flat = scaling_slowfast.predict([256, 512], 'after', growth='none')
    assert flat[1].run_seconds < 0.55 * flat[0].run_seconds
    with pytest.raises(ValueError, match='growth'):
        scaling_slowfast.predict([4], growth='linear')


def test_slowfast_128_over_64_compares_like_with_like():
    """Sec. 4.3's 1.8x is Table 4's share times the run time: the model's ratio of whole-run
    communication is its per-update ratio times the ratio of updates, and the per-update
    figure the paper implies is 1.8 x the same ratio of updates."""
    rows = {r['quantity'].split(' (')[0]: r for r in scaling_slowfast.comparisons()}
    run = rows['128 over 64 nodes: communication time of the whole run']
    update = rows['128 over 64 nodes: communication time per update']
    q64, q128 = scaling_slowfast.predict([256, 512], 'after')
    ratio = q64.updates_per_epoch / q128.updates_per_epoch
    assert run['published'] == 1.8 and update['published'] == pytest.approx(1.8 * ratio)
    assert update['predicted'] == pytest.approx(run['predicted'] * ratio)


def test_slowfast_predictions_outside_the_fit_are_within_20_percent():
    """docs/scaling_model.md quotes the table: every point no parameter was fitted to, Fig. 3's
    32-node times, Table 4's 64- and 128-node shares and the 128-node bend, within 20%."""
    for r in scaling_slowfast.comparisons():
        if r['fitted']:
            assert abs(r['error']) < 0.025, r  # the printed speed-ups are rounded
        else:
            assert abs(r['error']) < 0.20, r


# ---- the script and the figures --------------------------------------------------------------

def test_simulate_scaling_prints_both_system_models(capsys):
    out = simulate_scaling(capsys, '--preset', 'cyclegan_synthia2bdd_2019')
    assert '| chainermn | hours on 4 GPUs | 68.77 | 68.77 | +0.0% |' in out
    assert 'speed-up of 512 GPUs over 4 | 93.80 |' in out
    out = simulate_scaling(capsys, '--preset', 'slowfast_ava_2021')
    assert '| before, 1 node: 5 epochs, min | 544.00 | 544.00 | +0.0% | t_clip |' in out
    assert '| Table 4, 64 nodes: communication share, % | 59.70 |' in out
    data = json.loads(simulate_scaling(capsys, '--preset', 'slowfast_ava_2021', '--json'))
    assert data['gpus'] == PAPER_GPUS
    data = json.loads(simulate_scaling(capsys, '--preset', 'cyclegan_synthia2bdd_2019', '--json',
                                       '--framework', 'horovod'))
    assert data['hours'][0] == pytest.approx(68.77)


def test_simulate_scaling_rejects_options_of_the_other_system(capsys):
    for args in (['--preset', 'slowfast_ava_2021', '--framework', 'horovod'],
                 ['--preset', 'cyclegan_synthia2bdd_2019', '--overlap'],
                 ['--preset', 'slowfast_ava_2021', '--gpus', '6'],
                 ['--preset', 'yolov2_voc_2018', '--loader', 'compute'],
                 ['--preset', 'cyclegan_synthia2bdd_2019', '--growth', 'none']):
        with pytest.raises(SystemExit):
            simulate_scaling(capsys, *args)


def test_docs_quote_the_system_tables(capsys):
    with open(os.path.join(REPO, 'docs', 'scaling_model.md'), encoding='utf-8') as f:
        doc = f.read()
    for preset in (scaling_cyclegan.PRESET, scaling_slowfast.PRESET):
        out = simulate_scaling(capsys, '--preset', preset)
        for line in out.splitlines():
            if line.startswith('| ') and not line.startswith('| ---'):
                assert line in doc, (preset, line)


def test_system_figures_are_registered_and_take_measured_speedups(tmp_path):
    assert figures.PUBLISHED_FIGURES['p002_speedup_model.png'] is (
        scaling_system_figures.p002_speedup_model)
    assert figures.PUBLISHED_FIGURES['p004_scaling_model.png'] is (
        scaling_system_figures.p004_scaling_model)
    fig = scaling_system_figures.p002_speedup_model(measured={1: 1.0, 2: 1.7})
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    measured = lines['measured (over 1 process)']
    assert list(measured.get_xdata()) == [1, 2] and list(measured.get_ydata()) == [1.0, 1.7]
    assert list(lines['paper 002 Fig. 4 (93.8x at 512 GPUs)'].get_ydata()) == [1.0, 93.8]
    figures.save(scaling_system_figures.p004_scaling_model(), str(tmp_path / 'p004.png'))
    assert os.path.getsize(tmp_path / 'p004.png') > 10000


def test_measured_speedups_from_run_directories(tmp_path):
    """Images per second from config.json and metrics.json: 1 process drawing 4 x 10 images
    in 40 s per epoch against 2 processes drawing 20 each in 25 s: 1.6x."""
    for k, seconds in ((1, 40.0), (2, 25.0)):
        run = tmp_path / ('k%d' % k)
        run.mkdir()
        (run / 'config.json').write_text(json.dumps(
            {'workers': k, 'preset': {'name': 'cyclegan_demo', 'n_train': 10,
                                      'sampling_scale': 4}}))
        (run / 'metrics.json').write_text(json.dumps({'elapsed_seconds': 2 * seconds,
                                                      'epochs': 2}))
    points = scaling_system_figures.measured_speedups([str(tmp_path / 'k1'),
                                                       str(tmp_path / 'k2')])
    assert points == {1: 1.0, 2: pytest.approx(1.6)}
    with pytest.raises(ValueError, match='two process counts'):
        scaling_system_figures.measured_speedups([str(tmp_path / 'k1')])
