"""chainer_yolo_dist: the AIST distributed YOLO/Darknet studies on Chainer + ChainerMN."""
from setuptools import find_packages, setup

# With cuDNN: CUDA 12. CuPy 13 is the last CuPy with cuDNN bindings and binds cuDNN 8 only
# (the cupy-cuda12x 13.6.0 wheel has cupy_backends/cuda/libs/cudnn*.so, built against cuDNN
# 8.8.1 by its cupy/.data/_wheel.json; any 8.x >= 8.8 loads as libcudnn.so.8); cuDNN 8 exists
# for CUDA 12 at most (nvidia-cudnn-cu12 8.9.7.29, the last 8.x). Runs on any driver that runs
# CUDA 12, CUDA 13 drivers included. CuPy 13.6 itself loads NCCL from the nvidia-nccl-cu12
# wheel (its preload; >= 2.16.5 by _wheel.json), dlopens libnvrtc.so.12 (ChainerMN's gradient
# packing kernels and CuPy's own are compiled with NVRTC) and takes cuda_fp16.h for those
# kernels from nvidia-cuda-runtime-cu12 of the same major.minor as NVRTC. cuDNN and NVRTC are
# found through LD_LIBRARY_PATH (docs/gpu.md), or from the node's CUDA 12 toolkit.
GPU_CUDA12 = [
    'cupy-cuda12x>=13.6.0,<13.7',
    'nvidia-cudnn-cu12>=8.9.7,<8.10',    # requires nvidia-cublas-cu12, nvidia-cuda-nvrtc-cu12
    'nvidia-nccl-cu12>=2.16.5,<3',
    'nvidia-cuda-nvrtc-cu12==12.9.*',
    'nvidia-cuda-runtime-cu12==12.9.*',  # headers only; must match NVRTC's 12.9
]
# Without cuDNN: CUDA 13. The cupy-cuda13x 13.6.0 wheel has no cuDNN module (its _wheel.json
# lists NCCL only), and CuPy 14 removed cuDNN altogether: every convolution runs as im2col +
# cuBLAS, about 6 images/s for YOLOv2/YOLOv3 at 416 on an H100 (docs/gpu.md).
GPU_CUDA13 = [
    'cupy-cuda13x>=13.6.0,<13.7',
    'nvidia-nccl-cu13>=2.27.7,<3',
    'nvidia-cuda-nvrtc==13.0.*',
    'nvidia-cuda-runtime==13.0.*',
]

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
        'opencv-python-headless',
    ],
    # GPU machines only, installed after `make setup` (docs/gpu.md says how and why):
    #   .venv/bin/python -m pip install --no-build-isolation -c requirements/constraints.txt \
    #       -e '.[gpu-cuda12]'
    extras_require={
        'gpu-cuda12': GPU_CUDA12,
        'gpu-cuda13': GPU_CUDA13,
        # Deprecated alias: until 2026-11 `gpu` named cupy-cuda13x, wrongly said to have cuDNN.
        # It now means the extra that has cuDNN.
        'gpu': GPU_CUDA12,
    },
)
