"""setup.py's GPU extras say the truth (docs/gpu.md).

`gpu-cuda12` has cuDNN (CuPy 13.6 for CUDA 12 + cuDNN 8.9), `gpu-cuda13` has none, `gpu` is a
deprecated alias of `gpu-cuda12`. The static checks always run; the resolution of the documented
install command against the pinned stack needs the package index and downloads about 1.9 GB,
so it runs only when asked: `CHAINER_YOLO_DIST_NETWORK_TESTS=1` (and the index reachable).
"""
import importlib.util
import os
import re
import socket

import pytest

from conftest import REPO, check, run_python

_spec = importlib.util.spec_from_file_location(
    'check_gpu_extras', os.path.join(REPO, 'tools', 'check_gpu_extras.py'))
check_gpu_extras = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_gpu_extras)


def extras():
    """setup.py's extras_require, read without running setup()."""
    import setuptools
    captured = {}
    real = setuptools.setup
    setuptools.setup = lambda **kw: captured.update(kw)
    try:
        src = open(os.path.join(REPO, 'setup.py')).read()
        exec(compile(src, 'setup.py', 'exec'), {'__name__': 'setup_py'})
    finally:
        setuptools.setup = real
    return captured['extras_require']


def spec(reqs, name):
    found = [r for r in reqs if re.match(re.escape(name) + r'\s*[<>=!~]', r)]
    assert len(found) == 1, (name, reqs)
    return found[0]


def test_cuda12_extra_has_cupy_13_6_with_cudnn_8_9():
    reqs = extras()['gpu-cuda12']
    assert spec(reqs, 'cupy-cuda12x') == 'cupy-cuda12x>=13.6.0,<13.7'
    # CuPy 13 binds cuDNN 8 only; 8.9.7 is the last cuDNN 8 and exists for CUDA 12 at most.
    assert spec(reqs, 'nvidia-cudnn-cu12') == 'nvidia-cudnn-cu12>=8.9.7,<8.10'
    assert spec(reqs, 'nvidia-nccl-cu12').startswith('nvidia-nccl-cu12>=2.16.5')


def test_nvrtc_and_runtime_headers_share_a_minor():
    # CuPy 13.6 takes cuda_fp16.h from the runtime wheel only when its major.minor equals
    # NVRTC's (cupy/_environment.py, _get_include_dir_from_conda_or_wheel).
    for extra, nvrtc, runtime in (('gpu-cuda12', 'nvidia-cuda-nvrtc-cu12',
                                   'nvidia-cuda-runtime-cu12'),
                                  ('gpu-cuda13', 'nvidia-cuda-nvrtc', 'nvidia-cuda-runtime')):
        reqs = extras()[extra]
        assert spec(reqs, nvrtc).split('==')[1] == spec(reqs, runtime).split('==')[1]


def test_cuda13_extra_names_no_cudnn():
    reqs = extras()['gpu-cuda13']
    assert spec(reqs, 'cupy-cuda13x') == 'cupy-cuda13x>=13.6.0,<13.7'
    assert not [r for r in reqs if 'cudnn' in r]


def test_gpu_is_an_alias_of_the_cudnn_extra():
    e = extras()
    assert e['gpu'] == e['gpu-cuda12']


def test_checker_flags_a_moved_pin_and_a_missing_cudnn():
    pinned = {'numpy': '1.23.5'}
    good = {'cupy-cuda12x': '13.6.0', 'nvidia-cudnn-cu12': '8.9.7.29',
            'nvidia-nccl-cu12': '2.32.3', 'nvidia-cuda-nvrtc-cu12': '12.9.86',
            'nvidia-cuda-runtime-cu12': '12.9.79', 'nvidia-cublas-cu12': '12.9.3.13',
            'fastrlock': '0.8.4'}
    assert check_gpu_extras.check('gpu-cuda12', good, pinned) == []
    bad = dict(good, numpy='2.5.5')
    del bad['nvidia-cudnn-cu12']
    problems = check_gpu_extras.check('gpu-cuda12', bad, pinned)
    assert len(problems) == 2
    assert any('nvidia-cudnn-cu12: None' in p for p in problems)
    assert any('numpy would move from the pinned 1.23.5 to 2.5.5' in p for p in problems)


def _index_reachable():
    try:
        socket.create_connection(('pypi.org', 443), timeout=3).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get('CHAINER_YOLO_DIST_NETWORK_TESTS') != '1',
                    reason='downloads ~1.9 GB: set CHAINER_YOLO_DIST_NETWORK_TESTS=1')
def test_documented_install_command_resolves_against_the_pinned_stack():
    if not _index_reachable():
        pytest.skip('package index not reachable')
    proc = check(run_python([os.path.join('tools', 'check_gpu_extras.py')], timeout=1500))
    assert '[gpu-cuda12] OK' in proc.stdout and '[gpu-cuda13] OK' in proc.stdout
