"""Kinetics SlowFast weights in PySlowFast / PyTorchVideo naming -> the ``--pretrained`` trunk.

No PyTorch checkpoint can be read here, so the source state dicts are generated from our own
network through the inverse mapping, with random values in every array; the naming itself is
pinned by the literal upstream names below (read from facebookresearch/SlowFast and
facebookresearch/pytorchvideo), with their shapes at SlowFast 8x8 R50.
"""
import importlib.util
import re

import numpy as np
import pytest

from chainer_yolo_dist.slowfast import convert, models
from chainer_yolo_dist.slowfast.networks import SlowFast
from conftest import check, run_python

SCRIPT = 'scripts/convert_slowfast_weights.py'

#: SlowFast 8x8 R50 with its 400-way Kinetics classifier: 34,566,488 parameters (PyTorchVideo
#: model zoo, SlowFast 8x8 R50: 34.57 M; docs/slowfast.md).
PUBLISHED_8X8_PARAMS = 34566488
KINETICS = 400
HEAD_IN = 2048 + 256

#: Names as the upstream modules produce them, with shapes at 8x8 R50 (laterals 7x1x1).
UPSTREAM = {
    'pyslowfast': {
        's1.pathway0_stem.conv.weight': (64, 3, 1, 7, 7),
        's1.pathway1_stem.conv.weight': (8, 3, 5, 7, 7),
        's1.pathway0_stem.bn.running_var': (64,),
        's1_fuse.conv_f2s.weight': (16, 8, 7, 1, 1),
        's2.pathway0_res0.branch1.weight': (256, 80, 1, 1, 1),
        's2.pathway0_res0.branch2.a.weight': (64, 80, 1, 1, 1),
        's2.pathway1_res0.branch2.a.weight': (8, 8, 3, 1, 1),
        's4.pathway0_res0.branch2.a.weight': (256, 640, 3, 1, 1),
        's4.pathway0_res5.branch2.b.weight': (256, 256, 1, 3, 3),
        's4_fuse.bn.running_mean': (256,),
        's5.pathway1_res2.branch2.c_bn.weight': (256,),
        's5.pathway0_res0.branch1_bn.bias': (2048,),
    },
    'pytorchvideo': {
        'blocks.0.multipathway_blocks.0.conv.weight': (64, 3, 1, 7, 7),
        'blocks.0.multipathway_blocks.1.norm.weight': (8,),
        'blocks.0.multipathway_fusion.conv_fast_to_slow.weight': (16, 8, 7, 1, 1),
        'blocks.1.multipathway_blocks.0.res_blocks.0.branch1_conv.weight': (256, 80, 1, 1, 1),
        'blocks.1.multipathway_blocks.0.res_blocks.0.branch1_norm.running_var': (256,),
        'blocks.3.multipathway_blocks.0.res_blocks.0.branch2.conv_a.weight': (256, 640, 3, 1, 1),
        'blocks.3.multipathway_fusion.norm.bias': (256,),
        'blocks.4.multipathway_blocks.1.res_blocks.2.branch2.norm_c.running_mean': (256,),
        'blocks.4.multipathway_blocks.1.res_blocks.2.branch2.conv_b.weight': (64, 64, 1, 3, 3),
    },
}
HEAD_NAMES = {'pyslowfast': 'head.projection', 'pytorchvideo': 'blocks.6.proj'}


def random_source(trunk, naming, head=None, seed=0):
    """A state dict of ``trunk``'s layout in ``naming`` with random values (variances > 0)."""
    rng = np.random.RandomState(seed)
    state = convert.to_source(trunk, naming)
    for name, value in list(state.items()):
        draw = rng.uniform(0.5, 1.5, value.shape) if name.endswith('running_var') else \
            rng.standard_normal(value.shape)
        state[name] = draw.astype(np.float32)
        if name.endswith('.running_var'):
            state[name[:-len('running_var')] + 'num_batches_tracked'] = np.array(1234)
    if head:
        state[head + '.weight'] = rng.standard_normal(
            (KINETICS, sum(trunk.out_channels))).astype(np.float32)
        state[head + '.bias'] = rng.standard_normal(KINETICS).astype(np.float32)
    return state


def assert_trunk_equals(trunk, state, naming):
    for ours, theirs in convert.name_map(trunk, naming).items():
        value = convert._array_of(trunk, ours)
        if theirs is None:
            assert value == 0  # Chainer BN's N
        else:
            np.testing.assert_array_equal(value, state[theirs], err_msg=ours)


