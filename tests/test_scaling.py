"""The ring-AllReduce scaling model: its parts, its calibration, and the script around it."""
import dataclasses
import json
import math
import os
import re

import pytest

from chainer_yolo_dist.analysis import published
from chainer_yolo_dist.core import presets
from chainer_yolo_dist.analysis import scaling
from conftest import REPO, check, run_python, simulate_scaling

MB = 1e6


def test_cached_model_facts_are_those_of_the_real_networks():
    for (model, n_class), cached in scaling.MODEL_FACTS.items():
        network = scaling.build_network(model, n_class)
        assert scaling.count_model_facts(network) == cached, (model, n_class)


def test_every_paper_preset_has_cached_facts():
    # The scaling model covers the YOLO and Darknet networks (CycleGAN's and SlowFast's are
    # not in it yet).
    from chainer_yolo_dist.classification.models import CLASSIFIERS
    from chainer_yolo_dist.detection.models import MODELS
    for name in presets.names():
        p = presets.load(name, 1)
        if p.paper.startswith('none') or p.model not in set(MODELS) | set(CLASSIFIERS):
            continue  # the CPU demos are counted when asked
        assert (p.model, p.n_class) in scaling.MODEL_FACTS, name


def test_uncached_networks_are_counted_on_demand():
    p = presets.load('synthetic_demo', 1)
    assert (p.model, p.n_class) not in scaling.MODEL_FACTS
    facts = scaling.model_facts(p.model, p.n_class)
    assert facts == scaling.count_model_facts(scaling.build_network(p.model, p.n_class))
    assert facts[0] > 0 and facts[1] > 0


def test_known_sizes():
    # Counted from the built networks: YOLOv2 (20 classes) 50.7M, YOLOv3 61.6M, Darknet53 ~41.6M.
    assert round(scaling.model_facts('yolov2', 20)[0] / 1e6, 1) == 50.7
    assert round(scaling.model_facts('yolov3', 20)[0] / 1e6, 1) == 61.6
    assert round(scaling.model_facts('darknet53', 1000)[0] / 1e6, 1) == 41.6
    # YOLO9000: YOLOv2 at 416 is about 29.4 GFLOPs forward; Darknet53 at 256, 18.7 G "ops".
    assert scaling.forward_flops('yolov2', 20, 416) / 1e9 == pytest.approx(29.36, abs=0.01)
    assert scaling.forward_flops('darknet53', 1000, 256) / 1e9 == pytest.approx(18.57, abs=0.01)
    with pytest.raises(ValueError, match='multiple of 32'):
        scaling.forward_flops('yolov2', 20, 100)
    with pytest.raises(ValueError, match='unknown model'):
        scaling.model_facts('resnet50', 1000)


def test_gradient_bytes_are_four_per_parameter_or_two_with_fp16_allreduce():
    assert scaling.gradient_bytes(presets.load('yolov2_voc_2018', 1)) == 4 * 50655389
    # Paper 001 sec. 5.1: FP16 AllReduce.
    assert scaling.gradient_bytes(presets.load('yolov3_voc_2019', 1)) == 2 * 61626049


def test_ring_allreduce_uses_the_slowest_link_on_the_ring():
    abci = scaling.ABCI
    g = 200 * MB
    assert scaling.ring_allreduce_seconds(g, 1) == 0.0
    # Four GPUs of one node: NVLink.
    assert scaling.ring_allreduce_seconds(g, 4) == pytest.approx(
        6 / 4 * g / abci.nvlink_bandwidth + 6 * abci.nvlink_latency)
    # Two nodes: EDR InfiniBand, 100 Gb/s.
    assert scaling.ring_allreduce_seconds(g, 8) == pytest.approx(
        14 / 8 * g / 12.5e9 + 14 * abci.ib_latency)
    # 34 nodes fill a rack; 35 nodes cross racks, at a third of the bandwidth.
    assert abci.racks(136) == 1 and abci.racks(140) == 2
    assert scaling.ring_allreduce_seconds(g, 136) == pytest.approx(
        270 / 136 * g / 12.5e9 + 270 * abci.ib_latency)
    assert scaling.ring_allreduce_seconds(g, 140) == pytest.approx(
        278 / 140 * g / (12.5e9 / 3) + 278 * abci.ib_latency)
    with pytest.raises(ValueError):
        scaling.ring_allreduce_seconds(g, 0)


def test_one_gpu_prediction_is_the_papers_one_gpu_time():
    for name, table in scaling.ONE_GPU_TIMES.items():
        (p,) = scaling.predict(name, [1])
        one = published.column(table, 'time_s', gpus=1)[0]
        assert p.epoch_seconds * presets.load(name, 1).epochs == pytest.approx(one)
        assert p.speedup == 1.0 and p.allreduce_seconds == 0.0


def test_flop_transfer_calibrates_presets_without_a_one_gpu_time():
    ref, _ = scaling.calibrated_image_seconds('yolov2_voc_2018')
    t, how = scaling.calibrated_image_seconds('yolov3_voc_2019')
    ratio = (scaling.mean_training_flops(presets.load('yolov3_voc_2019', 1))
             / scaling.mean_training_flops(presets.load('yolov2_voc_2018', 1)))
    assert t == pytest.approx(ref * ratio)
    assert 'FLOP ratio' in how and ratio > 2  # YOLOv3 costs over twice YOLOv2 per pixel


