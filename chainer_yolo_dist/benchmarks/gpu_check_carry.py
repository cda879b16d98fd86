"""What the lent GPU machine lacks, copied from ``.venv312`` and packed into one archive the
``run`` tool carries there (``scripts/check_gpu.py --make-carry``; docs/gpu.md).

The lent machine has Python 3.12, NumPy 2.5, CuPy 14, OpenCV, Open MPI and mpi4py; nothing
can be installed there, and the tool carries at most 8 ignored paths, 64 MiB with the working
tree. The two folders below come to about 84 MB; packed (gzip) about 25 MB, which the device
command unpacks with Python's own ``tarfile`` before the check starts:

- ``carry/base`` (about 9 MB): Chainer 7.8.1 (with ChainerX's Python stub, which Chainer
  imports), ChainerMN, ChainerCV 0.13.1 (its NMS helper compiled for CPython 3.12 by
  ``make setup-py312``), what they import (filelock, six, typing_extensions), setuptools 70.3
  for ``pkg_resources`` (Chainer's version check and ChainerCV's import use it; setuptools 82
  removed it) and ``distutils`` (gone from Python 3.12; ChainerCV imports ``distutils.util``),
  the distributions' metadata (ChainerCV asks ``pkg_resources`` for its own version), and the
  project's ``.pth`` files. It goes first on ``PYTHONPATH``.
- ``carry/plots`` (about 75 MB): Pillow and matplotlib with their dependencies (fontTools
  included: matplotlib 3.11 imports it with ``pyplot``), for a machine that has neither
  (CycleGAN's data reader and sample grids need Pillow; its ``fid.png`` and every
  ``loss.png`` need matplotlib). It is appended after the interpreter's own site-packages, so
  a machine that has them uses its own.

Never carried: NumPy, OpenCV, mpi4py (the machine's own, built against its Open MPI; the
venv's is linked to MPICH) and CuPy. ``.pth`` files are read only in site directories, not
in ``PYTHONPATH`` entries, hence the ``sitecustomize.py`` written into ``base``: Python
imports it at start-up from ``PYTHONPATH``; it makes ``base`` a site directory (its ``.pth``
files run: the ``distutils`` shim, NumPy 2 compatibility), appends ``plots``, then runs the
``sitecustomize`` it shadows, if the interpreter has one. Byte code is left out: the machine
compiles it (the first process that imports a module caches it there).
"""
import glob
import os
import shutil
import tarfile

#: Entries of site-packages copied into ``base`` and into ``plots``.
#: Glob patterns: the distributions' metadata come along (``pkg_resources.get_distribution``
#: reads them: ChainerCV asks for its own version at import).
BASE = ('chainer', 'chainerx', 'chainermn', 'chainercv', 'filelock', 'six.py',
        'typing_extensions.py', 'pkg_resources', 'setuptools', '_distutils_hack',
        'distutils-precedence.pth', 'zz_chainer_yolo_dist_compat.pth',
        'chainer-*.dist-info', 'chainercv-*.dist-info', 'filelock-*.dist-info',
        'six-*.dist-info', 'typing_extensions-*.dist-info', 'setuptools-*.dist-info')
PLOTS = ('PIL', 'pillow.libs', 'matplotlib', 'mpl_toolkits', 'kiwisolver', 'contourpy',
         'cycler', 'dateutil', 'pyparsing', 'packaging', 'fontTools', 'pillow-*.dist-info',
         'matplotlib-*.dist-info')
#: Not needed at run time: byte code (rebuilt there), test suites, type stubs, sample data.
IGNORE = shutil.ignore_patterns('__pycache__', 'tests', '*.pyi', 'sample_data')
#: The run tool's limit on what it copies (the working tree and the carried paths).
LIMIT_BYTES = 64 * 2 ** 20
#: The archive's name beside the folder it packs (``.venv312/carry`` -> ``carry.tar.gz``).
ARCHIVE_SUFFIX = '.tar.gz'

SITECUSTOMIZE = '''"""Written by scripts/check_gpu.py --make-carry (benchmarks/gpu_check_carry.py).

With this folder first on PYTHONPATH: run its .pth files as a site directory's, append the
sibling folder 'plots' after the interpreter's own site-packages (used only for what the
interpreter lacks), then run the sitecustomize this file shadows, if any. Python 3.12 warns
(SyntaxWarning) about invalid escapes in ChainerCV 0.13.1's docstrings each time it compiles
them, in every process until its byte code is cached: those warnings are silenced.
"""
import os
import runpy
import site
import sys
import warnings

warnings.filterwarnings('ignore', category=SyntaxWarning)
_here = os.path.dirname(os.path.abspath(__file__))
site.addsitedir(_here)
_plots = os.path.join(os.path.dirname(_here), 'plots')
if os.path.isdir(_plots):
    site.addsitedir(_plots)
_after = False
for _entry in list(sys.path):
    if os.path.abspath(_entry or os.curdir) == _here:
        _after = True
    elif _after and os.path.isfile(os.path.join(_entry, 'sitecustomize.py')):
        runpy.run_path(os.path.join(_entry, 'sitecustomize.py'), run_name='sitecustomize')
        break
'''


