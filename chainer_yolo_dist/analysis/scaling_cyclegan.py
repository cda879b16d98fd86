"""CycleGAN (paper 002) in the ring-AllReduce scaling model of ``analysis/scaling.py``.

Per update each of the ``k`` processes (one GPU each) trains on one image pair (batch 1,
paper 002 appendix A.1.2) and then, with no overlap, all-reduces the gradients of the four
networks: this package has one ChainerMN multi-node optimizer per network (two generators,
two discriminators; ``cyclegan/recipe.py``), each reducing its network's gradients as one packed
buffer, so four ring AllReduces follow one another. Per epoch each process draws
``ceil(scale * D / k)`` images (paper 002 sec. 3.2, ``core.sampling.draws_per_epoch``; scale 4,
D = 4,822, the preset), so the run takes

    epochs * ceil(scale * D / k) * (t_img + sum of the four AllReduces at k)

and the speed-up over the paper's 1-node baseline is that time at 4 GPUs over the time at k
(the ideal is k / 4: every process draws 1/k of the same total). ``t_img`` is calibrated so
that the model gives the paper's 4-GPU time exactly (68.77 h, paper 002 sec. 4.2).

Paper 002 ran PyTorch 1.0 with Horovod 0.15.2 (sec. 3.2, 4.1), not ChainerMN. What that changes
is selectable with ``framework='horovod'``, stated as an assumption: Zhu et al.'s code has two
optimizers (both generators together, both discriminators together), and Horovod's tensor
fusion packs each optimizer's gradients into buffers of at most 64 MiB (its default fusion
threshold), so fewer, larger AllReduces; Horovod also starts each AllReduce as soon as a
gradient is ready during ``backward``, which this model does NOT credit (both frameworks are
modelled without overlap, an upper bound on the exposed communication).
"""
import dataclasses
import math

from chainer_yolo_dist.analysis import published
from chainer_yolo_dist.analysis.scaling import ABCI, ring_allreduce_seconds
from chainer_yolo_dist.core import presets

PRESET = 'cyclegan_synthia2bdd_2019'
#: The paper's networks (Zhu et al.'s implementation's defaults, which paper 002 sec. 3.1
#: follows; its appendix A.1.1 names only two generators and two discriminators): ngf, ndf,
#: residual blocks, image side.
PAPER_NETWORKS = (64, 64, 9, 256)
#: Facts counted from the real networks (``count_facts``; ``tests/test_scaling_cyclegan.py``
#: recounts them) and cached because the generator's count at 256 px takes half a minute:
#: (ngf, ndf, n_blocks, side) -> (generator parameters, discriminator parameters, generator
#: forward FLOPs per image, discriminator forward FLOPs per image).
CYCLEGAN_FACTS = {
    (64, 64, 9, 256): (11378179, 2764737, 99103014912, 6293618688),
}
#: Forward passes per update and image (``cyclegan.losses.generator_losses`` and
#: ``discriminator_loss``): generators 6 (A->B, B->A, the two reconstructions, the two identity
#: mappings of weight 5); discriminators 6 (one per fake in the generators' loss, then real and
#: pooled fake for each discriminator).
GEN_PASSES = 6
DIS_PASSES = 6
#: Training FLOPs over forward FLOPs: backward costs about twice the forward (the gradients
#: with respect to the inputs and to the weights).
TRAIN_OVER_FORWARD = 3
#: Horovod's default tensor-fusion buffer (HOROVOD_FUSION_THRESHOLD, 64 MiB).
HOROVOD_FUSION_BYTES = 64 * 1024 ** 2
FRAMEWORKS = ('chainermn', 'horovod')
#: The paper's baseline: 1 node of 4 GPUs (paper 002 sec. 4.2, Fig. 4).
BASE_GPUS = 4
PUBLISHED_TABLE = 'p002_scaling_fid'


def count_facts(ngf, ndf, n_blocks, side):
    """Counts (generator params, discriminator params, generator forward FLOPs, discriminator
    forward FLOPs) of one ``side`` x ``side`` image from the real networks with
    :class:`~chainer_yolo_dist.analysis.flop_count.FlopHook` (convolutions and the generator's
    transposed convolutions)."""
    import numpy as np
    from chainer_yolo_dist.analysis.flop_count import count_forward_flops
    from chainer_yolo_dist.cyclegan.networks import (PatchDiscriminator, ResnetGenerator,
                                                     count_parameters)
    gen, dis = ResnetGenerator(n_blocks, ngf), PatchDiscriminator(ndf)
    x = np.zeros((1, 3, side, side), np.float32)
    return (count_parameters(gen), count_parameters(dis),
            count_forward_flops(gen, x).total, count_forward_flops(dis, x).total)


