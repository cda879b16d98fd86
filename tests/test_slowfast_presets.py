"""Paper 004's preset (sec. 3-4) and the CPU demo's, and the SlowFast system's checks."""
import re

import pytest

from chainer_yolo_dist.core import presets

approx = pytest.approx


def _key_lines(name):
    with open(presets.preset_path(name), encoding='utf-8') as f:
        return [line.rstrip('\n') for line in f if re.match(r'[a-z_]+\s*=', line)]


@pytest.mark.parametrize('nodes', [1, 16, 32, 64, 128])
def test_lr_is_005_per_node_with_8_clips_per_gpu(nodes):
    """Paper 004 sec. 3.3: 32 labels per node (4 GPUs x 8), lr 0.05 n for n nodes."""
    p = presets.load('slowfast_ava_2021', 4 * nodes)
    assert p.global_batchsize == 32 * nodes
    assert p.peak_lr == approx(0.05 * nodes)


def test_ava_schedule_warms_up_five_epochs_then_steps_at_10_and_15():
    p = presets.load('slowfast_ava_2021', 64)  # 16 nodes: peak 0.8
    s = p.schedule()
    assert p.published_gpus == (4, 64, 128, 256, 512) and p.epochs == 20
    # Reading: linear from eta (one node's rate) at epoch 0 to the peak at epoch 5.
    assert s(0) == approx(0.05) and s(2.5) == approx(0.425) and s(5) == approx(0.8)
    assert s(9.99) == approx(0.8) and s(10) == approx(0.08) and s(15) == approx(0.008)
    assert (p.model, p.dataset, p.insize, p.clip_frames) == ('slowfast_r50', 'ava', 224, 16)
    assert (p.momentum, p.weight_decay, p.pretrained) == (0.9, 1e-7, 'kinetics600')


def test_every_ava_key_cites_paper_004_and_its_section():
    lines = _key_lines('slowfast_ava_2021')
    assert len(lines) == len(presets.read_file(presets.preset_path('slowfast_ava_2021')))
    for line in lines:
        comment = line.split('#', 1)[1] if '#' in line else ''
        assert re.search(r'paper 004 (sec\.|title|A\.1)|unused by step decay', comment), line


def test_every_demo_key_cites_paper_004_or_says_why_it_departs():
    lines = _key_lines('slowfast_demo')
    assert len(lines) == len(presets.read_file(presets.preset_path('slowfast_demo')))
    for line in lines:
        comment = line.split('#', 1)[1].strip() if '#' in line else ''
        assert (re.search(r'paper 004 (sec\.|Table)', comment) or comment.startswith('demo:')
                or comment.startswith('unused')), line
    p = presets.load('slowfast_demo', 2)
    assert (p.model, p.dataset, p.clip_frames, p.insize) == ('slowfast_narrow',
                                                             'synthetic_actions', 8, 32)
    assert p.peak_lr == approx(2 * p.eta)


def test_clip_frames_is_optional_and_image_presets_have_none():
    assert presets.load('yolov2_voc_2018', 1).clip_frames == 0
    assert presets.load('slowfast_ava_2021', 4, clip_frames=32).clip_frames == 32
    with pytest.raises(ValueError, match='clip_frames'):
        presets.load('slowfast_ava_2021', 4, clip_frames=-1)


def test_the_system_refuses_what_it_cannot_train(tmp_path):
    from chainer_yolo_dist.slowfast import recipe
    with pytest.raises(ValueError, match='slowfast_r50'):
        recipe.check(presets.load('yolov3_voc_2019', 8), {})
    with pytest.raises(ValueError, match='multiple of alpha'):
        recipe.check(presets.load('slowfast_demo', 1, clip_frames=6), {})
    bad = tmp_path / 'weights.npz'
    bad.write_bytes(b'not a zip')
    with pytest.raises(ValueError, match='weights.npz'):
        recipe.check(presets.load('slowfast_demo', 1), {'pretrained': str(bad)})
