"""ChainerCV-style datasets: ``ds[i] -> (img, bbox, label)`` for detection, ``(img, label)`` for
classification; img float32 (3, H, W) RGB in [0, 255], bbox float32 (R, 4) as
(y_min, x_min, y_max, x_max), label int32. Every dataset has ``class_names``. See docs/datasets.md.
"""
from chainer_yolo_dist.datasets.imagenet import ImageNetDataset  # NOQA
from chainer_yolo_dist.datasets.synthetic import CLASS_NAMES as SYNTHETIC_CLASS_NAMES  # NOQA
from chainer_yolo_dist.datasets.synthetic import SyntheticShapesClassificationDataset  # NOQA
from chainer_yolo_dist.datasets.synthetic import SyntheticShapesDataset  # NOQA
from chainer_yolo_dist.datasets.validation import BadSampleError  # NOQA
from chainer_yolo_dist.datasets.validation import BadSampleReport  # NOQA
from chainer_yolo_dist.datasets.voc import ConcatenatedDetectionDataset  # NOQA
from chainer_yolo_dist.datasets.voc import default_devkit_dir  # NOQA
from chainer_yolo_dist.datasets.voc import voc07_test  # NOQA
from chainer_yolo_dist.datasets.voc import voc0712_train  # NOQA
from chainer_yolo_dist.datasets.voc import VOCFormatDataset  # NOQA
