"""Checks that each GPU extra of setup.py resolves with pip against the pinned stack.

Runs, for each extra, the install command docs/gpu.md documents, as a dry run, with the
interpreter that runs this script (the project's venv after `make setup`):

    python -m pip install --dry-run --no-build-isolation -c CONSTRAINTS -e '.[EXTRA]'

(`--no-build-isolation`: chainer's and chainercv's sdists import pkg_resources, which only the
venv's setuptools 70.3.0 still has; after `make setup` they are installed and not rebuilt.)
CONSTRAINTS is requirements/constraints.txt on Python 3.11 and constraints-py312.txt on 3.12.
Then checks what pip would install: the CuPy line, cuDNN 8.9 for CUDA 12 and none for CUDA 13,
NCCL, NVRTC and the runtime headers of the same minor, and that no pinned package (NumPy first)
would move. Prints one line per package and exits 1 on any failure.

Needs the package index (pip 23 downloads whole wheels to read their metadata: about 1.9 GB and
1-2 minutes for gpu-cuda12 on this project's machine; nothing is installed).
Usage: python tools/check_gpu_extras.py [EXTRA ...]   (default: gpu-cuda12 gpu-cuda13)
"""
import json
import os
import re
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What each extra must bring (name -> version regex) and must not bring.
EXPECTED = {
    'gpu-cuda12': {
        'must': {'cupy-cuda12x': r'13\.6\.', 'nvidia-cudnn-cu12': r'8\.9\.',
                 'nvidia-nccl-cu12': r'2\.', 'nvidia-cuda-nvrtc-cu12': r'12\.9\.',
                 'nvidia-cuda-runtime-cu12': r'12\.9\.', 'nvidia-cublas-cu12': r'12\.'},
        'must_not': ['cupy-cuda13x', 'nvidia-cudnn-cu13'],
    },
    'gpu-cuda13': {
        'must': {'cupy-cuda13x': r'13\.6\.', 'nvidia-nccl-cu13': r'2\.',
                 'nvidia-cuda-nvrtc': r'13\.0\.', 'nvidia-cuda-runtime': r'13\.0\.'},
        'must_not': ['cupy-cuda12x', 'nvidia-cudnn-cu12', 'nvidia-cudnn-cu13'],
    },
}
EXPECTED['gpu'] = EXPECTED['gpu-cuda12']  # deprecated alias


def constraints_file():
    name = 'constraints.txt' if sys.version_info[:2] == (3, 11) else 'constraints-py312.txt'
    return os.path.join(REPO, 'requirements', name)


def pins(path):
    """{normalised name: version} of a constraints file."""
    out = {}
    for line in open(path):
        line = line.split('#')[0].strip()
        if '==' in line:
            name, version = line.split('==')
            out[norm(name)] = version.strip()
    return out


def norm(name):
    return re.sub(r'[-_.]+', '-', name).lower()


def resolve(extra, constraints):
    """{name: version} pip would install for ``-e .[extra]``; raises on a pip failure."""
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, 'report.json')
        cmd = [sys.executable, '-m', 'pip', 'install', '--dry-run', '--no-build-isolation',
               '--disable-pip-version-check', '--quiet', '--report', report,
               '-c', constraints, '-e', '.[%s]' % extra]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1200)
        if proc.returncode != 0:
            raise RuntimeError('%s\n%s' % (' '.join(cmd), proc.stderr[-3000:]))
        with open(report) as f:
            data = json.load(f)
    return {norm(i['metadata']['name']): i['metadata']['version'] for i in data['install']}


def check(extra, installed, pinned):
    """List of problems (empty when the extra resolves as setup.py says)."""
    problems = []
    want = EXPECTED[extra]
    for name, pattern in want['must'].items():
        version = installed.get(name)
        if version is None or not re.match(pattern, version):
            problems.append('%s: %s, expected %s' % (name, version, pattern))
    for name in want['must_not']:
        if name in installed:
            problems.append('%s %s must not be installed' % (name, installed[name]))
    for name, version in installed.items():
        if name in pinned and version != pinned[name]:
            problems.append('%s would move from the pinned %s to %s' % (name, pinned[name],
                                                                        version))
    return problems


def main(extras):
    constraints = constraints_file()
    pinned = pins(constraints)
    print('Python %d.%d, constraints %s (numpy %s)' % (
        sys.version_info[0], sys.version_info[1], os.path.relpath(constraints, REPO),
        pinned.get('numpy')))
    failed = False
    for extra in extras:
        installed = resolve(extra, constraints)
        installed.pop('chainer-yolo-dist', None)
        problems = check(extra, installed, pinned)
        failed = failed or bool(problems)
        print('[%s] %s' % (extra, 'OK' if not problems else 'FAILED'))
        for name in sorted(installed):
            print('    %s==%s' % (name, installed[name]))
        for p in problems:
            print('    PROBLEM: ' + p)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:] or ['gpu-cuda12', 'gpu-cuda13']))
