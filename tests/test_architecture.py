"""The layering of docs/architecture.md, checked on every module's imports."""
import ast
import glob
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


def _module_name(path):
    """``chainer_yolo_dist.a.b`` for ``.../chainer_yolo_dist/a/b.py`` (a package's
    ``__init__.py`` is the package)."""
    parts = os.path.relpath(path, os.path.dirname(PACKAGE))[:-len('.py')].split(os.sep)
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _import_graph():
    """``{module: set of package modules it imports}``, every ``import`` statement counted,
    at module level or inside a function alike (a function-level import only postpones a
    cycle). ``from P import name`` depends on the module ``P.name`` where there is one (a
    submodule), else on ``P`` itself; a submodule's implicit import of its parent packages is
    not an edge (every ``__init__.py`` that re-exports its submodules would be a cycle)."""
    paths = {_module_name(path): path for _, path in _modules()}
    paths[_module_name(os.path.join(PACKAGE, '__init__.py'))] = os.path.join(PACKAGE,
                                                                             '__init__.py')

    def known(name):
        # The longest prefix of a dotted name that is a module of the package.
        while name and name not in paths:
            name = name.rpartition('.')[0]
        return name

    graph = {}
    for module, path in paths.items():
        package = module if path.endswith('__init__.py') else module.rpartition('.')[0]
        tree = ast.parse(open(path, encoding='utf-8').read(), path)
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ''
                if node.level:  # relative: resolved against the importing module's package
                    anchor = package.split('.')[:len(package.split('.')) - node.level + 1]
                    base = '.'.join(anchor + ([base] if base else []))
                names = [base + '.' + a.name if base + '.' + a.name in paths else base
                         for a in node.names]
            else:
                continue
            deps.update(n for n in map(known, names) if n and n != module)
        graph[module] = deps
    return graph


def _find_cycle(graph):
    """One import cycle as ``[m0, m1, ..., m0]``, or None."""
    state = {}  # module -> 'open' while on the depth-first path, 'done' once explored

    def visit(module, trail):
        state[module] = 'open'
        trail.append(module)
        for dep in sorted(graph[module]):
            if state.get(dep) == 'open':
                return trail[trail.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep, trail)
                if found:
                    return found
        trail.pop()
        state[module] = 'done'
        return None

    for module in sorted(graph):
        if module not in state:
            found = visit(module, [])
            if found:
                return found
    return None


def test_the_import_graph_is_read():
    graph = _import_graph()
    # A module-level, a function-level and a ``from package import submodule`` import.
    assert 'chainer_yolo_dist.classification.darknet' in graph[
        'chainer_yolo_dist.classification.models']
    assert 'chainer_yolo_dist.analysis.study_report' in graph['chainer_yolo_dist.analysis.study']
    assert 'chainer_yolo_dist.datasets.validation' in graph['chainer_yolo_dist.datasets.voc']
    assert _find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
    assert _find_cycle({'a': {'b'}, 'b': set()}) is None


def test_no_import_cycle():
    """No module imports itself through others (issue 22): a cycle makes the import order
    matter, and registration by side effect hides in one."""
    cycle = _find_cycle(_import_graph())
    assert cycle is None, 'import cycle: ' + ' -> '.join(cycle)


def _listed_modules():
    """``{top-level folder: {file names}}`` named in docs/architecture.md's folder tree."""
    text = open(os.path.join(REPO, 'docs', 'architecture.md')).read()
    tree = text.split('```')[1]
    listed, folder = {}, ''
    for line in tree.splitlines():
        top = re.match(r'^  (\w+)/', line)
        if top:
            folder = top.group(1)
        elif re.match(r'^\S', line):
            folder = ''  # chainer_yolo_dist/ itself, or scripts/
        listed.setdefault(folder, set()).update(re.findall(r'\b(\w+\.py)\b', line))
    return listed


def test_docs_architecture_lists_every_module():
    """A newcomer finds every module from docs/architecture.md's folder tree: each file of
    the package is named under its top-level folder (``__init__.py`` of a plain package
    excepted)."""
    listed = _listed_modules()
    missing = []
    for path in sorted(glob.glob(os.path.join(PACKAGE, '**', '*.py'), recursive=True)):
        rel = os.path.relpath(path, PACKAGE).split(os.sep)
        folder = rel[0] if len(rel) > 1 else ''
        name = rel[-1]
        if name == '__init__.py' and os.path.getsize(path) < 2000:
            continue  # a package marker, not a module with an idea of its own
        if name not in listed.get(folder, ()):
            missing.append('/'.join(rel))
    assert not missing, 'not in docs/architecture.md: %s' % ', '.join(missing)


def test_docs_architecture_names_no_module_that_does_not_exist():
    for folder, names in _listed_modules().items():
        where = os.path.join(PACKAGE, folder)
        present = {os.path.basename(p) for p in glob.glob(
            os.path.join(where, '**', '*.py'), recursive=True)}
        if folder in ('', 'scripts'):
            continue  # the tree's first and last lines name folders, not modules
        assert names <= present, '%s/: %s' % (folder, ', '.join(sorted(names - present)))
