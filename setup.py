"""chainer_yolo_dist: the AIST distributed YOLO/Darknet studies on Chainer + ChainerMN."""
from setuptools import find_packages, setup

setup(
    name='chainer_yolo_dist',
    version='0.1.0',
    description=('Faithful reproduction of distributed YOLOv2/YOLOv3/Darknet training '
                 '(ChainerMN, linear scaling rule, gradual warmup) from the AIST papers'),
    packages=find_packages(include=['chainer_yolo_dist', 'chainer_yolo_dist.*']),
    package_data={'chainer_yolo_dist': ['presets/*.toml']},
    # Python 3.11 with NumPy 1.23.5 is the reference stack; Python 3.12 with NumPy 2 runs
    # through chainer_yolo_dist/compat.py (docs/install.md). Exact pins: requirements/.
    python_requires='>=3.11,<3.13',
    install_requires=[
        'chainer==7.8.1',
        'chainercv==0.13.1',
        'numpy==1.23.5; python_version < "3.12"',
        'numpy>=2.0,<3; python_version >= "3.12"',
        'mpi4py',
        'matplotlib',
        'pillow',
    ],
    extras_require={
        # GPU machines only (never installed by `make setup`): see docs/gpu.md.
        'gpu': ['cupy-cuda13x==13.6.0'],
    },
)
