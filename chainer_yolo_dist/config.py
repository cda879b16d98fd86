"""A run's settings: a preset, the command-line options that override it, and run options.

:func:`resolve` turns parsed arguments into one flat dict (``cfg``) that the training code
reads and that ``config.json`` records. Preset fields keep their preset names
(``batchsize_per_gpu`` is ``cfg['batchsize']``, ``eta`` is ``cfg['lr']``).
"""
import sys

from chainer_yolo_dist import presets


def preset_overrides(args, option_map):
    """Preset fields set on the command line: ``{preset_field: value}``.

    Options left at ``None`` keep the preset's value; ``--no-multiscale`` and
    ``--multiscale`` set the ``multiscale`` field.
    """
    overrides = {field: getattr(args, dest) for dest, field in option_map.items()
                 if getattr(args, dest, None) is not None}
    if getattr(args, 'no_multiscale', False):
        overrides['multiscale'] = []
    elif getattr(args, 'multiscale', None):
        overrides['multiscale'] = list(args.multiscale)
    return overrides


def resolve(args, option_map, n_processes, cuda_available, data_facts=None):
    """The settings of a run of ``n_processes`` ranks.

    Args:
        args: ``argparse.Namespace`` of a training script.
        option_map (dict): option dest -> preset field, for the overridable options.
        n_processes (int): MPI world size (the papers' k).
        cuda_available (bool): whether this machine has CUDA (picks the communicator).
        data_facts (dict or None): ``n_train`` and ``n_class`` of the data actually loaded,
            recorded in the preset so that the batch fraction and iterations per epoch are
            those of the data really used.
    Returns:
        (cfg dict, Preset)
    """
    overrides = preset_overrides(args, option_map)
    overrides.update(data_facts or {})
    preset = presets.load(args.preset, n_processes, **overrides)
    communicator = preset.communicator
    allreduce_grad_dtype = preset.allreduce_grad_dtype
    if args.communicator is None and not cuda_available and communicator != 'naive':
        # The papers' pure_nccl needs CUDA; on a CPU machine ChainerMN's naive one is the
        # only communicator that works (docs/gpu.md), and it reduces in float32 only.
        communicator = 'naive'
        if args.allreduce_grad_dtype is None:
            allreduce_grad_dtype = None
    cfg = {k: v for k, v in vars(args).items()}
    cfg.update(
        preset=preset.name, model=preset.model, dataset=preset.dataset,
        n_class=preset.n_class, batchsize=preset.batchsize_per_gpu, epochs=preset.epochs,
        lr=preset.eta, lr_rule=preset.lr_rule, reference_batch=preset.reference_batch,
        insize=preset.insize, multiscale=preset.multiscale, momentum=preset.momentum,
        weight_decay=preset.weight_decay, communicator=communicator,
        allreduce_grad_dtype=allreduce_grad_dtype,
        cudnn_fast_bn=bool(preset.cudnn_fast_bn), overrides=overrides,
        augment=not args.no_augment,
        # A progress bar only where someone watches: not in logs or CI output.
        progress=not args.no_progress and sys.stdout.isatty(),
        pretrained_path=args.pretrained, schedule=preset.schedule(),
    )
    cfg.pop('pretrained', None)
    cfg.pop('no_augment', None)
    cfg.pop('no_progress', None)
    cfg.pop('no_multiscale', None)
    return cfg, preset
