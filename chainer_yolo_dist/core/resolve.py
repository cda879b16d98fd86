"""From a script's options to a run's settings, in one pure step, before MPI starts.

Every value of a run comes from one of four places, merged here in this order and nowhere
else: the defaults of the parallelism modes (``core/parallelism/modes.py``), the preset
(``presets/*.toml``, with the options that override its fields: :data:`PRESET_OPTIONS`), the
options the user gave, and the system's defaults that follow from the preset
(``System.defaults``: e.g. the demo network's width, a clip's shape). :func:`resolve` returns
the settings checked as far as they can be without the data and the world (every option's
range, the mode's options), so a mistake is one line before any process communicates;
``core/run.py`` then fills in what only the running job knows: the communicator's ranks and
nodes, each rank's GPU, the run directory, and the data's size.

Tested in-process: nothing here imports MPI, touches a GPU or reads data.
"""
import collections
import contextlib
import dataclasses
import os
import re

from chainer_yolo_dist.core import devices, presets, rundir, snapshots
from chainer_yolo_dist.core.parallelism import modes
from chainer_yolo_dist.core.settings import pick

#: Options that override preset fields: option dest -> Preset field.
PRESET_OPTIONS = {
    'model': 'model', 'dataset': 'dataset', 'batchsize': 'batchsize_per_gpu',
    'epochs': 'epochs', 'eta': 'eta', 'lr_rule': 'lr_rule', 'insize': 'insize',
    'warmup_epochs': 'warmup_epochs', 'warmup_hold_epochs': 'warmup_hold_epochs',
    'decay': 'decay', 'steps': 'steps', 'poly_power': 'poly_power',
    'burn_in': 'burn_in_iterations', 'momentum': 'momentum',
    'weight_decay': 'weight_decay', 'communicator': 'communicator',
    'allreduce_grad_dtype': 'allreduce_grad_dtype', 'cudnn_fast_bn': 'cudnn_fast_bn',
    'n_class': 'n_class', 'linear_from': 'linear_from', 'sampling_scale': 'sampling_scale',
    'clip_frames': 'clip_frames',
}

#: Loader worker processes per rank on a GPU when --loaderjob is not given: a GPU trains at
#: several hundred images per second, and one worker decodes and augments 140-350 per second
#: (docs/loader.md's table: 2 workers for 200 images/s, 7-8 for 1,000 at 416-608).
GPU_LOADER_WORKERS = 4


def loader_workers(options, device, preset_workers=None, cores_per_rank=None):
    """Loader workers per rank in force, and why they differ from the preset's (or None).

    The user's ``--loaderjob`` wins (a departure when the preset gives another count); else
    the preset's ``loader_workers`` (the paper's count, e.g. paper 004 sec. 4.2's 6), cut to
    ``cores_per_rank`` (None: not known, no cut) when the node has fewer CPU cores per rank,
    since more workers than cores only compete for them; else :data:`GPU_LOADER_WORKERS` on
    a GPU, else the script's CPU default (``options['cpu_loaderjob']``, 2 if absent).
    """
    given = options.get('loaderjob')
    if given is not None:
        differs = preset_workers is not None and given != preset_workers
        return given, ('loader workers %d per rank instead of the preset\'s %d (--loaderjob)'
                       % (given, preset_workers) if differs else None)
    if preset_workers is None:
        return (GPU_LOADER_WORKERS if device >= 0 else options.get('cpu_loaderjob', 2)), None
    if cores_per_rank is not None and preset_workers > cores_per_rank:
        return cores_per_rank, ('loader workers %d per rank instead of the preset\'s %d: %d '
                                'CPU core(s) per rank on this node (--loaderjob sets them)'
                                % (cores_per_rank, preset_workers, cores_per_rank))
    return preset_workers, None


#: What :func:`resolve` returns. ``settings``: the system's frozen settings with the preset at
#: k workers (before the data), ``device=-1``, ``ranks`` the world's processes, ``nodes=1``;
#: ``paper_preset``: the preset as published at the same k; ``request``: the system's data
#: request; ``departures``: how the node changes the preset (communicator, FP16 AllReduce,
#: cuDNN), before those that depend on the data (:func:`departures_from_preset`); ``servers``:
#: ranks that serve parameters and train nothing.
Resolution = collections.namedtuple(
    'Resolution', 'settings paper_preset request departures servers options')

