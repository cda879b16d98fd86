"""Distributed YOLOv2/YOLOv3 and Darknet training on Chainer + ChainerMN.

Reproduces the AIST studies digested in PAPERS.md (see README.md). Subpackages:
``datasets`` (ChainerCV-style detection/classification datasets), ``models`` (networks),
``losses`` (YOLO training losses), ``schedules`` (learning-rate rules), ``presets`` (the
papers' settings as data), ``distributed`` (ChainerMN wiring), ``analysis`` (cost and
scaling models), ``published`` (the papers' tables).
"""

__version__ = '0.1.0'
