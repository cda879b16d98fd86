"""GPU check, stage ``parity``: every loss and custom operator gives on CuPy what it gives on
NumPy, in value and in gradient.

Each case builds the same float32 inputs and the same host-initialised links (seeded) twice,
once per device, runs the package's own function (which on NumPy takes its CPU path: the
tap-sum conv3d, the matrix-product RoIAlign; on CuPy Chainer's kernels), and back-propagates
one objective: every output times fixed random weights, summed. Compared: every output, and
the gradient of every float input and every link parameter.

Criterion per array (normwise, as float32 sums in another order differ most where the values
are largest): ``max |gpu - cpu| <= rtol * max |cpu| + 1e-7``, ``rtol = 1e-4`` for a single
operator or loss and ``1e-3`` for a whole network (several layers of im2col + cuBLAS against
NumPy's BLAS). NaN or infinity on either side fails.

Cases run in test mode, except the SlowFast head and network, which run in training mode:
batch statistics, and the head's dropout masks, which the package draws on the host from
NumPy's generator (``slowfast.head.dropout_mask``), seeded the same for both devices.
"""
import collections
import sys
import time

import numpy as np

import chainer
import chainer.functions as F
import chainer.links as L

from chainer_yolo_dist.benchmarks import gpu_check_worker as worker

#: Absolute slack of the criterion (the scale of float32 rounding of values near 1e-3).
ATOL = 1e-7
OPERATOR_RTOL = 1e-4
NETWORK_RTOL = 1e-3

#: One parity case: ``setup(rng) -> (inputs {name: array}, links {name: Link}, extra)``, with
#: links built from NumPy's seeded generator; ``forward(v, links, extra) -> {name: output}``,
#: ``v`` holding the inputs on the device (floats as Variables); ``train``: run in training
#: mode (batch statistics; dropout masks the package draws on the host, the same on both).
Case = collections.namedtuple('Case', 'name rtol setup forward train')
Case.__new__.__defaults__ = (False,)


def _uniform_boxes(rng, n, height, width, min_side=8., max_side=None):
    """``n`` boxes ``(y_min, x_min, y_max, x_max)`` float32 inside ``height x width``, sides
    log-uniform in ``[min_side, max_side]`` pixels."""
    max_side = max_side or 0.75 * min(height, width)
    size = np.exp(rng.uniform(np.log(min_side), np.log(max_side), (n, 2)))
    start = rng.uniform(0, 1, (n, 2)) * (np.array([height, width]) - size)
    return np.concatenate([start, start + size], axis=1).astype(np.float32)


def _yolo_case(version):
    from chainercv.links import YOLOv2, YOLOv3
    from chainer_yolo_dist.detection.losses import YOLOv2Loss, YOLOv3Loss
    insize, n_class, grid = 160, 20, 160 // 32
    if version == 'yolov2':
        loss = YOLOv2Loss(YOLOv2._anchors, n_class)
        n_slot = grid * grid * len(YOLOv2._anchors)
    else:
        loss = YOLOv3Loss(YOLOv3._anchors, n_class)
        n_slot = sum((grid * f) ** 2 * len(a) for f, a in zip((1, 2, 4), YOLOv3._anchors))

    def setup(rng):
        inputs = {'locs': rng.randn(2, n_slot, 4), 'objs': rng.randn(2, n_slot),
                  'confs': rng.randn(2, n_slot, n_class)}
        truths = ([_uniform_boxes(rng, 6, insize, insize) for _ in range(2)],
                  [rng.randint(0, n_class, 6).astype(np.int32) for _ in range(2)])
        return {k: v.astype(np.float32) for k, v in inputs.items()}, {}, truths

    def forward(v, links, truths):
        return loss(v['locs'], v['objs'], v['confs'], truths[0], truths[1], insize=insize)
    return Case(version + '_loss', OPERATOR_RTOL, setup, forward)