def facts(networks=PAPER_NETWORKS):
    """:data:`CYCLEGAN_FACTS` of ``networks`` = (ngf, ndf, n_blocks, side), counted if absent."""
    if networks not in CYCLEGAN_FACTS:
        CYCLEGAN_FACTS[networks] = count_facts(*networks)
    return CYCLEGAN_FACTS[networks]


def parameters(networks=PAPER_NETWORKS):
    """Parameters of the four networks together."""
    gen, dis, _, _ = facts(networks)
    return 2 * gen + 2 * dis


def train_flops_per_image(networks=PAPER_NETWORKS):
    """Training FLOPs per image pair: 3 x (6 generator + 6 discriminator forward passes)."""
    _, _, gen, dis = facts(networks)
    return TRAIN_OVER_FORWARD * (GEN_PASSES * gen + DIS_PASSES * dis)


def allreduce_messages(framework='chainermn', networks=PAPER_NETWORKS, bytes_per_value=4):
    """Bytes of each AllReduce of one update, in the order they run.

    ``chainermn``: one per network (gen_ab, gen_ba, dis_a, dis_b). ``horovod``: Zhu's two
    optimizers (generators, discriminators), each split into fused buffers of at most
    :data:`HOROVOD_FUSION_BYTES` (assumption, module doc).
    """
    gen, dis, _, _ = facts(networks)
    if framework == 'chainermn':
        return [gen * bytes_per_value] * 2 + [dis * bytes_per_value] * 2
    if framework == 'horovod':
        out = []
        for nbytes in (2 * gen * bytes_per_value, 2 * dis * bytes_per_value):
            pieces = math.ceil(nbytes / HOROVOD_FUSION_BYTES)
            out += [nbytes / pieces] * pieces
        return out
    raise ValueError('framework must be one of %s, got %r' % (FRAMEWORKS, framework))


def allreduce_seconds(gpus, framework='chainermn', topology=ABCI, bytes_per_value=4):
    """Seconds of one update's AllReduces over ``gpus`` GPUs (not overlapped)."""
    return sum(ring_allreduce_seconds(m, gpus, topology)
               for m in allreduce_messages(framework, bytes_per_value=bytes_per_value))


def draws_per_process(gpus):
    """Images each process draws per epoch at ``gpus`` processes: ceil(scale * D / k)."""
    p = presets.load(PRESET, gpus)
    return p.iterations_per_epoch * p.batchsize_per_gpu


def published_seconds():
    """{GPUs: the paper's training time in seconds} (4 and 512 GPUs, paper 002 sec. 4.2)."""
    return {r['gpus']: r['time_h'] * 3600 for r in published.table(PUBLISHED_TABLE)
            if r['time_h'] is not None}


def published_speedup():
    """(GPUs, speed-up over 4 GPUs) the paper prints: (512, 93.8)."""
    rows = [r for r in published.table(PUBLISHED_TABLE) if r['speedup'] is not None]
    return rows[0]['gpus'], rows[0]['speedup']


