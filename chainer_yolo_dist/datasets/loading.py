"""Choosing the detection datasets of a run from its settings (``--dataset``)."""
from chainer_yolo_dist.datasets.synthetic import SyntheticShapesDataset
from chainer_yolo_dist.datasets.voc import VOCFormatDataset, voc07_test, voc0712_train

DETECTION_DATASETS = ('synthetic', 'voc0712', 'vocformat')


def load_detection_datasets(cfg):
    """Returns ``(train, test, class_names, reports)`` for ``cfg['dataset']``.

    - ``synthetic``: :class:`SyntheticShapesDataset` train / test splits (``n_train_images``,
      ``n_test_images``, ``image_size``, ``n_class``, ``seed``).
    - ``voc0712``: VOC2007+2012 trainval for training, VOC2007 test (with difficult flags)
      for evaluation, from the VOCdevkit ``data_dir`` (papers 000 and 001).
    - ``vocformat``: a VOC-layout dataset at ``data_dir`` with ``class_names`` and the
      ``train_split`` / ``test_split`` image sets (paper 000's Filmrole).
    ``reports`` maps 'train' / 'test' to the bad-sample report (or None for synthetic data).
    """
    name = cfg['dataset']
    policy = cfg.get('on_bad_sample', 'error')
    if name == 'synthetic':
        options = dict(n_class=cfg['n_class'], size=cfg['image_size'], seed=cfg['seed'],
                       min_scale=cfg.get('object_scales', (1 / 16., 2 / 3.))[0],
                       max_scale=cfg.get('object_scales', (1 / 16., 2 / 3.))[1],
                       scale_distribution=cfg.get('scale_distribution', 'log'))
        train = SyntheticShapesDataset('train', cfg['n_train_images'], **options)
        test = SyntheticShapesDataset('test', cfg['n_test_images'], **options)
        return train, test, train.class_names, {'train': None, 'test': None}
    if name == 'voc0712':
        train = voc0712_train(cfg.get('data_dir'), on_bad_sample=policy)
        test = voc07_test(cfg.get('data_dir'), on_bad_sample=policy)
    elif name == 'vocformat':
        if not cfg.get('data_dir') or not cfg.get('class_names'):
            raise ValueError('--dataset vocformat needs --data-dir and --class-names')
        names = tuple(cfg['class_names'])
        train = VOCFormatDataset(cfg['data_dir'], cfg['train_split'], names,
                                 on_bad_sample=policy)
        test = VOCFormatDataset(cfg['data_dir'], cfg['test_split'], names,
                                use_difficult=True, return_difficult=True,
                                on_bad_sample=policy)
    else:
        raise ValueError('unknown dataset %r: choose one of %s'
                         % (name, ', '.join(DETECTION_DATASETS)))
    return train, test, tuple(train.class_names), {'train': getattr(train, 'report', None),
                                                   'test': getattr(test, 'report', None)}
