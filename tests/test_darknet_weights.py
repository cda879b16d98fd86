"""Darknet's binary weights into Darknet-19/53 and ChainerCV's YOLOv2/YOLOv3.

The tests write Darknet files themselves, from known arrays, following a transcription of
Darknet's cfg files made here independently of the importer (``*_SPEC`` below: filters,
kernel, input channels, BN or bias, per convolution in cfg order). They check that each
array lands in the layer Darknet means, that writing the loaded network back gives the
same bytes, and that broken files give one clear error and load nothing.
"""
import os

import chainer
import numpy as np
import pytest
from chainercv.links import Conv2DBNActiv
from chainercv.links import YOLOv2
from chainercv.links import YOLOv3

from chainer_yolo_dist.classification.darknet import Darknet19
from chainer_yolo_dist.classification.darknet import Darknet53
from chainer_yolo_dist.detection.darknet_weights import darknet_layout
from chainer_yolo_dist.detection.darknet_weights import is_darknet_weights_file
from chainer_yolo_dist.detection.darknet_weights import load_darknet_trunk
from chainer_yolo_dist.detection.darknet_weights import load_darknet_weights
from chainer_yolo_dist.detection.darknet_weights import read_darknet_weights
from chainer_yolo_dist.detection.darknet_weights import save_darknet_weights

N_CLASS = 5      # classifier heads: any class count works, the trunk is what matters
N_FG = 1         # detector heads: YOLOv2 5 * (5 + 1) = 30 outputs, YOLOv3 3 * 6 = 18

# --- Darknet's cfg files, transcribed: (name in Chainer, filters, size, in, BN) --------------


def darknet19_trunk_spec(prefix):
    """darknet19_448.cfg, its 18 conv+BN layers (YOLO9000 Table 6)."""
    rows = [(32, 3), (64, 3), (128, 3), (64, 1), (128, 3), (256, 3), (128, 1), (256, 3),
            (512, 3), (256, 1), (512, 3), (256, 1), (512, 3),
            (1024, 3), (512, 1), (1024, 3), (512, 1), (1024, 3)]
    spec, c = [], 3
    for i, (n, k) in enumerate(rows):
        spec.append(('%s/%d' % (prefix, i), n, k, c, True))
        c = n
    return spec


