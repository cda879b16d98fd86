"""Distributed YOLOv2/YOLOv3, Darknet, CycleGAN and SlowFast training on Chainer + ChainerMN.

Reproduces the studies described in docs/papers.md (see README.md and docs/architecture.md):

- ``core``: the shared distributed-training machinery (imports no system);
- ``datasets``: readers of the on-disk formats, generated data, the bad-input policy;
- ``classification``, ``detection``, ...: one package per system (networks, data, losses,
  evaluation and the training recipe);
- ``presets``: the papers' settings as TOML data;
- ``analysis``: published tables, figures, cost and scaling models (on top: nothing imports it).
"""

__version__ = '0.1.0'
