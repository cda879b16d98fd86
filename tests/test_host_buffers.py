"""No module hands device memory to mpi4py: a static scan of every module's calls.

The MPI this project installs is not CUDA-aware. ChainerMN's MPI paths for single arrays
(``AllreducePersistent`` -> ``_multi_node_mean``) pass a CuPy array's device pointer to MPI, so
the package must not use them (core/persistents.py replaces them); and mpi4py's buffer methods
(``Allreduce``, ``Bcast``, ``Isend``, ...) may only be called where the buffers are known to be
host NumPy arrays. At run time the tests' communicators also check every buffer
(core/host_buffers.py, on through tests/conftest.py).
"""
import ast
import importlib.util
import os

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       'chainer_yolo_dist')

#: ChainerMN entry points that give MPI a raw device pointer on a GPU rank.
FORBIDDEN = {'AllreducePersistent', '_multi_node_mean', '_multi_node_mean_nccl'}

#: Modules that may call mpi4py's buffer methods, and why their buffers are host memory.
ALLOWED = {
    # packs the persistents into one NumPy buffer (device arrays go to NCCL instead)
    'core/persistents.py',
    # the host-staged parallelism modes: parameters and gradients are packed into 1-d NumPy
    # buffers (core/parallelism/flat.py's pack_*/to_host: CuPy arrays are copied to the host first)
    'core/parallelism/flat.py', 'core/parallelism/local_sgd.py',
    'core/parallelism/stale_sync.py', 'core/parallelism/parameter_server.py',
}
# core/mpi.py's Ibarrier (and benchmarks' Barrier) take no buffer: they need no entry here.


def _mpi4py_buffer_methods():
    """Names of the methods of mpi4py's ``Comm``/``Intracomm`` with a ``*buf`` argument, read
    from mpi4py's own stub (MPI.pyi), without initialising MPI in this process."""
    spec = importlib.util.find_spec('mpi4py')
    path = os.path.join(spec.submodule_search_locations[0], 'MPI.pyi')
    tree = ast.parse(open(path, encoding='utf-8').read(), path)
    names = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name in ('Comm', 'Intracomm'):
            for item in node.body:
                if (isinstance(item, ast.FunctionDef) and item.name[:1].isupper()
                        and any(a.arg.endswith('buf') for a in item.args.args)):
                    names.add(item.name)
    return names


BUFFER_METHODS = _mpi4py_buffer_methods()


def _modules():
    for root, _, files in os.walk(PACKAGE):
        for name in sorted(files):
            if name.endswith('.py'):
                path = os.path.join(root, name)
                yield os.path.relpath(path, PACKAGE).replace(os.sep, '/'), path


def _uses(path):
    """``(forbidden names referenced, buffer methods called)`` of one module, with lines."""
    tree = ast.parse(open(path, encoding='utf-8').read(), path)
    forbidden, buffers = [], []
    for node in ast.walk(tree):
        name = (node.attr if isinstance(node, ast.Attribute)
                else node.id if isinstance(node, ast.Name) else None)
        if name in FORBIDDEN:
            forbidden.append('%s (line %d)' % (name, node.lineno))
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            forbidden += ['%s (line %d)' % (a.name, node.lineno) for a in node.names
                          if a.name.split('.')[-1] in FORBIDDEN]
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in BUFFER_METHODS):
            buffers.append('%s (line %d)' % (node.func.attr, node.lineno))
    return forbidden, buffers


def test_the_stub_lists_the_buffer_methods():
    assert {'Allreduce', 'Iallreduce', 'Bcast', 'Ibcast', 'Send', 'Isend', 'Recv', 'Irecv',
            'Sendrecv', 'Gather', 'Gatherv', 'Allgather', 'Allgatherv', 'Scatter',
            'Scatterv', 'Alltoall', 'Alltoallv', 'Reduce', 'Reduce_scatter'} <= BUFFER_METHODS
    assert not {'Barrier', 'Ibarrier', 'Split', 'Dup'} & BUFFER_METHODS


@pytest.mark.parametrize('module,path', sorted(_modules()))
def test_no_device_pointer_paths_and_buffer_calls_only_where_allowed(module, path):
    forbidden, buffers = _uses(path)
    assert not forbidden, '%s uses %s: ChainerMN hands MPI the device pointer there; use ' \
        'chainer_yolo_dist.core.persistents' % (module, ', '.join(forbidden))
    assert not buffers or module in ALLOWED, (
        '%s calls mpi4py buffer methods %s: pass host NumPy buffers and add it to ALLOWED '
        'with the reason' % (module, ', '.join(buffers)))


def test_every_allowed_module_exists_and_calls_a_buffer_method():
    modules = dict(_modules())
    for module in sorted(ALLOWED):
        assert module in modules, module
        assert _uses(modules[module])[1], '%s needs no entry in ALLOWED' % module