@pytest.fixture(scope='module')
def r50():
    """The AVA detector on SlowFast R50 with 7x1x1 laterals (the 8x8 checkpoints' layout)."""
    return models.build_detector('slowfast_r50_k7', 80)


def test_r50_8x8_checkpoint_converts_loads_and_counts_the_published_parameters(r50, tmp_path):
    source = random_source(r50.trunk, 'pyslowfast', HEAD_NAMES['pyslowfast'])
    # The source's parameters (BN running statistics and counters excluded) with the
    # Kinetics-400 classifier: SlowFast 8x8 R50's published count.
    n = sum(v.size for k, v in source.items()
            if not k.endswith(('running_mean', 'running_var', 'num_batches_tracked')))
    assert n == PUBLISHED_8X8_PARAMS
    for name, shape in UPSTREAM['pyslowfast'].items():
        assert source[name].shape == shape, name

    arrays, info = convert.convert(source, trunk=r50.trunk)  # checked against r50's layout
    assert info['n_params'] + info['n_dropped_params'] == PUBLISHED_8X8_PARAMS
    assert info['dropped'] == {'head.projection.weight': (KINETICS, HEAD_IN),
                               'head.projection.bias': (KINETICS,)}
    assert convert.fitting_model(info['config']) == 'slowfast_r50_k7'
    np.savez(tmp_path / 'trunk.npz', **arrays)
    for p in r50.trunk.params():  # forget the weights, then load the converted ones
        p.array[...] = 0
    assert models.load_trunk(str(tmp_path / 'trunk.npz'), r50) == ''
    assert_trunk_equals(r50.trunk, source, 'pyslowfast')


def test_upstream_names_at_r50_are_produced_with_their_shapes(r50):
    for naming in convert.NAMINGS:
        reverse = {v: k for k, v in convert.name_map(r50.trunk, naming).items() if v}
        n_bn = sum(1 for link in r50.trunk.links() if hasattr(link, 'avg_mean'))
        n_conv = sum(1 for link in r50.trunk.links() if hasattr(link, 'ksize'))
        assert len(reverse) == 4 * n_bn + n_conv
        for name, shape in UPSTREAM[naming].items():
            assert convert._array_of(r50.trunk, reverse[name]).shape == shape, name


@pytest.fixture(scope='module')
def narrow():
    return SlowFast(width=8, blocks=(1, 2, 1, 1), fusion_kernel=7)


@pytest.mark.parametrize('naming', convert.NAMINGS)
def test_narrow_round_trip_both_namings(narrow, naming):
    source = random_source(narrow, naming, HEAD_NAMES[naming])
    arrays, info = convert.convert(source)
    assert info['naming'] == naming
    assert info['config'] == {'width': 8, 'blocks': (1, 2, 1, 1), 'slow_only': False,
                              'beta_inv': 8, 'fusion_kernel': 7, 'fusion_ratio': 2}
    assert convert.fitting_model(info['config']) is None  # not one of the named R50s
    target = SlowFast(**info['config'])
    assert set(arrays) == set(convert.name_map(target, naming))
    for ours, theirs in convert.name_map(target, naming).items():
        if theirs is not None:
            np.testing.assert_array_equal(arrays[ours], source[theirs])


@pytest.mark.parametrize('naming, head', [('pyslowfast', 'head.projection'),
                                          ('pytorchvideo', 'blocks.5.proj')])
def test_slow_only_both_namings(naming, head):
    slow = SlowFast(width=8, blocks=(1, 1, 1, 1), slow_only=True)
    source = random_source(slow, naming, head)
    if naming == 'pytorchvideo':
        assert 'blocks.0.conv.weight' in source  # create_resnet: no multipathway blocks
        assert 'blocks.2.res_blocks.0.branch2.conv_a.weight' in source
    arrays, info = convert.convert(source)
    assert info['config'] == {'width': 8, 'blocks': (1, 1, 1, 1), 'slow_only': True}
    assert sorted(info['dropped']) == [head + '.bias', head + '.weight']
    np.testing.assert_array_equal(arrays['slow/conv1/W'], source[
        's1.pathway0_stem.conv.weight' if naming == 'pyslowfast' else 'blocks.0.conv.weight'])


