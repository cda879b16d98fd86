"""The layering of docs/architecture.md, checked on every module's imports."""
import ast
import os

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       'chainer_yolo_dist')
# What each top-level part may import from the package (besides itself).
ALLOWED = {
    'core': set(),
    'datasets': {'core'},
    'classification': {'core', 'datasets'},
    'detection': {'core', 'datasets', 'classification'},
    'slowfast': {'core', 'datasets'},
    'cyclegan': {'core', 'datasets', 'classification', 'detection'},
    'benchmarks': None,  # measurement code: anything but analysis
    'analysis': None,  # anything
}


def _modules():
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(root, name)
                part = os.path.relpath(path, PACKAGE).split(os.sep)[0]
                yield part, path


def _package_imports(path):
    tree = ast.parse(open(path, encoding='utf-8').read(), path)
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + ['%s.%s' % (node.module, a.name) for a in node.names]
        for name in names:
            parts = name.split('.')
            if parts[0] == 'chainer_yolo_dist' and len(parts) > 1:
                yield parts[1]


@pytest.mark.parametrize('part,path', sorted(_modules()))
def test_imports_follow_the_layers(part, path):
    allowed = ALLOWED.get(part, set() if part.endswith('.py') else None)
    if allowed is None:
        return
    used = {p for p in _package_imports(path) if p != part and not p.endswith('__')}
    # Names imported from a package's __init__ (e.g. ``from chainer_yolo_dist.core import
    # mpi``) appear as 'core'; top-level modules as their own name.
    bad = {p for p in used if p not in allowed and p in ALLOWED}
    assert not bad, '%s (%s) imports %s' % (os.path.relpath(path, PACKAGE), part, sorted(bad))


def test_nothing_imports_analysis():
    for part, path in _modules():
        if part != 'analysis':
            assert 'analysis' not in set(_package_imports(path)), path