def _reflection_pad():
    from chainer_yolo_dist.cyclegan.networks import reflection_pad

    def setup(rng):
        return {'x': rng.randn(2, 3, 9, 11).astype(np.float32)}, {}, None
    return Case('cyclegan_reflection_pad', OPERATOR_RTOL, setup,
                lambda v, links, extra: {'y': reflection_pad(v['x'], 3)})


def _instance_norm():
    from chainer_yolo_dist.cyclegan.networks import InstanceNormalization

    def setup(rng):
        link = InstanceNormalization(4, affine=True)
        link.gamma.array[:] = rng.uniform(0.5, 1.5, 4)
        link.beta.array[:] = rng.randn(4)
        return {'x': rng.randn(2, 4, 7, 5).astype(np.float32)}, {'norm': link}, None
    return Case('cyclegan_instance_norm', OPERATOR_RTOL, setup,
                lambda v, links, extra: {'y': links['norm'](v['x'])})


def _cyclegan_losses():
    from chainer_yolo_dist.cyclegan import losses
    from chainer_yolo_dist.cyclegan.networks import PatchDiscriminator, ResnetGenerator

    def setup(rng):
        nets = {'gen_ab': ResnetGenerator(1, 4), 'gen_ba': ResnetGenerator(1, 4),
                'dis_a': PatchDiscriminator(4), 'dis_b': PatchDiscriminator(4)}
        images = {k: np.tanh(rng.randn(1, 3, 32, 32)).astype(np.float32) for k in 'ab'}
        return images, nets, None

    def forward(v, nets, extra):
        out = losses.generator_losses(nets['gen_ab'], nets['gen_ba'], nets['dis_a'],
                                      nets['dis_b'], v['a'], v['b'])
        result = {k: out[k] for k in ('loss', 'loss_gan', 'loss_cycle', 'loss_id')}
        # The discriminators see the fakes without their graph, as the updater gives them.
        result['dis_b_loss'] = losses.discriminator_loss(nets['dis_b'], v['b'],
                                                         out['fake_b'].array)
        result['dis_a_loss'] = losses.discriminator_loss(nets['dis_a'], v['a'],
                                                         out['fake_a'].array)
        return result
    return Case('cyclegan_losses', NETWORK_RTOL, setup, forward)


def _classification_loss():
    from chainer_yolo_dist.classification.chain import ClassifierChain, top_k_accuracy

    def setup(rng):
        x = rng.randn(16, 12).astype(np.float32)
        t = rng.randint(0, 7, 16).astype(np.int32)
        return {'x': x, 't': t}, {'chain': ClassifierChain(L.Linear(12, 7))}, None

    def forward(v, links, extra):
        chain = links['chain']
        loss = chain(v['x'], v['t'])
        return {'loss': loss, 'top5': np.asarray(top_k_accuracy(chain.y, v['t']), np.float32)}
    return Case('classification_loss', OPERATOR_RTOL, setup, forward)


def _conv3d(name, x_shape, w_shape, stride, pad, dilate=1):
    from chainer_yolo_dist.slowfast.conv3d import convolution_3d

    def setup(rng):
        return {'x': rng.randn(*x_shape).astype(np.float32),
                'W': (rng.randn(*w_shape) * 0.1).astype(np.float32)}, {}, None
    return Case(name, OPERATOR_RTOL, setup, lambda v, links, extra: {
        'y': convolution_3d(v['x'], v['W'], stride=stride, pad=pad, dilate=dilate)})


def _conv3d_pieces():
    """The GPU path without cuDNN in pieces (over the batch and over output time, as the
    paper size needs) against the CPU's tap sums: a column limit far below one clip's."""
    from chainer_yolo_dist.slowfast.conv3d import column_limit_of, convolution_3d

    def setup(rng):
        return {'x': rng.randn(3, 3, 6, 10, 10).astype(np.float32),
                'W': (rng.randn(4, 3, 3, 3, 3) * 0.1).astype(np.float32)}, {}, None

    def forward(v, links, extra):
        with column_limit_of(20000):  # about 2 output frames of one clip per piece
            return {'y': convolution_3d(v['x'], v['W'], stride=(1, 2, 2), pad=1)}
    return Case('slowfast_conv3d_pieces', OPERATOR_RTOL, setup, forward)


