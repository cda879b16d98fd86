"""Memory of SlowFast's 3D convolutions at the paper's size, and one timed step for a GPU check.

Without cuDNN (CuPy 14 has none) Chainer computes a 3D convolution by im2col: a column buffer
``(N, C, k1, k2, k3, o1, o2, o3)`` (:func:`.conv3d.column_bytes`). :func:`column_table` lists that
buffer for every convolution of a trunk at a given batch and clip size (analytically, from the
links' shapes: nothing is computed at that size), and :func:`paper_size_step` runs one
forward/backward of the paper's detector on a device and measures its time and peak memory, with
the column buffers bounded by :func:`.conv3d.column_limit` (or not).

Paper size: the preset ``slowfast_ava_2021`` (paper 004 sec. 3.2/3.3): SlowFast R50, 8 clips per
GPU of 16 Fast frames at 224 x 224 (the Slow pathway reads 4 of them), 80 classes. PySlowFast's
SLOWFAST_32x2 reads 32 frames (``n_frames=32``); 256 x 256 is ``size=256``.
"""
import time

import numpy as np

import chainer
from chainer.backends import cuda

from chainer_yolo_dist.slowfast import conv3d
from chainer_yolo_dist.slowfast.head import DetectorLoss
from chainer_yolo_dist.slowfast.networks import conv_out_shape

#: The preset that defines the paper's size.
PAPER_PRESET = 'slowfast_ava_2021'


def paper_size(batch=None, n_frames=None, size=None, model=None):
    """``(model, n_class, batch, n_frames, size)`` of :data:`PAPER_PRESET`, each replaced when
    given (batch per GPU, Fast-pathway frames, square crop side)."""
    from chainer_yolo_dist.core import presets
    p = presets.load(PAPER_PRESET, 1)
    return (model or p.model, p.n_class, batch or p.batchsize_per_gpu,
            n_frames or p.clip_frames, size or p.insize)


