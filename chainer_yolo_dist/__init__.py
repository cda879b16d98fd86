"""Distributed YOLOv2/YOLOv3 and Darknet training on Chainer + ChainerMN.

Reproduces the AIST studies digested in PAPERS.md (see README.md). Subpackages:
``datasets`` (ChainerCV-style detection/classification datasets), ``models`` (networks),
``losses`` (YOLO training losses), ``schedules`` (learning-rate rules), ``presets`` (the
papers' settings as data), ``distributed`` (ChainerMN wiring), ``analysis`` (cost and
scaling models), ``published`` (the papers' tables).
"""

# Before anything imports Chainer or ChainerCV: on NumPy 2 (Python 3.12) put back the NumPy
# names they still use; on the reference stack (NumPy 1.23.5) this changes nothing.
from chainer_yolo_dist import compat  # noqa: F401  (applied on import)

__version__ = '0.1.0'
