"""Shared test helpers: run scripts and MPI jobs for real, always with a timeout."""
import os
import subprocess
import sys
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
MPIEXEC = os.path.join(BIN, 'mpiexec')


def _env(extra=None):
    env = dict(os.environ)
    # A rank that raises must end the job instead of hanging the others.
    env['CHAINERMN_FORCE_ABORT_ON_EXCEPTION'] = '1'
    env['OMP_NUM_THREADS'] = '1'
    env['PYTHONUNBUFFERED'] = '1'
    env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
    env['MPLBACKEND'] = 'Agg'
    # Every ChainerMN communicator refuses non-host buffers to mpi4py (core/host_buffers.py):
    # device memory handed to this non-CUDA-aware MPI fails on the CPU too, not only on a GPU.
    env['CHAINER_YOLO_DIST_CHECK_MPI_BUFFERS'] = '1'
    # Image checks are remembered per data directory: keep the tests' out of ~/.cache.
    env.setdefault('CHAINER_YOLO_DIST_CACHE', os.path.join(tempfile.gettempdir(),
                                                           'chainer_yolo_dist_test_cache'))
    env.update(extra or {})
    return env


def run_python(args, timeout, env=None, cwd=REPO):
    """Runs ``python ARGS`` in one process; returns the CompletedProcess."""
    return subprocess.run([sys.executable] + list(args), cwd=cwd, env=_env(env),
                          capture_output=True, text=True, timeout=timeout)


def run_mpi(n, args, timeout, env=None, cwd=REPO):
    """Runs ``mpiexec -n N python ARGS`` with the venv's own MPI; returns CompletedProcess."""
    cmd = [MPIEXEC, '-n', str(n), sys.executable] + list(args)
    return subprocess.run(cmd, cwd=cwd, env=_env(env), capture_output=True, text=True,
                          timeout=timeout)


def assert_continued_exactly(whole, continued):
    """The ``model.npz`` of a run stopped and continued equals that of the run never stopped:
    the weights bitwise; the batch-norm statistics within float32 rounding (they are averaged
    over the ranks before every snapshot, and the stopped run wrote one more)."""
    import numpy as np
    with np.load(str(whole)) as a, np.load(str(continued)) as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            if key.endswith(('/avg_mean', '/avg_var')):
                np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-7, err_msg=key)
            else:
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def check(proc):
    """Asserts a CompletedProcess succeeded, showing its output if not."""
    assert proc.returncode == 0, (
        'exit %d\n--- stdout\n%s\n--- stderr\n%s' % (proc.returncode, proc.stdout[-5000:],
                                                     proc.stderr[-5000:]))
    return proc


@pytest.fixture
def repo():
    return REPO


@pytest.fixture(scope='session')
def extractor(tmp_path_factory):
    """A small trained default FID extractor, made once for the session's CycleGAN runs (the
    first use would train it inside the run, about 2 minutes)."""
    path = str(tmp_path_factory.mktemp('fid') / 'extractor.npz')
    check(run_python(['-c', 'from chainer_yolo_dist.cyclegan import features; '
                      'features.train_default_extractor(%r, n_images=64, epochs=1, n_test=16)'
                      % path], timeout=120))
    return path


def simulate_scaling(capsys, *args):
    """``scripts/simulate_scaling.py ARGS`` run in-process (its ``main``); returns stdout."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'simulate_scaling', os.path.join(REPO, 'scripts', 'simulate_scaling.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(list(args))
    return capsys.readouterr().out


#: The training script of each system (``chainer_yolo_dist.<system>.recipe``).
SCRIPTS = {'detection': 'train_yolo', 'classification': 'train_darknet',
           'cyclegan': 'train_cyclegan', 'slowfast': 'train_slowfast'}


def load_script(name):
    """``scripts/NAME.py`` as a module, its ``main`` not run (for its ``parse_args``)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(REPO, 'scripts', name + '.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def resolve_script(system, argv=(), world_size=2, node=None):
    """The :class:`~chainer_yolo_dist.core.resolve.Resolution` of ``<script> ARGV`` under
    ``mpiexec -n WORLD_SIZE`` on ``node`` (a CPU node if None), in this process: what the
    script checks before MPI, without starting it. A user's mistake raises ValueError."""
    import importlib
    from chainer_yolo_dist.core import resolve
    recipe = importlib.import_module('chainer_yolo_dist.%s.recipe' % system)
    args = load_script(SCRIPTS[system]).parse_args(list(argv))
    return resolve.resolve(recipe.SYSTEM, dict(vars(args), out_parent='runs'), world_size,
                           resolve.CPU_NODE if node is None else node)