def _roi_align():
    from chainer_yolo_dist.slowfast.head import roi_align_2d

    def setup(rng):
        return ({'x': rng.randn(2, 5, 8, 10).astype(np.float32)}, {},
                (_uniform_boxes(rng, 4, 128, 160, min_side=4.), np.array([0, 1, 1, 0],
                                                                         np.int32)))

    def forward(v, links, extra):
        xp = chainer.backend.get_array_module(v['x'])
        return {'y': roi_align_2d(v['x'], xp.asarray(extra[0]), xp.asarray(extra[1]), 7,
                                  1. / 16)}
    return Case('slowfast_roi_align', OPERATOR_RTOL, setup, forward)


def _slowfast_head():
    from chainer_yolo_dist.slowfast.head import AVAHead, multilabel_loss

    def setup(rng):
        inputs = {'slow': rng.randn(2, 6, 2, 4, 4).astype(np.float32),
                  'fast': rng.randn(2, 3, 8, 4, 4).astype(np.float32)}
        extra = (_uniform_boxes(rng, 3, 64, 64, min_side=16.), np.array([0, 1, 1], np.int32),
                 rng.randint(0, 2, (3, 5)).astype(np.int32))
        return inputs, {'head': AVAHead([6, 3], 5)}, extra

    def forward(v, links, extra):
        xp = chainer.backend.get_array_module(v['slow'])
        rois, indices, labels = (xp.asarray(a) for a in extra)
        logits = links['head']([v['slow'], v['fast']], rois, indices)
        return {'logits': logits, 'loss': multilabel_loss(logits, labels)}
    return Case('slowfast_head', OPERATOR_RTOL, setup, forward, train=True)


def _slowfast_network():
    from chainer_yolo_dist.slowfast.head import multilabel_loss
    from chainer_yolo_dist.slowfast.models import build_detector, materialise_parameters

    def setup(rng):
        detector = build_detector('slowfast_narrow', 5)
        materialise_parameters(detector)
        extra = (_uniform_boxes(rng, 3, 32, 32, min_side=16.), np.array([0, 1, 1], np.int32),
                 rng.randint(0, 2, (3, 5)).astype(np.int32))
        return {'clips': rng.randn(2, 3, 8, 32, 32).astype(np.float32)}, {'det': detector}, \
            extra

    def forward(v, links, extra):
        xp = chainer.backend.get_array_module(v['clips'])
        rois, indices, labels = (xp.asarray(a) for a in extra)
        logits = links['det'](v['clips'], rois, indices)
        return {'logits': logits, 'loss': multilabel_loss(logits, labels)}
    return Case('slowfast_network', NETWORK_RTOL, setup, forward, train=True)


def cases():
    """Every parity case, in the order the stage runs them."""
    return [
        _yolo_case('yolov2'), _yolo_case('yolov3'),
        _reflection_pad(), _instance_norm(), _cyclegan_losses(),
        _classification_loss(),
        _conv3d('slowfast_conv3d_fast_conv1', (2, 3, 6, 12, 12), (4, 3, 5, 7, 7), (1, 2, 2),
                (2, 3, 3)),
        _conv3d('slowfast_conv3d_temporal', (2, 4, 4, 6, 6), (5, 4, 3, 1, 1), 1, (1, 0, 0)),
        _conv3d('slowfast_conv3d_dilated', (1, 4, 2, 9, 9), (3, 4, 1, 3, 3), 1, (0, 2, 2),
                (1, 2, 2)),
        _conv3d_pieces(), _roi_align(), _slowfast_head(), _slowfast_network(),
    ]


