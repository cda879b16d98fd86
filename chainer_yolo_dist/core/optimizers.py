"""The papers' optimizer, its regularisation, and the multi-node wrapper.

The papers' optimizer is MomentumSGD with weight decay (YOLO9000 / paper 000: momentum 0.9,
decay 0.0005). Papers 000 and 001 (future work) name LARS (You et al. 2017) for large
batches. Chainer has it as ``chainer.optimizer_hooks.GradientLARS``, which rescales each
parameter's gradient by

    rate = ||w|| / (eps + ||g|| + weight_decay * ||w||)    (only where ||w|| > threshold)
    g <- rate * (g + weight_decay * w)

i.e. it applies weight decay itself: an optimizer gets *either* ``WeightDecay`` or
``GradientLARS(weight_decay=...)``, never both (the decay would count twice).
"""
import chainer

#: ``GradientLARS``'s own defaults (Chainer 7.8.1), kept as this module's defaults.
LARS_THRESHOLD = 1e-2
LARS_EPS = 1e-9


def regularization_hook(weight_decay, lars=False, lars_threshold=LARS_THRESHOLD,
                        lars_eps=LARS_EPS):
    """The one hook that carries the weight decay: ``WeightDecay`` or ``GradientLARS``.

    Returns ``None`` when there is nothing to add (no decay and no LARS).
    """
    if weight_decay < 0:
        raise ValueError('weight_decay must be >= 0, got %r' % (weight_decay,))
    if lars:
        return chainer.optimizer_hooks.GradientLARS(
            threshold=lars_threshold, weight_decay=weight_decay, eps=lars_eps)
    if weight_decay:
        return chainer.optimizer_hooks.WeightDecay(weight_decay)
    return None


def hook_names(optimizer):
    """Names of the optimizer-wide hooks of a set-up Chainer optimizer (or of a wrapper that
    forwards attributes to one, as ChainerMN's and this package's do)."""
    hookable = optimizer._hookable
    return list(hookable._pre_update_hooks) + list(hookable._post_update_hooks)


def add_regularization(optimizer, weight_decay, lars=False, lars_threshold=LARS_THRESHOLD,
                       lars_eps=LARS_EPS):
    """Adds :func:`regularization_hook` to a set-up optimizer (or a wrapper that forwards
    ``add_hook``); refuses an optimizer that already has either hook."""
    present = [name for name in ('WeightDecay', 'GradientLARS') if name in hook_names(optimizer)]
    if present:
        raise ValueError('the optimizer already has %s: adding weight decay again would '
                         'apply it twice' % ' and '.join(present))
    hook = regularization_hook(weight_decay, lars, lars_threshold, lars_eps)
    if hook is not None:
        optimizer.add_hook(hook)
    return optimizer


def build_optimizer(link, lr, momentum=0.9, weight_decay=0.0, lars=False,
                    lars_threshold=LARS_THRESHOLD, lars_eps=LARS_EPS):
    """``MomentumSGD(lr, momentum)`` set up on ``link`` with weight decay or LARS.

    This is the papers' optimiser (YOLO9000 / paper 000: momentum 0.9, decay 0.0005); the
    parameter server uses it on its shard and the local/stale wrappers on each worker.
    """
    optimizer = chainer.optimizers.MomentumSGD(lr=lr, momentum=momentum)
    optimizer.setup(link)
    return add_regularization(optimizer, weight_decay, lars, lars_threshold, lars_eps)


def adam(settings, factor=1.0):
    """Adam with the preset's rate times ``factor`` as ``alpha`` and its ``momentum`` read as
    Adam's first-moment decay ``beta1`` (paper 002 appendix A.1.2: Adam, alpha 2e-4; beta1 0.5 is
    Zhu et al.'s implementation's, which paper 002 sec. 3.1 follows), with
    the preset's weight decay if any. The schedule extension sets ``alpha`` before the first
    update. Returns ``(optimizer, hooks)``; give each network its own.
    """
    preset = settings.preset
    optimizer = chainer.optimizers.Adam(alpha=factor * preset.schedule()(0),
                                        beta1=preset.momentum)
    hook = regularization_hook(preset.weight_decay)
    return optimizer, [hook] if hook is not None else []


def multi_node(optimizer, hooks, target, comm, double_buffering=False, init=None):
    """Wraps ``optimizer`` with ChainerMN, sets it up on ``target`` and adds ``hooks``.

    The multi-node optimizer all-reduces the mean of the ranks' gradients before each update,
    so with each rank's loss averaged over its own examples, the update equals one process's
    update on the whole global batch.

    ChainerMN's optimizer spends its first ``update`` broadcasting rank 0's parameters instead
    of updating, because lazily initialised parameters only exist after a forward pass; a run
    resumed from a snapshot would lose one more update that way. ``init`` (a callable that
    runs one forward pass in test mode, or None when ``target`` has no lazy parameters) is
    called here, then the parameters are broadcast, so that every ``update`` updates.
    """
    import chainermn
    optimizer = chainermn.create_multi_node_optimizer(optimizer, comm,
                                                      double_buffering=double_buffering)
    optimizer.setup(target)
    for hook in hooks:
        optimizer.add_hook(hook)
    if not double_buffering:
        if init is not None:
            with chainer.using_config('train', False), chainer.no_backprop_mode():
                init()
        comm.bcast_data(target)
        optimizer.is_changed(target)  # records the now complete parameter set
    return optimizer