def test_pytorchvideo_ava_detector_and_ddp_prefixes(narrow):
    source = random_source(narrow, 'pytorchvideo')
    detection = {'model.' + k: v for k, v in source.items()}
    detection['detection_head.proj.weight'] = np.zeros((80, 8 * 32 + 32), np.float32)
    detection['detection_head.proj.bias'] = np.zeros(80, np.float32)
    arrays, info = convert.convert(detection)
    assert sorted(info['dropped']) == ['detection_head.proj.bias', 'detection_head.proj.weight']
    wrapped = {'module.' + k: v for k, v in source.items()}
    assert convert.convert(wrapped)[0].keys() == arrays.keys()


def test_refusals_name_the_array(narrow, tmp_path):
    source = random_source(narrow, 'pyslowfast', 'head.projection')
    missing = dict(source)
    del missing['s3.pathway1_res1.branch2.b_bn.running_mean']
    with pytest.raises(ValueError, match=r'^missing s3\.pathway1_res1\.branch2\.b_bn\.'
                       r'running_mean \(for fast/stages/1/1/bn_b/avg_mean'):
        convert.convert(missing)
    extra = dict(source, **{'s3.pathway0_nonlocal1.conv_g.weight': np.zeros((4, 4))})
    with pytest.raises(ValueError, match=r'^unexpected s3\.pathway0_nonlocal1\.conv_g\.weight'):
        convert.convert(extra)
    shaped = dict(source)
    shaped['s4.pathway0_res0.branch2.a.weight'] = np.zeros((32, 80, 1, 1, 1), np.float32)
    with pytest.raises(ValueError, match=r'^s4\.pathway0_res0\.branch2\.a\.weight has shape '
                       r'\(32, 80, 1, 1, 1\), the network .* needs \(32, 80, 3, 1, 1\)'):
        convert.convert(shaped)  # an I3D-like temporal kernel where SlowFast has 3
    with pytest.raises(ValueError, match='neither PySlowFast'):
        convert.convert({'conv1.weight': np.zeros((64, 3, 7, 7))})
    with pytest.raises(ValueError, match='naming pytorchvideo asked, but the names are '
                       'pyslowfast'):
        convert.convert(source, 'pytorchvideo')


def test_script_writes_the_trunk_and_says_what_it_dropped(narrow, tmp_path):
    np.savez(tmp_path / 'state.npz', **random_source(narrow, 'pytorchvideo', 'blocks.6.proj'))
    proc = check(run_python([SCRIPT, str(tmp_path / 'state.npz'), str(tmp_path / 'trunk.npz')],
                            timeout=120))
    assert 'pytorchvideo naming; SlowFast width 8, blocks (1, 2, 1, 1)' in proc.stdout
    assert 'dropped classifier blocks.6.proj.weight (400, 288)' in proc.stdout
    assert 'the classifier had 400 classes (Kinetics-400)' in proc.stdout
    with np.load(tmp_path / 'trunk.npz') as f:
        assert 'slow/conv1/W' in f.files and 'laterals/0/conv/W' in f.files
    # A mis-shaped array: one line naming the file and the array, nothing written.
    bad = random_source(narrow, 'pyslowfast')
    name = 's4.pathway0_res0.branch2.a.weight'
    bad[name] = bad[name][:, :, :1]  # 1x1x1 where SlowFast's res4 has 3x1x1
    np.savez(tmp_path / 'bad.npz', **bad)
    main = _script_main()
    with pytest.raises(SystemExit, match=r'^%s: %s has shape %s, the network' % (
            re.escape(str(tmp_path / 'bad.npz')), re.escape(name),
            re.escape(str(bad[name].shape)))):
        main([str(tmp_path / 'bad.npz'), str(tmp_path / 'out.npz')])
    (tmp_path / 'junk.npz').write_text('not a zip')
    with pytest.raises(SystemExit, match=r'junk\.npz: not a readable \.npz'):
        main([str(tmp_path / 'junk.npz'), str(tmp_path / 'out.npz')])
    assert not (tmp_path / 'out.npz').exists()


def _script_main():
    spec = importlib.util.spec_from_file_location('convert_script', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_laterals_of_another_kernel_do_not_fit_the_paper_network(narrow, tmp_path):
    # PySlowFast's 7x1x1 laterals in slowfast_narrow (the paper's 5x1x1): refused by name.
    arrays, _ = convert.convert(random_source(narrow, 'pyslowfast'))
    np.savez(tmp_path / 'k7.npz', **arrays)
    detector = models.build_detector('slowfast_narrow', 7)
    with pytest.raises(ValueError, match=r'k7\.npz: does not fit the trunk'):
        models.load_trunk(str(tmp_path / 'k7.npz'), detector)