def test_updates_per_epoch_fall_as_one_over_k():
    preds = scaling.predict('yolov2_voc_2018', [1, 16, 128])
    for p in preds:
        # scatter_dataset pads each rank to ceil(N / k) samples.
        assert p.iterations_per_epoch == math.ceil(16551 / p.gpus) / 16
        assert p.compute_seconds == preds[0].compute_seconds


def test_without_communication_cost_the_speedup_is_the_ideal_one():
    free = dataclasses.replace(scaling.ABCI, nvlink_bandwidth=math.inf, ib_bandwidth=math.inf,
                               nvlink_latency=0.0, ib_latency=0.0)
    for p in scaling.predict('darknet53_imagenet_2019', [64, 512], topology=free):
        ideal = 1281167 / math.ceil(1281167 / p.gpus)
        assert p.speedup == pytest.approx(ideal)
    for p in scaling.predict('darknet53_imagenet_2019', [64, 512]):
        assert p.speedup < p.gpus


def test_published_scaling_lists_the_papers_speedups():
    voc = scaling.published_scaling('yolov2_voc_2018')
    assert [(r['gpus'], round(r['speedup'], 1)) for r in voc] == [
        (16, 10.3), (32, 19.0), (64, 33.6), (64, 33.6), (128, 55.5)]
    assert [r['epoch_seconds'] for r in voc if r['epoch_seconds']] == [32.24, 17.47, 9.87, 5.97]
    assert [(r['gpus'], r['speedup']) for r in
            scaling.published_scaling('darknet53_imagenet_2019')] == [(256, 109.5), (512, 256)]
    assert [(r['gpus'], r['speedup']) for r in
            scaling.published_scaling('yolov3_voc_2019')] == [(96, 64.4)]
    assert scaling.published_scaling('yolov2_voc_2019') == []


def test_fitted_overheads_explain_paper_000_voc_times():
    fit = scaling.fit_overheads('yolov2_voc_2018')
    assert fit['u'] > 0 and fit['e'] > 0
    for row in fit['rows']:
        assert row['fitted'] == pytest.approx(row['published'], rel=0.03)
    with pytest.raises(ValueError, match='fewer than two'):
        scaling.fit_overheads('yolov3_voc_2019')


def test_simulate_scaling_json():
    proc = check(run_python(['scripts/simulate_scaling.py', '--preset', 'yolov2_voc_2018',
                             '--gpus', '1,16,32,64,128', '--json'], timeout=60))
    out = json.loads(proc.stdout)
    assert set(out) == {'gpus', 'speedup', 'epoch_seconds'}
    assert out['gpus'] == [1, 16, 32, 64, 128]
    assert out['speedup'][0] == 1.0
    assert out['speedup'] == sorted(out['speedup'])
    assert out['epoch_seconds'][0] == pytest.approx(331.24)


def test_simulate_scaling_options_change_the_prediction(capsys):
    def speedup(*extra):
        out = simulate_scaling(capsys, '--preset', 'yolov3_voc_2019', '--gpus', '96', '--json',
                               *extra)
        return json.loads(out)['speedup'][0]
    base = speedup()
    assert speedup('--grad-dtype', 'float32') < base
    assert speedup('--ib-gbps', '200') > base
    assert speedup('--image-seconds', '0.001') < base  # less compute to hide the AllReduce


def test_simulate_scaling_rejects_bad_gpu_lists():
    proc = run_python(['scripts/simulate_scaling.py', '--preset', 'yolov2_voc_2018',
                       '--gpus', '1,x'], timeout=60)
    assert proc.returncode == 2 and 'comma-separated integers' in proc.stderr


def test_table_output_compares_with_the_papers(capsys):
    out = simulate_scaling(capsys, '--preset', 'darknet53_imagenet_2019', '--gpus', '1,256,512')
    assert '| 256 | paper 001 Fig. 5 | 109.5 |' in out
    assert 'yolov2_voc_2018 calibration x FLOP ratio' in out
    out = simulate_scaling(capsys, '--preset', 'yolov2_voc_2019', '--gpus', '8')
    assert 'publish no timing' in out


def test_docs_quote_the_errors_the_model_gives(capsys):
    """docs/scaling_model.md shows each preset's comparison table exactly as the script
    prints it now, so the reported errors cannot drift from the model."""
    with open(os.path.join(REPO, 'docs', 'scaling_model.md'), encoding='utf-8') as f:
        doc = f.read()
    for name in ('yolov2_voc_2018', 'yolov2_filmrole_2018', 'darknet53_imagenet_2019',
                 'yolov3_voc_2019'):
        out = simulate_scaling(capsys, '--preset', name, '--gpus', '1')
        table = out.split('Against the published numbers')[1]
        rows = [line for line in table.splitlines() if re.match(r'\| \d', line)]
        assert rows, name
        for line in rows:
            assert line in doc, (name, line)
    for name in ('yolov2_voc_2018', 'yolov2_filmrole_2018'):
        fit = scaling.fit_overheads(name)
        assert 'u = %.3f s per update' % fit['u'] in doc, name
        assert 'e = %.2f s per epoch' % fit['e'] in doc, name
