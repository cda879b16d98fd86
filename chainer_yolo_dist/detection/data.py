"""The detection datasets of a run, chosen by name (the registry of detection datasets)."""
from chainer_yolo_dist.datasets import image_checks
from chainer_yolo_dist.datasets.synthetic import SyntheticShapesDataset
from chainer_yolo_dist.datasets.voc import (
    VOCFormatDataset, annotation_files, default_devkit_dir, forget_read_annotations, image_files,
    read_annotations_across_ranks, voc07_test, voc0712_annotation_files, voc0712_image_files,
    voc0712_train)

#: The detection datasets a preset or ``--dataset`` may name.
DATASETS = ('synthetic', 'voc0712', 'vocformat')


def check_images(request, comm, log):
    """Checks every image of the run's data once as ``request.image_check`` says (the header,
    a full decode, or nothing for 'none'), split across the ranks, and remembers the results
    (:func:`~chainer_yolo_dist.datasets.image_checks.check_files`); reads the annotations
    split across the ranks too, whatever ``image_check``
    (:func:`~chainer_yolo_dist.datasets.voc.read_annotations_across_ranks`): rank 0 then
    builds the datasets without opening an unchanged image or any annotation again."""
    if request.dataset == 'voc0712':
        root = request.data_dir or default_devkit_dir()
        paths, xml_paths = voc0712_image_files(root), voc0712_annotation_files(root)
    elif request.dataset == 'vocformat' and request.data_dir:
        root = request.data_dir
        splits = (request.train_split, request.test_split)
        paths = [p for split in splits for p in image_files(root, split)]
        xml_paths = [p for split in splits for p in annotation_files(root, split)]
    else:
        return  # generated data: nothing on disk
    counts = image_checks.check_files(paths, comm, request.image_check,
                                      image_checks.default_cache_path(root))
    n_read = read_annotations_across_ranks(xml_paths, comm)
    if comm.rank == 0 and paths:
        log('%s; %d annotations read across the ranks'
            % (image_checks.summary(request.image_check, counts, comm.size), n_read))


def load_data(request):
    """Returns ``(train, test, class_names, reports)`` for ``request.dataset``.

    Args:
        request (DetectionData): what to load.

    - ``synthetic``: :class:`SyntheticShapesDataset` train / test splits (``n_train_images``,
      ``n_test_images``, ``image_size``, ``n_class``, ``seed``).
    - ``voc0712``: VOC2007+2012 trainval for training, VOC2007 test (with difficult flags)
      for evaluation, from the VOCdevkit ``data_dir`` (papers 000 and 001).
    - ``vocformat``: a VOC-layout dataset at ``data_dir`` with ``class_names`` and the
      ``train_split`` / ``test_split`` image sets (paper 000's Filmrole).
    ``reports`` maps 'train' / 'test' to the bad-sample report (or None for synthetic data).
    """
    train, class_names, train_report = load_split(request, 'train')
    test, _, test_report = load_split(request, 'test')
    forget_read_annotations()  # the datasets hold what they need
    return train, test, class_names, {'train': train_report, 'test': test_report}


def load_split(request, split):
    """``(dataset, class_names, bad-sample report or None)`` of one split ('train' or 'test'),
    reading nothing of the other (evaluation reads only the test split)."""
    name = request.dataset
    policy = request.on_bad_sample
    if name == 'synthetic':
        dataset = SyntheticShapesDataset(
            split, request.n_train_images if split == 'train' else request.n_test_images,
            n_class=request.n_class, size=request.image_size, seed=request.seed,
            min_scale=request.object_scales[0], max_scale=request.object_scales[1],
            scale_distribution=request.scale_distribution)
        return dataset, tuple(dataset.class_names), None
    if name == 'voc0712':
        read = voc0712_train if split == 'train' else voc07_test
        dataset = read(request.data_dir, on_bad_sample=policy, image_check=request.image_check)
    elif name == 'vocformat':
        if not request.data_dir or not request.class_names:
            raise ValueError('--dataset vocformat needs --data-dir and --class-names')
        if split == 'train':
            dataset = VOCFormatDataset(request.data_dir, request.train_split,
                                       tuple(request.class_names), on_bad_sample=policy,
                                       image_check=request.image_check)
        else:
            dataset = VOCFormatDataset(request.data_dir, request.test_split,
                                       tuple(request.class_names), use_difficult=True,
                                       return_difficult=True, on_bad_sample=policy,
                                       image_check=request.image_check)
    else:
        raise ValueError('unknown detection dataset %r: choose one of %s'
                         % (name, ', '.join(DATASETS)))
    return dataset, tuple(dataset.class_names), getattr(dataset, 'report', None)