def darknet53_trunk_spec(prefix):
    """darknet53.cfg, its 52 conv+BN layers, named as Darknet53Extractor's children."""
    spec = [('%s/0' % prefix, 32, 3, 3, True)]
    child, c = 1, 32
    for n_block, width in zip((1, 2, 8, 8, 4), (64, 128, 256, 512, 1024)):
        spec.append(('%s/%d' % (prefix, child), width, 3, c, True))
        child += 1
        for _ in range(n_block):
            spec.append(('%s/%d/0' % (prefix, child), width // 2, 1, width, True))
            spec.append(('%s/%d/1' % (prefix, child), width, 3, width // 2, True))
            child += 1
        c = width
    return spec


DARKNET19_SPEC = darknet19_trunk_spec('/trunk') + [('/head', N_CLASS, 1, 1024, False)]
DARKNET53_SPEC = darknet53_trunk_spec('/trunk') + [('/head', N_CLASS, 1, 1024, False)]

# yolov2-voc.cfg after the trunk: 3x3 1024, 3x3 1024, route -9, 1x1 64 on the 13th conv's
# 512 channels, reorg (x4 channels), route -1,-4 (256 + 1024), 3x3 1024, 1x1 head.
YOLOV2_SPEC = darknet19_trunk_spec('/extractor') + [
    ('/extractor/18', 1024, 3, 1024, True), ('/extractor/19', 1024, 3, 1024, True),
    ('/extractor/20', 64, 1, 512, True), ('/extractor/21', 1024, 3, 1280, True),
    ('/subnet', 5 * (5 + N_FG), 1, 1024, False)]


def yolov3_spec():
    """yolov3.cfg: trunk, then per scale [1x1 before upsample], 5 neck convs, 3x3, head."""
    spec = darknet53_trunk_spec('/extractor')
    ext, c = 29, 1024
    for scale, n in enumerate((512, 256, 128)):
        if scale:
            spec.append(('/extractor/%d' % ext, n, 1, 2 * n, True))   # route -4, then 1x1
            ext += 1
            c = n + 2 * n            # upsampled n, concatenated with the trunk's 2n
        for i in range(5):
            k, filters = (1, n) if i % 2 == 0 else (3, 2 * n)
            spec.append(('/extractor/%d' % ext, filters, k, c, True))
            c = filters
            ext += 1
        spec.append(('/subnet/%d/0' % scale, 2 * n, 3, n, True))
        spec.append(('/subnet/%d/1' % scale, 3 * (5 + N_FG), 1, 2 * n, False))
    return spec


YOLOV3_SPEC = yolov3_spec()
HEADS = {'/subnet', '/subnet/0/1', '/subnet/1/1', '/subnet/2/1'}


def conv_arrays(seed, k, row):
    """The known arrays of conv ``k``, in Darknet's file order, as {name: array}."""
    _, n, size, c, bn = row
    rng = np.random.default_rng([seed, k])

    def signed(shape):
        return rng.random(shape, dtype=np.float32) * 2 - 1

    arrays = {'beta' if bn else 'bias': signed(n)}
    if bn:
        arrays['gamma'] = signed(n)
        arrays['mean'] = signed(n)
        arrays['var'] = rng.random(n, dtype=np.float32) + 0.5
    arrays['W'] = signed((n, c, size, size))
    return arrays


def write_darknet_file(path, spec, seed, version=(0, 2, 0), seen=123456789012):
    """A Darknet weights file, written here byte by byte from the transcribed cfg."""
    with open(path, 'wb') as f:
        f.write(np.array(version, '<i4').tobytes())
        f.write(np.array([seen], '<i8' if version[0] * 10 + version[1] >= 2 else '<i4')
                .tobytes())
        for k, row in enumerate(spec):
            for array in conv_arrays(seed, k, row).values():
                f.write(array.astype('<f4').tobytes())
    return str(path)


def chainercv_head(array, n_fg):
    """Darknet's per-anchor (x, y, w, h, obj, cls) -> ChainerCV's (y, x, h, w, obj, cls)."""
    per_anchor = 5 + n_fg
    grouped = array.reshape((-1, per_anchor) + array.shape[1:])
    return grouped[:, [1, 0, 3, 2] + list(range(4, per_anchor))].reshape(array.shape)


def link_at(root, name):
    return dict(root.namedlinks())[name]


def assert_layer_holds(root, spec, seed, k):
    """Conv ``k`` of the file sits, value for value, in the link the cfg means."""
    name = spec[k][0]
    expected = conv_arrays(seed, k, spec[k])
    link = link_at(root, name)
    if spec[k][4]:
        np.testing.assert_array_equal(link.bn.beta.array, expected['beta'])
        np.testing.assert_array_equal(link.bn.gamma.array, expected['gamma'])
        np.testing.assert_array_equal(link.bn.avg_mean, expected['mean'])
        np.testing.assert_array_equal(link.bn.avg_var, expected['var'])
        np.testing.assert_array_equal(link.conv.W.array, expected['W'])
        assert link.conv.b is None
    else:
        bias, weight = expected['bias'], expected['W']
        if name in HEADS:
            bias, weight = chainercv_head(bias, N_FG), chainercv_head(weight, N_FG)
        np.testing.assert_array_equal(link.b.array, bias)
        np.testing.assert_array_equal(link.W.array, weight.reshape(link.W.shape))


def snapshot(link, prefixes=('',)):
    """Copies of the parameters and BN statistics whose names start with ``prefixes``."""
    out = {name: np.array(p.array) for name, p in link.namedparams()
           if name.startswith(prefixes)}
    for name, sub in link.namedlinks():
        if isinstance(sub, chainer.links.BatchNormalization) and name.startswith(prefixes):
            out[name + '/avg_mean'] = np.array(sub.avg_mean)
            out[name + '/avg_var'] = np.array(sub.avg_var)
    return out


def assert_unchanged(before, link):
    after = snapshot(link)
    assert before
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value, err_msg=key)


def materialize(detector):
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        detector(np.zeros((1, 3, 64, 64), np.float32))
    return detector


# Building the paper networks costs seconds each (tens of millions of initial values): each
# is built once and shared; every test snapshots what it checks before loading into it.
_NETS = {
    'darknet19': lambda: Darknet19(N_CLASS),
    'darknet53': lambda: Darknet53(N_CLASS),
    'yolov2': lambda: materialize(YOLOv2(n_fg_class=N_FG)),
    'yolov3': lambda: materialize(YOLOv3(n_fg_class=N_FG)),
}


@pytest.fixture(scope='module')
def nets():
    built = {}

    def get(name):
        if name not in built:
            built[name] = _NETS[name]()
        return built[name]
    return get


# --- The format itself ------------------------------------------------------------------------

def test_header_seen_is_int64_from_version_0_2_and_int32_before(tmp_path):
    new = write_darknet_file(tmp_path / 'new.weights', DARKNET19_SPEC[:1], 0, (0, 2, 0), 2 ** 40)
    old = write_darknet_file(tmp_path / 'old.weights', DARKNET19_SPEC[:1], 0, (0, 1, 0), 7)
    header, values = read_darknet_weights(new)
    assert header == {'major': 0, 'minor': 2, 'revision': 0, 'seen': 2 ** 40, 'header_bytes': 20}
    header_old, values_old = read_darknet_weights(old)
    assert header_old['seen'] == 7 and header_old['header_bytes'] == 16
    first = conv_arrays(0, 0, DARKNET19_SPEC[0])
    assert values.dtype == np.float32 and values.size == 4 * 32 + 32 * 3 * 9
    np.testing.assert_array_equal(values[:32], first['beta'])
    np.testing.assert_array_equal(values_old, values)


def test_writer_header_follows_darknets_version_rule(tmp_path, nets):
    old = str(tmp_path / 'old.weights')
    assert save_darknet_weights(old, nets('darknet19'), n_layers=1, seen=5,
                                version=(0, 1, 0)) == ['/trunk/0']
    header, values = read_darknet_weights(old)
    assert (header['seen'], header['header_bytes'], values.size) == (5, 16, 4 * 32 + 864)
    assert os.path.getsize(old) == 16 + 4 * values.size


def test_is_darknet_weights_file_tells_darknet_from_npz_by_content(tmp_path):
    weights = write_darknet_file(tmp_path / 'x.weights', DARKNET19_SPEC[:2], 0)
    renamed = tmp_path / 'pretrained.bin'
    os.link(weights, renamed)
    npz = tmp_path / 'model.npz'
    chainer.serializers.save_npz(str(npz), chainer.links.Linear(3, 2))
    text = tmp_path / 'notes.weights'
    text.write_text('these are not weights, only text\n')
    assert is_darknet_weights_file(weights)
    assert is_darknet_weights_file(str(renamed))
    assert not is_darknet_weights_file(str(npz))
    # Named as Darknet names its files and no zip archive: refused as Darknet weights, by
    # what is wrong with it, not as a broken .npz.
    assert is_darknet_weights_file(str(text))
    junk = tmp_path / 'junk.bin'
    junk.write_text('these are not weights, only text\n')
    assert not is_darknet_weights_file(str(junk))
    assert not is_darknet_weights_file(str(tmp_path / 'missing.conv.74'))
    with pytest.raises(ValueError, match=r'notes.weights: not a Darknet weights file \(its '
                       r'header is no version Darknet writes, 0.1.x or 0.2.x\), nor an .npz'):
        read_darknet_weights(str(text))


def test_layouts_count_layers_as_darknet_does(nets):
    """Entry i is Darknet layer i: the .conv.N cutoffs fall where Darknet's do."""
    cases = [('darknet19', 26, 19, 23, 18), ('darknet53', 78, 53, 74, 52),
             ('yolov2', 32, 23, 23, 18), ('yolov3', 107, 75, 74, 52)]
    for name, n_layers, n_convs, cutoff, n_trunk in cases:
        layout = darknet_layout(nets(name))
        assert [layer.index for layer in layout] == list(range(n_layers))
        convs = [layer for layer in layout if layer.kind == 'convolutional']
        assert len(convs) == n_convs
        assert sum(layer.kind == 'convolutional' for layer in layout[:cutoff]) == n_trunk
    yolov3 = darknet_layout(nets('yolov3'))
    assert yolov3[74].kind == 'shortcut'        # darknet53.conv.74 stops before it
    assert [yolov3[i].kind for i in (82, 83, 85, 86, 94, 106)] == \
        ['yolo', 'route', 'upsample', 'route', 'yolo', 'yolo']
    yolov2 = darknet_layout(nets('yolov2'))
    assert [yolov2[i].kind for i in (25, 27, 28, 31)] == ['route', 'reorg', 'route', 'region']


# --- Full files, every layer where it belongs -------------------------------------------------

def check_full_file(tmp_path, link, spec, seed, name):
    path = write_darknet_file(tmp_path / name, spec, seed)
    loaded = load_darknet_weights(path, link)
    assert loaded == [row[0] for row in spec]
    middle = len(spec) // 2
    for k in {0, 1, middle, len(spec) - 2, len(spec) - 1}:
        assert_layer_holds(link, spec, seed, k)
    # Writing the loaded network back reproduces the file byte for byte: every value of
    # every layer went where the cfg says, in both directions.
    again = str(tmp_path / ('again_' + name))
    assert save_darknet_weights(again, link, seen=123456789012) == loaded
    assert os.path.getsize(again) == os.path.getsize(path)
    with open(path, 'rb') as a, open(again, 'rb') as b:
        for offset in range(0, os.path.getsize(path), 1 << 24):
            assert a.read(1 << 24) == b.read(1 << 24), 'files differ after byte %d' % offset
    os.remove(again)
    return path


def test_darknet19_full_file(tmp_path, nets):
    check_full_file(tmp_path, nets('darknet19'), DARKNET19_SPEC, 19, 'darknet19_448.weights')


def test_darknet53_full_file_head_is_darknets_1x1_conv(tmp_path, nets):
    model = nets('darknet53')
    check_full_file(tmp_path, model, DARKNET53_SPEC, 53, 'darknet53.weights')
    assert model.head.W.shape == (N_CLASS, 1024)


def test_yolov2_full_file_reorg_branch_and_head_order(tmp_path, nets):
    model = nets('yolov2')
    check_full_file(tmp_path, model, YOLOV2_SPEC, 2, 'yolov2-voc.weights')
    for k in (18, 19, 20, 21):      # the passthrough conv (512 in) and the 1280-in conv
        assert_layer_holds(model, YOLOV2_SPEC, 2, k)
    # ChainerCV's first channel is Darknet's second (y before x).
    darknet = conv_arrays(2, 22, YOLOV2_SPEC[22])
    assert model.subnet.b.array[0] == darknet['bias'][1]
    assert model.subnet.b.array[6 + 3] == darknet['bias'][6 + 2]


def test_yolov3_full_file_subnets_between_neck_convs(tmp_path, nets):
    model = nets('yolov3')
    check_full_file(tmp_path, model, YOLOV3_SPEC, 3, 'yolov3.weights')
    names = [row[0] for row in YOLOV3_SPEC]
    for name in ('/extractor/33', '/subnet/0/0', '/subnet/0/1', '/extractor/34',
                 '/subnet/1/1', '/extractor/40', '/extractor/45', '/subnet/2/0'):
        assert_layer_holds(model, YOLOV3_SPEC, 3, names.index(name))


# --- Partial files into the detectors' extractors (--pretrained) ------------------------------

def test_darknet19_conv23_fills_the_yolov2_trunk_only(tmp_path, nets):
    spec = darknet19_trunk_spec('/extractor')
    path = write_darknet_file(tmp_path / 'darknet19_448.conv.23', spec, 23)
    model = nets('yolov2')
    before = snapshot(model, ('/extractor/18/', '/extractor/21/', '/subnet/'))
    loaded = load_darknet_weights(path, model)       # cutoff 23 from the name
    assert loaded == ['/extractor/%d' % i for i in range(18)]
    for k in (0, 8, 17):
        assert_layer_holds(model, spec, 23, k)
    assert_unchanged(before, model)
    assert load_darknet_trunk(path, model) == loaded
    again = str(tmp_path / 'again.conv.23')          # the writer makes the same partial file
    assert save_darknet_weights(again, model, seen=123456789012) == loaded
    with open(path, 'rb') as a, open(again, 'rb') as b:
        assert a.read() == b.read()
    classifier = nets('darknet19')
    head = snapshot(classifier, ('/head/',))
    assert len(load_darknet_weights(path, classifier)) == 18
    assert_layer_holds(classifier, darknet19_trunk_spec('/trunk'), 23, 17)
    assert_unchanged(head, classifier)


def test_darknet53_conv74_fills_the_yolov3_trunk_only(tmp_path, nets):
    spec = darknet53_trunk_spec('/extractor')
    path = write_darknet_file(tmp_path / 'darknet53.conv.74', spec, 74)
    model = nets('yolov3')
    before = snapshot(model, ('/extractor/29/', '/extractor/45/', '/subnet/'))
    loaded = load_darknet_trunk(path, model)
    assert loaded == [row[0] for row in spec] and len(loaded) == 52
    for k in (0, 1, 2, 25, 50, 51):
        assert_layer_holds(model, spec, 74, k)
    assert_unchanged(before, model)
    classifier = nets('darknet53')
    head = snapshot(classifier, ('/head/',))
    assert len(load_darknet_weights(path, classifier)) == 52
    assert_layer_holds(classifier, darknet53_trunk_spec('/trunk'), 74, 51)
    assert_unchanged(head, classifier)


def test_trunk_from_a_full_classifier_file_skips_its_head(tmp_path, nets):
    path = write_darknet_file(tmp_path / 'darknet19.weights', DARKNET19_SPEC, 9)
    model = nets('yolov2')
    assert len(load_darknet_trunk(path, model)) == 18
    assert_layer_holds(model, darknet19_trunk_spec('/extractor'), 9, 17)


def test_partial_file_shorter_than_the_trunk_is_refused(tmp_path, nets):
    path = write_darknet_file(tmp_path / 'darknet53.conv.20', darknet53_trunk_spec('/x')[:14], 1)
    with pytest.raises(ValueError, match=r'darknet53\.conv\.20 holds the first 20 Darknet '
                                         r'layers; the YOLOv3 trunk needs the first 74'):
        load_darknet_trunk(path, nets('yolov3'))


# --- Broken files: one clear error, nothing loaded --------------------------------------------

@pytest.fixture(scope='module')
def darknet19_file(tmp_path_factory):
    path = tmp_path_factory.mktemp('d19') / 'darknet19.weights'
    return write_darknet_file(path, DARKNET19_SPEC, 5)


def truncated_copy(src, dst, n_bytes):
    with open(src, 'rb') as f:
        data = f.read()
    with open(dst, 'wb') as f:
        f.write(data[:n_bytes])
    return str(dst)


def file_bytes(spec, n_convs):
    return 20 + 4 * sum(a.size for k, row in enumerate(spec[:n_convs])
                        for a in conv_arrays(0, k, row).values())


def test_truncated_inside_a_layer_names_the_file_and_the_layers_read(tmp_path, darknet19_file,
                                                                     nets):
    cut = truncated_copy(darknet19_file, tmp_path / 'cut.weights',
                         file_bytes(DARKNET19_SPEC, 9) + 1000)
    model = nets('darknet19')
    before = snapshot(model)
    with pytest.raises(ValueError) as error:
        load_darknet_weights(cut, model)
    message = str(error.value)
    assert message.startswith(cut + ': truncated Darknet weights')
    assert '9 of 19 convolutional layers were read' in message
    assert 'inside layer 10 (/trunk/9' in message and '\n' not in message
    assert_unchanged(before, model)


def test_truncated_at_a_layer_boundary(tmp_path, darknet19_file, nets):
    cut = truncated_copy(darknet19_file, tmp_path / 'cut.weights',
                         file_bytes(DARKNET19_SPEC, 18))
    with pytest.raises(ValueError, match='18 of 19 convolutional layers were read'):
        load_darknet_weights(cut, nets('darknet19'))


def test_values_left_over_are_counted(tmp_path, darknet19_file, nets):
    longer = truncated_copy(darknet19_file, tmp_path / 'long.weights', 10 ** 9)
    with open(longer, 'ab') as f:
        f.write(np.zeros(3, '<f4').tobytes())
    with pytest.raises(ValueError, match=r'long\.weights: 12 bytes \(3 float32 values\) left '
                                         r'over after all 19 convolutional layers'):
        load_darknet_weights(longer, nets('darknet19'))
    # More classes in the file than in the model: also values left over (1 bias, 1024 W).
    more = DARKNET19_SPEC[:-1] + [('/head', N_CLASS + 1, 1, 1024, False)]
    more_classes = write_darknet_file(tmp_path / 'more.weights', more, 6)
    with pytest.raises(ValueError, match=r'4100 bytes \(1025 float32 values\) left over'):
        load_darknet_weights(more_classes, nets('darknet19'))


def test_a_file_of_another_network_does_not_line_up(darknet19_file, nets):
    model = nets('darknet53')
    before = snapshot(model)
    # Its third convolution (Darknet-53's 1x1, 32 filters) reads into its running variance
    # values that Darknet-19 stored as a 128-filter layer's biases, some negative.
    with pytest.raises(ValueError, match=r'layer 3 of 53 \(/trunk/2/0\) has negative values in '
                                         r'bn/avg_var: the file does not hold Darknet53 \(its '
                                         r'layers do not line up\)\. Nothing was loaded\.'):
        load_darknet_weights(darknet19_file, model)
    assert_unchanged(before, model)


def test_narrow_classifiers_and_other_detectors_are_refused(darknet19_file):
    with pytest.raises(ValueError, match='channels_scale 1.*channels_scale 0.125'):
        load_darknet_weights(darknet19_file, Darknet19(N_CLASS, channels_scale=1 / 8))
    from chainer_yolo_dist.detection.models import YOLOv3Small
    with pytest.raises(ValueError, match='no Darknet weights layout for a YOLOv3Small'):
        load_darknet_weights(darknet19_file, YOLOv3Small(n_fg_class=N_FG))


def test_pretrained_takes_darknets_own_file_for_the_paper_detector(tmp_path, nets):
    # --pretrained darknet19_448.conv.23 works directly: checked before any data is read,
    # loaded into the detector's trunk.
    from chainer_yolo_dist.detection.transfer import check_pretrained, load_pretrained
    spec = darknet19_trunk_spec('/extractor')
    path = write_darknet_file(tmp_path / 'darknet19_448.conv.23', spec, 23)
    assert check_pretrained(path, 'yolov2') is None
    with pytest.raises(ValueError, match='Darknet weights load into the paper models'):
        check_pretrained(path, 'yolov3_small')
    model = nets('yolov2')
    assert load_pretrained(path, model) == '18 Darknet layers'
    assert_layer_holds(model, spec, 23, 17)


# --- Darknet's batch normalisation ------------------------------------------------------------

def test_loaded_layers_normalise_with_darknets_eps(tmp_path, nets):
    # Darknet's GPU forward divides by sqrt(var + 1e-5), ChainerCV's Conv2DBNActiv by
    # sqrt(var + 2e-5): with a running variance of 1e-6..1e-3 the outputs would differ by up
    # to 0.2 relative, so the layers a Darknet file fills take Darknet's eps.
    spec = darknet19_trunk_spec('/extractor')
    arrays = [conv_arrays(7, k, row) for k, row in enumerate(spec)]
    arrays[0]['var'][:4] = [1e-6, 1e-5, 1e-4, 1e-3]        # tiny variances, as trained nets have
    path = str(tmp_path / 'darknet19_448.conv.23')
    with open(path, 'wb') as f:
        f.write(np.array([0, 2, 0], '<i4').tobytes() + np.array([0], '<i8').tobytes())
        for layer in arrays:
            for array in layer.values():
                f.write(array.astype('<f4').tobytes())
    assert Conv2DBNActiv(3, 4, 3).bn.eps == 2e-5    # ChainerCV's (Chainer's) default
    model = nets('yolov2')
    for i in range(22):    # as built: the shared model may hold an earlier test's file
        model.extractor[i].bn.eps = 2e-5
    load_darknet_trunk(path, model)
    assert {model.extractor[i].bn.eps for i in range(18)} == {1e-5}
    assert {model.extractor[i].bn.eps for i in (18, 19, 20, 21)} == {2e-5}   # not in the file

    first, a = model.extractor[0], arrays[0]
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        conv = first.conv(x).array
        out = first(x).array
    shape = (1, -1, 1, 1)
    darknet = ((conv - a['mean'].reshape(shape)) / np.sqrt(a['var'].reshape(shape) + 1e-5)
               * a['gamma'].reshape(shape) + a['beta'].reshape(shape))
    darknet = np.where(darknet > 0, darknet, 0.1 * darknet)   # Darknet's leaky ReLU
    np.testing.assert_allclose(out, darknet, rtol=1e-4, atol=1e-4)
    # The same formula at ChainerCV's eps does not match on the tiny channels: eps matters.
    chainercv = ((conv - a['mean'].reshape(shape)) / np.sqrt(a['var'].reshape(shape) + 2e-5)
                 * a['gamma'].reshape(shape) + a['beta'].reshape(shape))
    chainercv = np.where(chainercv > 0, chainercv, 0.1 * chainercv)
    assert not np.allclose(out[:, :4], chainercv[:, :4], rtol=1e-2, atol=1e-4)


def test_darknets_eps_survives_model_npz_and_evaluation_loads(tmp_path, nets):
    # A run trained with Darknet's eps must be evaluated with it: model.npz carries the eps
    # of the layers a Darknet file filled, and eval_yolo's load gives it back.
    from chainer_yolo_dist.detection.evaluation import _load_model
    spec = darknet19_trunk_spec('/extractor')
    path = write_darknet_file(tmp_path / 'darknet19_448.conv.23', spec, 3, (0, 2, 0), 0)
    model = nets('yolov2')
    load_darknet_trunk(str(path), model)
    saved = str(tmp_path / 'model.npz')
    chainer.serializers.save_npz(saved, model)
    fresh = _NETS['yolov2']()
    assert {fresh.extractor[i].bn.eps for i in range(22)} == {2e-5}
    _load_model(saved, fresh)
    assert {fresh.extractor[i].bn.eps for i in range(18)} == {1e-5}
    assert {fresh.extractor[i].bn.eps for i in (18, 19, 20, 21)} == {2e-5}
    # A model.npz written before (no eps entries) loads as it did.
    plain = str(tmp_path / 'plain.npz')
    chainer.serializers.save_npz(plain, _NETS['yolov2']())
    again = _NETS['yolov2']()
    _load_model(plain, again)
    assert {again.extractor[i].bn.eps for i in range(22)} == {2e-5}
