"""The networks: Darknet classifiers, ChainerCV's YOLOs, and the trunk transfer between them."""
from chainer_yolo_dist.models.darknet import Darknet19  # NOQA
from chainer_yolo_dist.models.darknet import Darknet53  # NOQA
from chainer_yolo_dist.models.transfer import inspect_classifier_file  # NOQA
from chainer_yolo_dist.models.transfer import load_classifier  # NOQA
from chainer_yolo_dist.models.transfer import transfer_pretrained  # NOQA