#: A node as the resolution needs to know it: visible CUDA GPUs, whether Chainer uses cuDNN,
#: and the CPU cores this process may run on (None: not known, as in the tests' CPU_NODE).
Node = collections.namedtuple('Node', 'gpus cudnn cpus', defaults=(None,))
CPU_NODE = Node(0, False)


def describe_node():
    """This process's :class:`Node` (CuPy imported only where it is installed)."""
    gpus = devices.gpu_count()
    cudnn = False
    if gpus:
        from chainer.backends import cuda
        cudnn = bool(cuda.cudnn_enabled)
    return Node(gpus, cudnn, len(os.sched_getaffinity(0)))


def cores_per_rank(node, world_size, on_gpu):
    """CPU cores per rank on this node, or None when ``node.cpus`` is not known. The ranks on
    the node: one per GPU up to the world's size on GPUs, else the whole world (a CPU run's
    ranks are on one machine)."""
    if node.cpus is None:
        return None
    here = min(world_size, node.gpus) if on_gpu else world_size
    return max(1, node.cpus // max(1, here))


def preset_overrides(options):
    """Preset fields set on the command line: ``{preset_field: value}`` (options left at
    ``None`` keep the preset's value; ``no_multiscale`` / ``multiscale`` set ``multiscale``)."""
    overrides = {field: options[dest] for dest, field in PRESET_OPTIONS.items()
                 if options.get(dest) is not None}
    if options.get('no_multiscale'):
        overrides['multiscale'] = []
    elif options.get('multiscale'):
        overrides['multiscale'] = list(options['multiscale'])
    return overrides


@contextlib.contextmanager
def by_option(options):
    """Re-raises a ValueError that blames a preset field the user set on the command line
    (``preset 'NAME': insize 100 is not ...``) as one that names the option typed
    (``--insize 100 is not ... (preset NAME)``): the user never typed the field's name."""
    try:
        yield
    except ValueError as e:
        match = re.match(r"preset '?([\w.-]+)'?: (\w+)(.*)$", str(e), re.S)
        flags = {field: '--' + dest.replace('_', '-') for dest, field in PRESET_OPTIONS.items()
                 if options.get(dest) is not None}
        if options.get('multiscale') or options.get('no_multiscale'):
            flags['multiscale'] = '--multiscale'
        if not match or match.group(2) not in flags:
            raise
        raise ValueError('%s%s (preset %s)' % (flags[match.group(2)], match.group(3),
                                               match.group(1))) from None


def resolve(system, options, world_size, node=CPU_NODE):
    """The run's settings from the script's ``options`` (a dict by option dest).

    Args:
        system: the ``run.System`` being trained.
        world_size (int): MPI processes of the job (the papers' k counts those that train,
            times ``--virtual-ranks``).
        node (Node): the GPUs and cuDNN this process sees.
    Returns:
        :class:`Resolution`. Raises ValueError (TypeError, KeyError, OSError) naming the
        option, preset or file at fault.
    """
    options = dict(modes.DEFAULTS, **options)
    mode = modes.mode(options['parallelism'])
    servers = mode.serving_ranks(options['n_servers'])
    if world_size <= servers:
        raise ValueError('--parallelism %s needs a server and a worker: start more than %d '
                         'process(es) (mpiexec -n %d or more), got %d'
                         % (mode.name, servers, servers + 1, world_size))
    virtual_ranks = options.get('virtual_ranks') or 1
    workers = (world_size - servers) * virtual_ranks
    paper_preset = presets.load(options['preset'], workers)
    with by_option(options):
        preset = presets.load(options['preset'], workers, **preset_overrides(options))
    # A preset with ``lars = true`` turns LARS on as --lars does (settings.lars records it).
    options['lars'] = bool(options.get('lars')) or preset.lars
    if system.defaults is not None:
        for key, value in system.defaults(preset, options).items():
            if options.get(key) is None:  # an option the user left out takes it
                options[key] = value
    with by_option(options):
        system.check(preset, options)
    communicator, grad_dtype, departures = communicator_in_force(preset, options, node.gpus)
    on_gpu = node.gpus > 0 and communicator != 'naive'
    cudnn = cudnn_departure(preset, on_gpu, node.cudnn)
    departures += [cudnn] if cudnn else []
    loaderjob, why = loader_workers(options, 0 if on_gpu else -1, preset.loader_workers,
                                    cores_per_rank(node, world_size, on_gpu))
    departures += [why] if why else []
    request = pick(system.data_cls, options, dataset=preset.dataset, n_class=preset.n_class,
                   seed=options['seed'])
    settings = pick(
        system.settings_cls, options, preset=preset, data=request, ranks=world_size, nodes=1,
        virtual_ranks=virtual_ranks, device=-1,
        loaderjob=loaderjob, communicator=communicator,
        allreduce_grad_dtype=grad_dtype, out=options.get('out') or '', progress=False,
        departures=())
    if options.get('out'):
        rundir.check_out(options['out'])
    # A --resume that names nothing resumable is one line now, before anything runs.
    snapshots.check_resume(settings.resume, options.get('out'))
    return Resolution(settings, paper_preset, request, tuple(departures), servers, options)


def with_world(resolution, data, ranks, nodes, device, out, progress):
    """The settings of the running job: :func:`resolve`'s, with the world's facts and the
    preset at the loaded data's size (its departures then complete)."""
    preset = resolution.settings.preset.with_data(len(data.train), len(data.class_names))
    departures = resolution.departures + tuple(departures_from_preset(
        preset, resolution.paper_preset, resolution.options))
    return dataclasses.replace(resolution.settings, preset=preset, ranks=ranks, nodes=nodes,
                               device=device, out=out, progress=progress,
                               departures=departures)


def communicator_in_force(preset, options, gpus):
    """The communicator and AllReduce dtype in force, and why they differ from the preset's.

    A communicator this node cannot run is refused (:func:`.devices.check_communicator`);
    FP16 AllReduce is ChainerMN's ``pure_nccl`` feature, so wherever the gradients are not
    reduced by ``pure_nccl``'s multi-node optimizer it is dropped and said, whether the preset
    or ``--allreduce-grad-dtype`` asked for it.
    """
    name, dtype = preset.communicator, preset.allreduce_grad_dtype
    departures = []
    if options.get('communicator') is None and not gpus and name != 'naive':
        # The papers' pure_nccl needs CUDA; on a CPU machine ChainerMN's naive communicator
        # is the one that works.
        departures.append('communicator %s -> naive: no CUDA GPU on this node' % name)
        name = 'naive'
    devices.check_communicator(name, options.get('communicator') is not None, gpus)
    mode = modes.mode(options.get('parallelism') or 'sync')
    if dtype == 'float16':
        why = ('the naive communicator reduces in float32' if name != 'pure_nccl' else
               '--parallelism %s reduces through float32 host buffers' % mode.name
               if not mode.nccl_gradients else None)
        if why:
            departures.append('float16 AllReduce dropped: %s' % why)
            dtype = None
    return name, dtype, departures


def cudnn_departure(preset, on_gpu, cudnn):
    """Why ``cudnn_fast_bn`` does nothing on this run, or None when cuDNN applies it."""
    if not preset.cudnn_fast_bn:
        return None
    if not on_gpu:
        return 'cudnn_fast_bn has no effect: no GPU, so no cuDNN'
    if not cudnn:
        return ('cudnn_fast_bn has no effect: Chainer finds no cuDNN (CuPy 14 has none; '
                'docs/gpu.md)')
    return None


def departures_from_preset(preset, paper_preset, options):
    """In words, every way ``preset`` (as run) departs from ``paper_preset`` (as published)."""
    out = ['%s = %r instead of the preset\'s %r' % (key, getattr(preset, key),
                                                    getattr(paper_preset, key))
           for key in sorted(preset_overrides(options))
           if getattr(preset, key, None) != getattr(paper_preset, key, None)]
    if paper_preset.pretrained and not options.get('pretrained'):
        out.append('trained from scratch: the preset starts from %s weights'
                   % paper_preset.pretrained)
    mode = options.get('parallelism') or 'sync'
    if mode != paper_preset.parallelism:
        out.append('parallelism %s instead of the paper\'s %s (--parallelism %s)'
                   % (mode, paper_preset.parallelism, paper_preset.parallelism))
    if preset.n_train != paper_preset.n_train:
        out.append('%d training examples instead of the preset\'s %d' % (preset.n_train,
                                                                         paper_preset.n_train))
    last = options.get('iterations') or preset.max_iterations
    epochs = preset.epochs if not last else last / preset.iterations_per_epoch
    late = [s for s in preset.steps if s >= epochs] if preset.decay == 'step' else []
    if late:
        out.append('decay steps at epochs %s are at or beyond the last epoch %g: the rate '
                   'never decays there' % (', '.join('%g' % s for s in late), epochs))
    return out
