"""Paper 003's modes in the scaling model (analysis/scaling_modes.py), its preset, and the
48-GPU prediction of scripts/simulate_scaling.py."""
import json
import math
import os
import re

import pytest

from chainer_yolo_dist.analysis import scaling, scaling_modes as sm
from chainer_yolo_dist.core import presets
from conftest import REPO, simulate_scaling

# A cluster whose numbers make the hand computations exact: one GPU per node, a GPU link that
# costs nothing, 1 GB/s per node and direction, no latency.
PLAIN = sm.Cluster(name='plain', gpus_per_node=1, gpu_link_bandwidth=math.inf,
                   node_bandwidth=1e9, latency=0.0)
FREE = sm.Cluster(name='free', gpus_per_node=3, gpu_link_bandwidth=math.inf,
                  node_bandwidth=math.inf, latency=0.0)


def test_sync_equals_local_with_period_one():
    for k in (1, 2, 3, 48):
        assert sm.local_update_seconds(0.5, 40e6, k, 1) == sm.sync_update_seconds(0.5, 40e6, k)
    # Ring AllReduce on PLAIN, 4 GPUs on 4 nodes: 2 * 3 / 4 * 1e9 / 1e9 = 1.5 s.
    assert sm.sync_update_seconds(1.0, 1e9, 4, PLAIN) == pytest.approx(2.5)
    # Averaging every 4 updates pays a quarter of it per update.
    assert sm.local_update_seconds(1.0, 1e9, 4, 4, PLAIN) == pytest.approx(1.375)
    with pytest.raises(ValueError, match='period'):
        sm.local_update_seconds(1.0, 1e9, 4, 0)


def test_async_with_one_worker_and_free_communication_is_the_compute():
    assert sm.async_update_seconds(0.8, 40e6, 1, FREE) == 0.8
    p = sm.predict_mode('async', 1, 16, 0.05, 40e6, FREE)
    assert p.update_seconds == pytest.approx(0.8) and p.ratio == pytest.approx(1.0)
    assert p.bound == 'compute'
    # Without communication cost every mode scales perfectly.
    for mode in sm.MODES:
        assert sm.predict_mode(mode, 48, 16, 0.05, 40e6, FREE).ratio == pytest.approx(48)


def test_async_overlaps_and_the_server_links_bound_it():
    # 4 workers, 1 GB pushed and pulled every update, 2 servers of 1 GB/s: the servers carry
    # 4 * 1 GB / (2 * 1 GB/s) = 2 s per round; a worker's own link 1 s; compute 1 s.
    times = sm.async_times(1.0, 1e9, 4, PLAIN, servers=2)
    assert times == pytest.approx((1.0, 1.0, 2.0))
    p = sm.predict_mode('async', 4, 1, 1.0, 1e9, PLAIN, servers=2)
    assert p.update_seconds == 2.0 and p.ratio == 2.0 and p.bound == 'server links'
    # Pushing every 2 updates alone does not help: pulls still move 1 GB per update.
    assert sm.async_update_seconds(1.0, 1e9, 4, PLAIN, servers=2, push_every=2) == 2.0
    # Pushing and pulling every 2 updates halves the traffic: compute bound again.
    p = sm.predict_mode('async', 4, 1, 1.0, 1e9, PLAIN, servers=2, push_every=2, pull_every=2)
    assert p.update_seconds == 1.0 and p.ratio == 4.0 and p.bound == 'compute'
    # With a slow compute the communication is hidden entirely (non-blocking).
    assert sm.async_update_seconds(5.0, 1e9, 4, PLAIN, servers=2) == 5.0
    # Three workers of a node share its link: 1 GB at 1/3 GB/s is 3 s (worker link bound).
    shared = sm.Cluster('shared', 3, math.inf, 1e9, 0.0)
    assert sm.predict_mode('async', 3, 1, 1.0, 1e9, shared, servers=3).bound == 'worker link'
    with pytest.raises(ValueError, match='servers'):
        sm.async_times(1.0, 1e9, 4, PLAIN, servers=0)
    with pytest.raises(ValueError, match='unknown mode'):
        sm.predict_mode('stale', 4, 1, 1.0, 1e9)


def test_tsubame_ring_and_compute_assumptions():
    ring = sm.TSUBAME25.ring_topology()
    # 48 GPUs on 16 nodes; the slowest hop is the PCIe 2.0 link (6 GB/s < 8 GB/s dual rail).
    assert ring.nodes(48) == 16 and ring.ring_link(48) == (6e9, 10e-6)
    assert sm.TSUBAME25.worker_bandwidth(48) == pytest.approx(8e9 / 3)
    p = presets.load('cnn11_imagenet_async_2015', 1)
    # 22.42 GFLOP forward at 224 (counted), x 3 for training, at 1.3 TFLOP/s.
    flops = scaling.forward_flops('cnn11', 1000, 224)
    assert flops / 1e9 == pytest.approx(22.42, abs=0.01)
    assert sm.preset_image_seconds(p) == pytest.approx(3 * flops / 1.3e12)


