"""The classification datasets of a run, chosen by name (the registry of classification
datasets)."""
from chainer_yolo_dist.datasets import ImageNetDataset, SyntheticShapesClassificationDataset
from chainer_yolo_dist.datasets import image_checks, imagenet
from chainer_yolo_dist.datasets.paths import PathTable, RootedPaths

#: The classification datasets a preset or ``--dataset`` may name.
DATASETS = ('synthetic_classification', 'imagenet')


def check_images(request, comm, log):
    """Checks every ImageNet image once as ``request.image_check`` says, split across the
    ranks, and remembers the results
    (:func:`~chainer_yolo_dist.datasets.image_checks.check_files`): 'header' (the default;
    reads the headers: a decode of 1.28M images takes hours), 'decode', or nothing for
    'none'."""
    if request.dataset != 'imagenet' or not request.data_dir:
        return
    if request.image_check == 'none':
        image_checks.check_files([], comm, 'none', None)
        if comm.rank == 0:
            log(image_checks.summary('none', None, comm.size))
        return
    paths = RootedPaths(request.data_dir, PathTable.concatenate(
        imagenet.image_files(request.data_dir, split, list_file).table
        for split, list_file in (('train', request.train_list), ('val', request.val_list))))
    counts = image_checks.check_files(paths, comm, request.image_check,
                                      image_checks.default_cache_path(request.data_dir))
    if comm.rank == 0 and paths:
        log(image_checks.summary(request.image_check, counts, comm.size))


def load_data(request):
    """Returns ``(train, test, class_names, reports)`` for ``request.dataset``.

    - ``synthetic_classification``: :class:`SyntheticShapesClassificationDataset` train / test
      splits (``n_train_images``, ``n_test_images``, ``image_size``, ``n_class``, ``seed``).
    - ``imagenet``: :class:`ImageNetDataset` at ``data_dir``, ``train`` and ``val`` splits of
      the by-directory layout, or the ``train_list`` / ``val_list`` files of ``path label``
      lines; bad files follow ``on_bad_sample``.
    ``reports`` maps 'train' / 'test' to the bad-sample report (None for synthetic data).
    """
    name = request.dataset
    if name == 'synthetic_classification':
        options = dict(size=request.image_size, n_class=request.n_class, seed=request.seed)
        train = SyntheticShapesClassificationDataset('train', request.n_train_images, **options)
        test = SyntheticShapesClassificationDataset('test', request.n_test_images, **options)
        return train, test, tuple(train.class_names), {'train': None, 'test': None}
    if name != 'imagenet':
        raise ValueError('unknown classification dataset %r: choose one of %s'
                         % (name, ', '.join(DATASETS)))
    if not request.data_dir:
        raise ValueError('--dataset imagenet needs --data-dir (the directory holding train/ '
                         'and val/, or the root the --train-list/--val-list paths start from)')
    if bool(request.train_list) != bool(request.val_list):
        raise ValueError('give both --train-list and --val-list, or neither (directory layout)')
    options = dict(on_bad_sample=request.on_bad_sample, image_check=request.image_check)
    train = ImageNetDataset(request.data_dir, 'train', list_file=request.train_list,
                            **options)
    test = ImageNetDataset(request.data_dir, 'val', list_file=request.val_list,
                           n_class=train.n_class, **options)
    if len(train) == 0 or len(test) == 0:
        raise ValueError('%s: no usable %s images' % (request.data_dir,
                                                      'training' if not len(train) else 'val'))
    return train, test, tuple(train.class_names), {'train': train.report, 'test': test.report}
