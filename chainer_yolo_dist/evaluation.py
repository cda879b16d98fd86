"""VOC detection mAP, computed across ranks.

Rank 0 reads the test set and ChainerCV's ``apply_to_iterator(..., comm=comm)`` scatters the
images, every rank predicts on its share, and the predictions are gathered on rank 0, where
``eval_detection_voc`` computes the mAP over the whole test set: the same number a single
process gets for the same model. Every rank must hold the same model (parameters and batch
normalisation statistics: see ``chainermn.extensions.AllreducePersistent``).
"""
import chainer
import numpy as np
from chainercv.evaluations import eval_detection_voc
from chainercv.utils import apply_to_iterator


def evaluate_detection(model, dataset, comm=None, batchsize=8, use_07_metric=True,
                       class_names=None):
    """Returns ``{'map': float, 'ap': {class_name: float}}`` on every rank.

    Args:
        model: a ChainerCV detector with ``predict`` (its ``insize`` sets the eval size).
        dataset: ``(img, bbox, label[, difficult])`` examples; only rank 0 reads it.
        comm: a ChainerMN communicator, or ``None`` for one process.
        use_07_metric (bool): VOC2007's 11-point AP, as the papers and ChainerCV report.
    """
    rank0 = comm is None or comm.rank == 0
    if rank0:
        it = chainer.iterators.SerialIterator(dataset, batchsize, repeat=False, shuffle=False)
        _, (pred_bboxes, pred_labels, pred_scores), gt = apply_to_iterator(
            model.predict, it, comm=comm)
        gt_bboxes, gt_labels = gt[0], gt[1]
        gt_difficults = gt[2] if len(gt) > 2 else None
        result = eval_detection_voc(pred_bboxes, pred_labels, pred_scores, gt_bboxes,
                                    gt_labels, gt_difficults, use_07_metric=use_07_metric)
        names = class_names or [str(i) for i in range(len(result['ap']))]
        out = {'map': float(result['map']),
               'ap': {name: float(ap) for name, ap in zip(names, result['ap'])}}
    else:
        apply_to_iterator(model.predict, None, comm=comm)
        out = None
    if comm is not None:
        out = comm.bcast_obj(out)
    return out


class DetectionEvaluator(chainer.training.Extension):
    """Trainer extension: reports ``validation/main/map`` (and per-class AP) on every rank.

    Averages the batch-normalisation statistics across ranks first, so that every rank
    predicts with the same model.
    """

    priority = chainer.training.PRIORITY_WRITER

    def __init__(self, model, dataset, comm=None, batchsize=8, class_names=None,
                 eval_insize=None):
        self.model = model
        self.dataset = dataset
        self.comm = comm
        self.batchsize = batchsize
        self.class_names = class_names
        self.eval_insize = eval_insize

    def __call__(self, trainer=None):
        from chainer_yolo_dist.models.yolo import set_insize
        if self.comm is not None and self.comm.size > 1:
            import chainermn
            chainermn.extensions.AllreducePersistent(self.model, self.comm)()
        if self.eval_insize:
            set_insize(self.model, self.eval_insize)
        self.model.use_preset('evaluate')
        result = evaluate_detection(self.model, self.dataset, self.comm, self.batchsize,
                                    class_names=self.class_names)
        self.model.use_preset('visualize')
        observation = {'validation/main/map': result['map']}
        for name, ap in result['ap'].items():
            observation['validation/main/ap/%s' % name] = np.float32(ap)
        chainer.reporter.report(observation)
        self.last_result = result
        return result


def evaluate_saved_model(args):
    """``scripts/eval_yolo.py``'s body. Returns the result on rank 0, ``None`` elsewhere."""
    import json
    import os

    from chainer_yolo_dist import distributed
    from chainer_yolo_dist.datasets.loading import load_detection_datasets
    from chainer_yolo_dist.models.yolo import build_model, set_insize

    config_path = args.config or os.path.join(os.path.dirname(os.path.abspath(args.snapshot)),
                                              'config.json')
    cfg = {}
    if os.path.isfile(config_path):
        with open(config_path) as f:
            cfg = json.load(f)
    for key in ('model', 'dataset', 'data_dir', 'class_names', 'test_split'):
        if getattr(args, key, None) is not None:
            cfg[key] = getattr(args, key)
    missing = [k for k in ('model', 'dataset') if not cfg.get(k)]
    if missing:
        raise ValueError('%s: no config.json found at %s; give --%s'
                         % (args.snapshot, config_path, ' and --'.join(missing)))
    cfg.setdefault('on_bad_sample', 'error')
    comm = distributed.create_communicator(args.communicator)
    _, test, class_names, _ = comm.bcast_obj(
        load_detection_datasets(_with_data_defaults(cfg)) if comm.rank == 0 else None)
    model = build_model(cfg['model'], len(class_names))
    _load_model(args.snapshot, model)
    if distributed.cuda_available() and comm.size >= 1 and args.communicator != 'naive' \
            and cfg.get('communicator') != 'naive':
        import chainer
        chainer.cuda.get_device_from_id(comm.intra_rank).use()
        model.to_gpu()
    set_insize(model, args.insize or cfg.get('eval_insize') or cfg.get('insize') or 416)
    model.use_preset('evaluate')
    result = evaluate_detection(model, test, comm, args.batchsize, class_names=class_names)
    result['insize'] = model.insize
    result['snapshot'] = os.path.abspath(args.snapshot)
    return result if comm.rank == 0 else None


def _with_data_defaults(cfg):
    out = dict(cfg)
    out.setdefault('n_train_images', 1)
    out.setdefault('test_split', 'test')
    out.setdefault('train_split', 'trainval')
    return out


def _load_model(path, model):
    """Loads ``model.npz`` or the model inside a trainer snapshot; names the file on error."""
    import numpy as np
    with np.load(path) as f:
        keys = f.files
    prefix = next((p for p in ('', 'updater/model:main/model/') if
                   any(k.startswith(p + 'extractor/') for k in keys)), None)
    if prefix is None:
        raise ValueError('%s: neither a model.npz nor a train_yolo.py trainer snapshot '
                         '(no extractor/ arrays)' % path)
    chainer.serializers.load_npz(path, model, path=prefix)