def folder_bytes(path):
    """Bytes of the files under ``path`` (a file's own size for a file)."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, f))
               for root, _, files in os.walk(path) for f in files)


def copy_entries(source, dest, patterns):
    """Copies what each of ``patterns`` (glob) names in ``source`` into a fresh ``dest``;
    returns the patterns that matched nothing."""
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    missing = []
    for pattern in patterns:
        found = sorted(glob.glob(os.path.join(source, pattern)))
        if not found:
            missing.append(pattern)
        for src in found:
            name = os.path.basename(src)
            if os.path.isdir(src):
                shutil.copytree(src, os.path.join(dest, name), ignore=IGNORE)
            else:
                shutil.copy2(src, os.path.join(dest, name))
    return missing


def make_carry(source, dest):
    """Builds ``dest/base`` and ``dest/plots`` from the site-packages ``source``, and packs
    both into ``dest + '.tar.gz'`` (members ``<basename of dest>/base/...``).

    Returns ``{'base': bytes, 'plots': bytes, 'archive': path, 'archive_bytes': bytes,
    'missing': [...]}``; raises ValueError when ``source`` holds no Chainer.
    """
    if not os.path.isdir(os.path.join(source, 'chainer')):
        raise ValueError('%s holds no Chainer: build the Python 3.12 venv first (make '
                         'setup-py312)' % source)
    dest = os.path.normpath(dest)
    missing = copy_entries(source, os.path.join(dest, 'base'), BASE)
    missing += copy_entries(source, os.path.join(dest, 'plots'), PLOTS)
    with open(os.path.join(dest, 'base', 'sitecustomize.py'), 'w') as f:
        f.write(SITECUSTOMIZE)
    nms = os.path.join(dest, 'base', 'chainercv', 'utils', 'bbox')
    if not any(n.startswith('_nms_gpu_post.cpython-312') for n in os.listdir(nms)):
        missing.append('chainercv/utils/bbox/_nms_gpu_post.cpython-312-*.so')
    archive = dest + ARCHIVE_SUFFIX
    from chainer_yolo_dist.core.atomic import atomic_path
    with atomic_path(archive) as tmp:
        with tarfile.open(tmp, 'w:gz') as tar:
            tar.add(dest, arcname=os.path.basename(dest))
    return {'base': folder_bytes(os.path.join(dest, 'base')),
            'plots': folder_bytes(os.path.join(dest, 'plots')), 'archive': archive,
            'archive_bytes': os.path.getsize(archive), 'missing': missing}


def run_command(dest):
    """The device command line of the check with ``dest + '.tar.gz'`` carried: unpack it
    beside where it lies, then the check (docs/gpu.md)."""
    dest = os.path.normpath(dest)
    return ('python3 -m tarfile --filter data -e %s%s %s && OMP_NUM_THREADS=4 '
            'PYTHONPATH=$PWD/%s/base:$PWD python3 scripts/check_gpu.py --out $OUT'
            % (dest, ARCHIVE_SUFFIX, os.path.dirname(dest) or '.', dest))


def main(source, dest):
    """``scripts/check_gpu.py --make-carry``: builds, reports sizes and the command line."""
    try:
        sizes = make_carry(source, dest)
    except ValueError as e:
        print('error: %s' % e)
        return 2
    print('%s/base   %5.1f MB  (Chainer, ChainerMN, ChainerCV, setuptools 70.3, ...)'
          % (dest, sizes['base'] / 1e6))
    print('%s/plots  %5.1f MB  (Pillow, matplotlib and their dependencies)'
          % (dest, sizes['plots'] / 1e6))
    print('%s  %5.1f MB  (both, packed: what is carried; limit %.1f MB with the '
          'working tree)' % (sizes['archive'], sizes['archive_bytes'] / 1e6, LIMIT_BYTES / 1e6))
    print('carry: ["%s"]' % sizes['archive'])
    print('run:   ' + run_command(dest))
    if sizes['missing']:
        print('MISSING from %s: %s' % (source, ', '.join(sizes['missing'])))
        return 1
    return 0
