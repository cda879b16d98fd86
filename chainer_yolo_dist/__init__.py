"""Distributed YOLOv2/YOLOv3, Darknet, CycleGAN and SlowFast training on Chainer + ChainerMN.

Reproduces the studies described in docs/papers.md (see README.md and docs/architecture.md):

- ``core``: the shared distributed-training machinery (imports no system);
- ``datasets``: readers of the on-disk formats, generated data, the bad-input policy;
- ``classification``, ``detection``, ...: one package per system (networks, data, losses,
  evaluation and the training recipe);
- ``presets``: the papers' settings as TOML data;
- ``analysis``: published tables, figures, cost and scaling models (on top: nothing imports it).
"""

# Before anything imports Chainer or ChainerCV: on NumPy 2 (Python 3.12) put back the NumPy
# names they still use; on the reference stack (NumPy 1.23.5) this changes nothing.
from chainer_yolo_dist import compat  # noqa: F401  (applied on import)

__version__ = '0.1.0'
