"""The multi-node optimizer: a Chainer optimizer whose gradients are averaged across ranks."""
import chainer


def momentum_sgd(settings):
    """The papers' optimizer: MomentumSGD with weight decay (YOLO9000: 0.9 and 0.0005).

    The rate is set by the schedule extension before the first update; the one given here is
    the schedule's value at epoch 0.
    """
    preset = settings.preset
    optimizer = chainer.optimizers.MomentumSGD(lr=preset.schedule()(0),
                                               momentum=preset.momentum)
    hooks = []
    if preset.weight_decay:
        hooks.append(chainer.optimizer_hooks.WeightDecay(preset.weight_decay))
    return optimizer, hooks


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
