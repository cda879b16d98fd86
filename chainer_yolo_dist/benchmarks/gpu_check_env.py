"""GPU check, stage ``environment``: what this node's stack is, and whether its basics work.

Facts: Python, NumPy, CuPy, the CUDA runtime and driver versions, NCCL, cuDNN (present or not:
CuPy 14 has no cuDNN bindings and cuDNN cannot be brought to the lent machine, so there every
convolution is im2col + cuBLAS), each device's name, memory, compute capability and PCI bus
id, Chainer / ChainerMN / ChainerCV, mpi4py and its MPI library, OpenCV, Pillow, matplotlib.

Checks: a device is visible; an elementwise kernel and a reduction compile (NVRTC) and give
exact results; a cuBLAS matrix product matches NumPy's; ChainerMN's FP16 gradient-packing
kernels compile with this CuPy (``core.mpi.fix_nccl_pack_kernels_for_new_cupy``); NCCL is
there for ``pure_nccl``; every package a later stage imports imports, ChainerCV's compiled NMS
helper included (without it the evaluations' GPU NMS falls back to Python).
"""
import importlib
import platform
import sys

import numpy as np

from chainer_yolo_dist.benchmarks import gpu_check_worker as worker

#: Modules the later stages import: name -> why.
NEEDED = {
    'chainer': 'every stage', 'chainermn': 'every training run',
    'chainercv': 'YOLO networks and evaluation', 'mpi4py': 'every training run',
    'cv2': 'the datasets\' image reading and augmentation',
    'PIL': 'CycleGAN data and sample grids', 'matplotlib': 'loss.png, fid.png',
}


def _version(name):
    try:
        module = importlib.import_module(name)
    except Exception as e:  # missing or broken: the check names it
        return None, '%s: %s' % (type(e).__name__, e)
    return getattr(module, '__version__', 'present'), None


def _imports(report):
    for name, why in NEEDED.items():
        version, error = _version(name)
        report.fact('version_' + name, version)
        report.check('import %s' % name, version is not None,
                     version if version else '%s (needed by %s)' % (error, why))
    try:
        from chainercv.utils.bbox import _nms_gpu_post  # noqa: F401 (compiled per Python)
        report.check('chainercv _nms_gpu_post', True, _nms_gpu_post.__file__)
    except Exception as e:
        report.check('chainercv _nms_gpu_post', False, '%s: build it for Python %s '
                     '(make setup-py312)' % (e, platform.python_version()))
    try:
        from mpi4py import MPI
        report.fact('mpi_library', MPI.Get_library_version().strip().splitlines()[0])
    except Exception as e:
        report.fact('mpi_library', 'unavailable: %s' % e)


def _devices(cupy):
    out = []
    for i in range(cupy.cuda.runtime.getDeviceCount()):
        props = cupy.cuda.runtime.getDeviceProperties(i)
        name = props['name']
        out.append({'id': i, 'name': name.decode() if isinstance(name, bytes) else name,
                    'memory_gib': round(props['totalGlobalMem'] / 2. ** 30, 1),
                    'compute_capability': '%d.%d' % (props['major'], props['minor']),
                    'pci_bus_id': cupy.cuda.Device(i).pci_bus_id})
    return out


def _kernels(report, cupy):
    """Elementwise, reduction and cuBLAS results on device 0 against exact / NumPy values."""
    a = cupy.arange(1000, dtype=cupy.float32)
    report.check('elementwise and reduction kernels', float((a * 2 + 1).sum()) == 1000000.0,
                 'sum(2i + 1, i < 1000) on the GPU')
    rng = np.random.RandomState(0)
    x, y = rng.randn(257, 129).astype(np.float32), rng.randn(129, 65).astype(np.float32)
    got = cupy.asnumpy(cupy.asarray(x).dot(cupy.asarray(y)))
    err = float(np.abs(got - x.dot(y)).max() / np.abs(x.dot(y)).max())
    report.check('cuBLAS matrix product', err < 1e-5, 'max difference / max value %.2g' % err)
    from chainer_yolo_dist.core import mpi
    mpi.fix_nccl_pack_kernels_for_new_cupy()
    from chainermn.communicators import _memory_utility as mu
    try:
        for name in ('_cupy_batched_pack_params', '_cupy_batched_unpack_params'):
            kernel = getattr(mu, name)()
            # NVRTC now, not at the first AllReduce: RawKernel.compile() where CuPy has it,
            # else reading the kernel's attributes, which needs the compiled function.
            if hasattr(kernel, 'compile'):
                kernel.compile()
            else:
                assert kernel.attributes is not None
    except Exception as e:  # the compiler's message says what is missing
        report.check('ChainerMN FP16 pack kernels compile', False, '%s: %s'
                     % (type(e).__name__, str(e).strip().splitlines()[-1:]))
        return
    report.check('ChainerMN FP16 pack kernels compile', True, 'with <cuda_fp16.h> included')


def environment(report, options):
    report.fact('python', platform.python_version())
    report.fact('numpy', np.__version__)
    try:
        import cupy
    except Exception as e:
        if options.cpu_smoke:
            _imports(report)
            report.summary = 'CPU smoke run: no CuPy (%s)' % e
            return
        report.check('import cupy', False, '%s: %s' % (type(e).__name__, e))
        return
    rt = cupy.cuda.runtime
    report.fact('cupy', cupy.__version__)
    report.fact('cuda_runtime', rt.runtimeGetVersion())
    report.fact('cuda_driver', rt.driverGetVersion())
    devices = report.fact('devices', _devices(cupy))
    if not report.check('CUDA device visible', devices, '%d device(s)' % len(devices)):
        return
    try:
        from cupy.cuda import nccl
        report.check('NCCL', True, nccl.get_version())
        report.fact('nccl', nccl.get_version())
    except Exception as e:
        report.check('NCCL', False, 'not available to CuPy (%s): pure_nccl cannot run' % e)
    cudnn = None
    try:
        from cupy.cuda import cudnn as cudnn_module
        cudnn = cudnn_module.getVersion()
    except Exception:  # CuPy 14 has no cuDNN bindings at all
        pass
    report.fact('cudnn', cudnn)
    _imports(report)
    import chainer
    report.fact('chainer_cudnn_enabled', bool(chainer.backends.cuda.cudnn_enabled))
    _kernels(report, cupy)
    report.summary = ('CuPy %s, CUDA runtime %s / driver %s, NCCL %s, cuDNN %s; %s; %s'
                      % (cupy.__version__, report.facts['cuda_runtime'],
                         report.facts['cuda_driver'], report.facts.get('nccl'),
                         cudnn or 'none (convolutions are im2col + cuBLAS; cuDNN cannot be '
                         'brought to the lent machine)',
                         ', '.join('%s %.0f GiB' % (d['name'], d['memory_gib'])
                                   for d in devices), report.facts.get('mpi_library')))


if __name__ == '__main__':
    sys.exit(worker.main({'environment': environment}, description=__doc__))