def conv_inputs(trunk, n_frames, height, width):
    """Every convolution of ``trunk`` (:class:`.networks.SlowFast`) with its input shape for one
    clip of ``n_frames`` Fast frames of ``height x width``, in the order of the forward pass:
    a list of ``(path, link, (C, T, H, W))`` (``path`` as ``trunk.namedlinks()`` names it).

    Mirrors :meth:`.networks.SlowFast.forward` (and its ``macs``): stems (conv1 then max pool
    3x3/2), then per stage the lateral (Fast -> Slow, concatenated to the Slow input) and each
    pathway's blocks (``conv_a``, ``conv_b``, ``conv_c``, shortcut ``proj``).
    """
    names = {id(link): path for path, link in trunk.namedlinks(skipself=True)}
    paths = [trunk.slow] if trunk.slow_only else [trunk.slow, trunk.fast]
    in_shapes = [(3, n_frames // trunk.alpha, height, width), (3, n_frames, height, width)]
    rows, cur = [], []

    def add(link, shape):
        rows.append((names[id(link)], link, tuple(shape)))

    for p, shape in zip(paths, in_shapes):
        add(p.conv1, shape)
        h = conv_out_shape(p.conv1, shape)
        cur.append((h[0], h[1], (h[2] + 1) // 2, (h[3] + 1) // 2))  # max pool 3x3/2, pad 1
    for i in range(4):
        if not trunk.slow_only:
            lateral = trunk.laterals[i].conv
            add(lateral, cur[1])
            extra = conv_out_shape(lateral, cur[1])[0]
            cur[0] = (cur[0][0] + extra,) + cur[0][1:]
        for j, p in enumerate(paths):
            for block in p.stages[i]:
                h = cur[j]
                for conv in (block.conv_a, block.conv_b, block.conv_c):
                    add(conv, h)
                    h = conv_out_shape(conv, h)
                if block.proj is not None:
                    add(block.proj, cur[j])
                cur[j] = h
    return rows


def column_table(trunk, batch, n_frames, height, width, itemsize=4, limit=None):
    """One dict per convolution of ``trunk`` at ``batch`` clips: ``name``, ``x_shape``
    ``(N, C, T, H, W)``, ``W_shape``, ``column_bytes`` (Chainer's single im2col buffer) and
    ``piece_bytes`` (the largest buffer :func:`.conv3d.bounded_convolution_3d` builds under
    ``limit``; equal to ``column_bytes`` when ``limit`` is None or it fits)."""
    table = []
    for name, link, shape in conv_inputs(trunk, n_frames, height, width):
        x_shape = (batch,) + shape
        args = (x_shape, link.W.shape, link.stride, link.pad, link.dilate)
        total = conv3d.column_bytes(*args, itemsize=itemsize)
        clips, frames = conv3d.chunk_plan(*args, itemsize=itemsize, limit=limit)
        per_frame = total // (batch * conv3d.output_shape(*args)[0])  # one clip, one output frame
        piece = per_frame * clips * frames
        table.append(dict(name=name, x_shape=x_shape, W_shape=tuple(link.W.shape),
                          column_bytes=total, piece_bytes=min(piece, total)))
    return table


def _peak_probe(xp, device_id):
    """``(context manager, read())``: the device pool's largest in-use bytes while inside (CuPy
    memory hook sampling ``MemoryPool.used_bytes()`` at every allocation); a no-op on the CPU."""
    if xp is np:
        import contextlib
        return contextlib.nullcontext(), lambda: None
    cupy = cuda.cupy
    pool = cupy.get_default_memory_pool()

    class PeakHook(cupy.cuda.MemoryHook):
        name = 'SlowFastPeakHook'

        def __init__(self):
            self.peak = pool.used_bytes()

        def malloc_postprocess(self, **kwargs):
            if kwargs.get('mem_ptr'):
                self.peak = max(self.peak, pool.used_bytes())

    hook = PeakHook()
    return hook, lambda: hook.peak


def paper_size_step(device_id, batch=None, chunk_bytes=None, n_frames=None, size=None,
                    model=None, seed=0):
    """One training forward/backward of the paper's detector on device ``device_id``, measured.

    Args:
        device_id (int): CUDA device (``-1``: the CPU, for tests at small sizes).
        batch, n_frames, size, model: the preset's (:func:`paper_size`) unless given.
        chunk_bytes (int or None): column-buffer limit of the 3D convolutions without cuDNN;
            None: :data:`.conv3d.COLUMN_LIMIT_BYTES`; ``0`` or negative: no limit (Chainer's single
            im2col per convolution, the unbounded case).
        seed (int): NumPy seed of the weights (drawn on the host) and of the inputs.

    Inputs: clips ``(batch, 3, n_frames, size, size)`` float32 normalised noise, one box per clip
    (the centre half of the frame), random multi-hot labels. One untimed step (CuPy kernel
    compilation, cuDNN autotuning), then one timed step, then one step under the memory probe.

    Returns a dict: ``seconds`` (the timed step, device synchronised), ``peak_bytes`` (largest
    CuPy pool bytes in use during a step, weights and gradients included; None on the CPU),
    ``pool_bytes`` (the pool's total after the steps, freed blocks cached by it included),
    ``column_bytes_max`` (the largest single im2col buffer of any convolution),
    ``piece_bytes_max`` (the largest one built under the limit), ``column_limit``, ``cudnn``
    (whether the convolutions use cuDNN, so no column buffer at all), ``loss``, the shape
    (``batch``, ``n_frames``, ``size``, ``model``), and ``error`` (None, or the out-of-memory
    message when the step did not fit; then the timings are None).
    """
    from chainer_yolo_dist.slowfast import models
    model, n_class, batch, n_frames, size = paper_size(batch, n_frames, size, model)
    limit = conv3d.COLUMN_LIMIT_BYTES if chunk_bytes is None else \
        (int(chunk_bytes) if chunk_bytes > 0 else None)
    np.random.seed(seed)  # the weights are drawn on the host, as in training
    detector = models.build_detector(model, n_class)
    table = column_table(detector.trunk, batch, n_frames, size, size, limit=limit)
    rng = np.random.RandomState(seed)
    clips = rng.standard_normal((batch, 3, n_frames, size, size)).astype(np.float32)
    q = size / 4.
    rois = np.tile(np.array([[q, q, 3 * q, 3 * q]], np.float32), (batch, 1))
    roi_indices = np.arange(batch, dtype=np.int32)
    labels = (rng.uniform(size=(batch, n_class)) < 0.1).astype(np.int32)
    result = dict(batch=batch, n_frames=n_frames, size=size, model=model, column_limit=limit,
                  column_bytes_max=max(r['column_bytes'] for r in table),
                  piece_bytes_max=max(r['piece_bytes'] for r in table),
                  seconds=None, peak_bytes=None, pool_bytes=None, loss=None, error=None)
    chain = DetectorLoss(detector)
    if device_id >= 0:
        device = chainer.get_device('@cupy:%d' % device_id)
        device.use()
    else:
        device = chainer.get_device('@numpy')
    chain.to_device(device)
    xp = device.xp
    inputs = [device.send(a) for a in (clips, rois, roi_indices, labels)]
    result['cudnn'] = bool(conv3d.uses_cudnn(inputs[0], detector.trunk.fast.conv1.W.array
                                             if detector.trunk.fast is not None
                                             else detector.trunk.slow.conv1.W.array))
    del clips

    def sync():
        if xp is not np:
            cuda.cupy.cuda.Device(device_id).synchronize()

    def step():
        chain.cleargrads()
        loss = chain(*inputs)
        loss.backward()
        sync()
        return float(loss.array)

    probe, read_peak = _peak_probe(xp, device_id)
    try:
        with conv3d.column_limit_of(limit), chainer.using_config('train', True):
            step()
            start = time.perf_counter()
            result['loss'] = step()
            result['seconds'] = time.perf_counter() - start
            with probe:
                step()
        result['peak_bytes'] = read_peak()
    except Exception as e:  # an out-of-memory error is a result here, anything else is not
        if xp is np or not isinstance(e, cuda.cupy.cuda.memory.OutOfMemoryError):
            raise
        result['error'] = str(e)
    if xp is not np:
        result['pool_bytes'] = int(cuda.cupy.get_default_memory_pool().total_bytes())
    return result