def test_paper003_preset():
    p = presets.load('cnn11_imagenet_async_2015', 48)
    assert (p.model, p.dataset, p.n_class, p.published_gpus) == ('cnn11', 'imagenet', 1000,
                                                                 (48,))
    assert (p.batchsize_per_gpu, p.epochs, p.insize, p.steps) == (16, 90, 224, (30, 60, 80))
    # eta = 0.01 at batch 128 (Krizhevsky et al.): one worker's update 0.00125, 48 x 16 0.06.
    assert p.reference_batch == 128 and p.peak_lr == pytest.approx(0.06)
    assert presets.load('cnn11_imagenet_async_2015', 1).peak_lr == pytest.approx(0.00125)
    assert (p.momentum, p.weight_decay, p.lars) == (0.9, 0.0005, False)
    assert presets.describe('cnn11_imagenet_async_2015')['paper'] == '003'
    path = presets.preset_path('cnn11_imagenet_async_2015')
    with open(path, encoding='utf-8') as f:
        text = f.read()
    assert '--parallelism async' in text  # the mode is the run's option: the file says how
    for line in text.splitlines():
        if re.match(r'[a-z_]+\s*=', line):
            comment = line.split('#', 1)[1]
            assert re.search(r'paper 003 [A-Za-z]|reading|unused|nothing', comment), line
    from chainer_yolo_dist.classification.models import CLASSIFIERS, build_classifier
    from chainer_yolo_dist.classification.cnn11 import CNN11
    assert CLASSIFIERS['cnn11'] is CNN11
    assert build_classifier('cnn11', 4, 1 / 8).n_conv == 11


def test_lars_variant_carries_gradient_lars_without_weight_decay_twice():
    import chainer
    import numpy as np
    from chainer_yolo_dist.core.optimizers import build_optimizer, hook_names
    lars = presets.load('darknet53_imagenet_2019_lars', 256)
    plain = presets.load('darknet53_imagenet_2019', 256)
    assert lars.lars and not plain.lars
    # Chainer's rate is the global rate times You et al.'s trust coefficient 0.001.
    assert lars.peak_lr == pytest.approx(plain.peak_lr * 0.001)
    assert presets.describe('darknet53_imagenet_2019_lars')['momentum / wd'] == \
        '0.9 / 0.0005 (LARS)'
    link = chainer.Link()
    with link.init_scope():
        link.w = chainer.Parameter(np.ones(3, np.float32))
    optimizer = build_optimizer(link, lars.peak_lr, lars.momentum, lars.weight_decay,
                                lars=lars.lars)
    assert hook_names(optimizer) == ['GradientLARS']


def test_simulate_scaling_predicts_paper003_and_the_doc_quotes_it(capsys):
    out = simulate_scaling(capsys, '--preset', 'cnn11_imagenet_async_2015', '--gpus', '1,3,12,48')
    line = [text for text in out.splitlines() if text.startswith('Paper 003')][0]
    assert 'over 30x' in line and 'predicted (async): 48.0x' in line
    assert '| 48 | sync | 0.8278 |' in out
    with open(os.path.join(REPO, 'docs', 'scaling_model.md'), encoding='utf-8') as f:
        doc = f.read()
    for row in [text for text in out.splitlines()
                if text.startswith('|') or text.startswith('Paper 003')]:
        assert row in doc, row
    # The options reach the model: at a (hypothetical) 1,000 TFLOP/s one server is the
    # bottleneck, four servers less so.
    fast = simulate_scaling(capsys, '--preset', 'cnn11_imagenet_async_2015', '--gpus', '48',
                            '--json', '--sustained-tflops', '1000')
    slow = simulate_scaling(capsys, '--preset', 'cnn11_imagenet_async_2015', '--gpus', '48',
                            '--json', '--sustained-tflops', '1000', '--servers', '4')
    assert json.loads(fast)['ratio'][0] < json.loads(slow)['ratio'][0] < 48
    sync = json.loads(simulate_scaling(capsys, '--preset', 'cnn11_imagenet_async_2015',
                                       '--gpus', '48', '--json', '--mode', 'sync'))
    assert sync['mode'] == 'sync' and 47 < sync['ratio'][0] < 48