def evaluate(case, device, seed=0):
    """Runs ``case`` on ``device`` (a Chainer device); returns ``{name: host array}`` of its
    outputs (``out/NAME``) and gradients (``grad/INPUT``, ``grad/LINK/PARAM``)."""
    rng = np.random.RandomState(seed)
    np.random.seed(seed)  # Chainer's initialisers draw from NumPy's global generator
    inputs, links, extra = case.setup(rng)
    device.use()
    for link in links.values():
        link.to_device(device)
    v = {k: chainer.Variable(device.send(a)) if a.dtype.kind == 'f' else device.send(a)
         for k, a in inputs.items()}
    np.random.seed(seed + 2)  # host-drawn dropout masks: the same draws on both devices
    with chainer.using_config('train', case.train):
        outputs = case.forward(v, links, extra)
    weights = np.random.RandomState(seed + 1)
    objective = None
    for name in sorted(outputs):
        out = outputs[name]
        if isinstance(out, chainer.Variable) and out.dtype.kind == 'f':
            w = device.send(np.asarray(weights.randn(*out.shape), out.dtype))
            term = F.sum(out * w)
            objective = term if objective is None else objective + term
    for link in links.values():
        link.cleargrads()
    if objective is not None:
        objective.backward()
    cpu = chainer.backend.CpuDevice()
    found = {'out/' + k: np.asarray(cpu.send(getattr(o, 'array', o)))
             for k, o in outputs.items()}
    for k, var in v.items():
        if isinstance(var, chainer.Variable):
            found['grad/' + k] = None if var.grad is None else cpu.send(var.grad)
    for link_name, link in links.items():
        for path, param in link.namedparams():
            found['grad/%s%s' % (link_name, path)] = (None if param.grad is None
                                                      else cpu.send(param.grad))
    return found


def compare(reference, other, rtol, atol=ATOL):
    """``(worst relative difference, [failures])`` of ``other`` against ``reference``."""
    worst, failures = 0.0, []
    for key in sorted(reference):
        a, b = reference[key], other.get(key)
        if a is None or b is None:
            if (a is None) != (b is None):
                failures.append('%s: a gradient on one device only' % key)
            continue
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a.shape != b.shape:
            failures.append('%s: shapes %s and %s' % (key, a.shape, b.shape))
            continue
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            failures.append('%s: not finite' % key)
            continue
        err = float(np.abs(a - b).max()) if a.size else 0.0
        scale = float(np.abs(a).max()) if a.size else 0.0
        worst = max(worst, err / scale if scale else (0.0 if err == 0 else float('inf')))
        if err > rtol * scale + atol:
            failures.append('%s: max |diff| %.3g > %.0e x max |cpu| %.3g'
                            % (key, err, rtol, scale))
    return worst, failures


def parity(report, options):
    cpu = chainer.get_device('@numpy')
    device = cpu if options.cpu_smoke else chainer.get_device('@cupy:0')
    worst_all = 0.0
    for case in cases():
        start = time.time()
        try:
            worst, failures = compare(evaluate(case, cpu), evaluate(case, device), case.rtol)
        except Exception as e:  # one broken case must not hide the others' results
            report.check(case.name, False, 'error: %s: %s' % (type(e).__name__, e))
            continue
        worst_all = max(worst_all, worst)
        report.fact(case.name, {'max_relative_difference': worst, 'rtol': case.rtol,
                                'seconds': round(time.time() - start, 2)})
        report.check(case.name, not failures, '; '.join(failures[:3]) if failures else
                     'max relative difference %.2g (rtol %.0e)' % (worst, case.rtol))
    report.summary = ('%d cases: values and gradients on %s within tolerance of NumPy '
                      '(largest relative difference %.2g)'
                      % (len(report.checks), device, worst_all))


if __name__ == '__main__':
    sys.exit(worker.main({'parity': parity}, description=__doc__))