def calibrated_image_seconds(framework='chainermn', topology=ABCI, bytes_per_value=4):
    """Compute seconds per image pair on one V100, such that the model gives the paper's
    4-GPU time: total / (epochs x draws at 4 GPUs) - the AllReduces at 4 GPUs."""
    preset = presets.load(PRESET, BASE_GPUS)
    total = published_seconds()[BASE_GPUS]
    per_update = total / (preset.epochs * preset.iterations_per_epoch)
    comm = allreduce_seconds(BASE_GPUS, framework, topology, bytes_per_value)
    return (per_update - comm) / preset.batchsize_per_gpu


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The model at ``gpus`` processes (seconds are wall-clock on ABCI)."""
    gpus: int
    draws_per_process: float     # images per process and epoch
    compute_seconds: float       # per update: batch x t_img
    allreduce_seconds: float     # per update, the four (or fused) AllReduces
    run_seconds: float           # all epochs
    speedup: float               # over BASE_GPUS


def predict(gpus_list, image_seconds=None, framework='chainermn', topology=ABCI,
            bytes_per_value=4):
    """Predicted training time and speed-up over 4 GPUs at each GPU count.

    Args:
        gpus_list: process (GPU) counts, positive integers.
        image_seconds: compute seconds per image pair; default :func:`calibrated_image_seconds`.
        framework: 'chainermn' (this package) or 'horovod' (the paper's, module doc).
        topology: a :class:`~chainer_yolo_dist.analysis.scaling.Topology`.
        bytes_per_value: 4 (FP32 gradients, paper 002 sec. 3.2) or 2.

    Returns:
        list of :class:`Prediction` in the order of ``gpus_list``.
    """
    if image_seconds is None:
        image_seconds = calibrated_image_seconds(framework, topology, bytes_per_value)
    if not image_seconds > 0:
        raise ValueError('image_seconds must be positive, got %r' % (image_seconds,))

    def run(k):
        p = presets.load(PRESET, k)
        compute = p.batchsize_per_gpu * image_seconds
        comm = allreduce_seconds(k, framework, topology, bytes_per_value)
        return compute, comm, p.epochs * p.iterations_per_epoch * (compute + comm)

    base = run(BASE_GPUS)[2]
    out = []
    for k in gpus_list:
        if int(k) != k or k < 1:
            raise ValueError('GPU counts must be positive integers, got %r' % (k,))
        compute, comm, seconds = run(int(k))
        out.append(Prediction(int(k), draws_per_process(int(k)), compute, comm, seconds,
                              base / seconds))
    return out


def comparison(image_seconds=None, framework='chainermn', topology=ABCI, bytes_per_value=4):
    """The model against paper 002 sec. 4.2 / Fig. 4: list of dicts ``{'quantity',
    'published', 'predicted', 'error'}`` (error = predicted / published - 1)."""
    times = published_seconds()
    big, speedup = published_speedup()
    at = {p.gpus: p for p in predict(sorted(set(times) | {big}), image_seconds, framework,
                                     topology, bytes_per_value)}
    rows = [{'quantity': 'hours on %d GPUs' % k, 'published': times[k] / 3600,
             'predicted': at[k].run_seconds / 3600} for k in sorted(times)]
    rows.append({'quantity': 'speed-up of %d GPUs over %d' % (big, BASE_GPUS),
                 'published': speedup, 'predicted': at[big].speedup})
    for r in rows:
        r['error'] = r['predicted'] / r['published'] - 1
    return rows


def report(gpus_list, image_seconds=None, framework='chainermn', topology=ABCI,
           bytes_per_value=4):
    """The lines ``scripts/simulate_scaling.py --preset cyclegan_synthia2bdd_2019`` prints."""
    how = 'given'
    if image_seconds is None:
        image_seconds = calibrated_image_seconds(framework, topology, bytes_per_value)
        how = "calibrated to the paper's 4-GPU time, 68.77 h"
    p = presets.load(PRESET, 1)
    gen, dis, _, _ = facts()
    flops = train_flops_per_image()
    messages = allreduce_messages(framework, bytes_per_value=bytes_per_value)
    lines = [
        'Preset %s: CycleGAN, 2 generators of %s and 2 discriminators of %s parameters '
        '(%s in all), batch %d per process, %d epochs, each process draws ceil(%g x %d / k) '
        'images per epoch' % (PRESET, format(gen, ','), format(dis, ','),
                              format(parameters(), ','), p.batchsize_per_gpu, p.epochs,
                              p.sampling_scale, p.n_train),
        'AllReduces per update (%s, not overlapped): %s MB' % (
            framework, ' + '.join('%.1f' % (m / 1e6) for m in messages)),
        'Training compute per image pair: %.1f GFLOP (3 x forward of 6 generator + 6 '
        'discriminator passes)' % (flops / 1e9),
        'Compute per image pair on one V100: %.4f s (%s), i.e. %.1f TFLOP/s sustained'
        % (image_seconds, how, flops / image_seconds / 1e12),
        '',
        '| GPUs | nodes | racks | draws/process/epoch | compute s/update | AllReduce s/update '
        '| hours | speed-up over 4 GPUs | ideal |',
        '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ]
    for q in predict(gpus_list, image_seconds, framework, topology, bytes_per_value):
        lines.append('| %d | %d | %d | %d | %.4f | %.4f | %.2f | %.1f | %.1f |'
                     % (q.gpus, topology.nodes(q.gpus), topology.racks(q.gpus),
                        q.draws_per_process, q.compute_seconds, q.allreduce_seconds,
                        q.run_seconds / 3600, q.speedup, q.gpus / BASE_GPUS))
    lines += ['', 'Against paper 002 sec. 4.2 / Fig. 4 (error = predicted / published - 1):',
              '', '| %s | quantity | published | predicted | error |' % 'framework',
              '| --- | --- | --- | --- | --- |']
    for fw in FRAMEWORKS:
        seconds = image_seconds if how == 'given' else None
        for r in comparison(seconds, fw, topology, bytes_per_value):
            lines.append('| %s | %s | %.2f | %.2f | %+.1f%% |' % (
                fw, r['quantity'], r['published'], r['predicted'], 100 * r['error']))
    return lines


def as_json(gpus_list, image_seconds=None, framework='chainermn', topology=ABCI,
            bytes_per_value=4):
    """``{'gpus', 'speedup', 'hours'}`` for ``--json``."""
    preds = predict(gpus_list, image_seconds, framework, topology, bytes_per_value)
    return {'gpus': [q.gpus for q in preds], 'speedup': [q.speedup for q in preds],
            'hours': [q.run_seconds / 3600 for q in preds]}
