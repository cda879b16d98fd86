"""The GPU check: is this node's stack complete, and does distributed training work on it?

:func:`stack_report` says which CuPy, CUDA, cuDNN and NCCL this process sees, and whether
Chainer will use cuDNN; :func:`training_check` trains YOLOv2 at 416 px for a few dozen
iterations on the embedded synthetic data through ``pure_nccl``, once with FP32 and once with
paper 001's FP16 AllReduce, and reports images per second and whether the loss fell.
``scripts/check_gpu.py`` prints both and exits non-zero when something is broken.
"""
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def stack_report():
    """``(facts dict, problems list)``: versions of the GPU stack, and what is missing."""
    facts, problems = {}, []
    try:
        import cupy
    except Exception as e:  # not installed, or a broken CUDA install
        return {'cupy': None}, ['CuPy cannot be imported (%s: %s): install a GPU extra '
                                '(docs/gpu.md)' % (type(e).__name__, e)]
    facts['cupy'] = cupy.__version__
    try:
        facts['cuda_runtime'] = cupy.cuda.runtime.runtimeGetVersion()
        facts['cuda_driver'] = cupy.cuda.runtime.driverGetVersion()
        facts['devices'] = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        problems.append('no usable CUDA device (%s: %s)' % (type(e).__name__, e))
        facts['devices'] = 0
    try:
        from cupy.cuda import nccl
        facts['nccl'] = nccl.get_version()
    except Exception as e:
        facts['nccl'] = None
        problems.append('NCCL is not available to CuPy (%s): pure_nccl cannot run' % e)
    try:
        from cupy.cuda import cudnn
        facts['cudnn'] = cudnn.getVersion()
    except Exception:
        facts['cudnn'] = None  # CuPy 14 has no cuDNN: im2col convolutions, slower
    import chainer
    facts['chainer_uses_cudnn'] = bool(chainer.backends.cuda.cudnn_enabled
                                       and chainer.should_use_cudnn('>=auto'))
    return facts, problems


def _train(args, processes, timeout):
    out = tempfile.mkdtemp(prefix='check_gpu_')
    cmd = ([os.path.join(os.path.dirname(sys.executable), 'mpiexec'), '-n', str(processes),
            sys.executable, os.path.join(REPO, 'scripts', 'train_yolo.py'),
            '--model', 'yolov2', '--insize', '416', '--image-size', '416', '--no-multiscale',
            '--communicator', 'pure_nccl', '--no-progress', '--log-interval', '5',
            '--eval-batchsize', '8', '--n-test-images', '16', '--out', out] + list(args))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    result = {'command': ' '.join(cmd), 'exit_status': proc.returncode}
    if proc.returncode != 0:
        result['error'] = proc.stderr.strip().splitlines()[-5:]
        return result
    with open(os.path.join(out, 'metrics.json')) as f:
        metrics = json.load(f)
    with open(os.path.join(out, 'log')) as f:
        losses = [entry['main/loss'] for entry in json.load(f) if 'main/loss' in entry]
    result.update(images_per_second=metrics['images_per_second'],
                  first_loss=losses[0], last_loss=losses[-1],
                  loss_fell=bool(losses[-1] < losses[0]))
    return result


def training_check(processes=1, iterations=40, batchsize=8, timeout=1200):
    """Trains YOLOv2 at 416 through ``pure_nccl`` with FP32 and FP16 AllReduce; returns
    ``{'float32': {...}, 'float16': {...}}`` with images/s and whether the loss fell."""
    common = ['--iterations', str(iterations), '--batchsize', str(batchsize),
              '--n-train-images', str(processes * batchsize * 4)]
    return {dtype: _train(common + ['--allreduce-grad-dtype', dtype], processes, timeout)
            for dtype in ('float32', 'float16')}
