#!/usr/bin/env python
"""One GPU check of every system: a PASS / FAIL / SKIP line per stage, each stage a process
killed at its time budget (docs/gpu.md, "The GPU check").

    python scripts/check_gpu.py --dry-run            # the stages and their budgets; no GPU
    python scripts/check_gpu.py --out results/bench/gpu_check-H100   # run it on a GPU node
    python scripts/check_gpu.py --only parity,detection --out OUT    # a few stages again
    python scripts/check_gpu.py --make-carry         # the site-packages for the lent machine

Exits 0 when no stage failed, 1 when one did, 2 when this machine has no CUDA GPU (one line
says why; nothing is run). With --out, OUT/gpu_check.json holds every stage's status, seconds,
budget and details (rewritten after each stage), and OUT/gpu_check_logs/ each stage's last
lines of output.
"""
import argparse
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chainer_yolo_dist.benchmarks import gpu_check  # noqa: E402
from chainer_yolo_dist.core import cli  # noqa: E402


def _names(text):
    return [n for n in text.split(',') if n]


def parse_args(argv=None):
    p = cli.Parser(description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--dry-run', action='store_true',
                   help='list the stages with their budgets and the total, run nothing')
    p.add_argument('--out', help='directory for gpu_check.json and the stages\' log tails')
    p.add_argument('--work', help='the stages\' working directory (default: a temporary one, '
                   'removed at the end unless --keep-work)')
    p.add_argument('--keep-work', action='store_true')
    p.add_argument('--gpus', type=int, help='GPUs to use (default: all visible; 1 for '
                   '--dry-run); the multi-GPU stages need 2 or more')
    p.add_argument('--only', type=_names, default=[], help='comma-separated stages to run')
    p.add_argument('--skip', type=_names, default=[], help='comma-separated stages to leave out')
    p.add_argument('--mpiexec', help='launcher command line up to -n (default: the mpiexec '
                   'beside this Python, else on PATH; Open MPI gets --allow-run-as-root '
                   '--oversubscribe)')
    p.add_argument('--budget-scale', type=float, default=1.0,
                   help='multiply every stage budget (a slower machine)')
    p.add_argument('--cpu-smoke', action='store_true',
                   help='run the stages on the CPU at their smallest sizes (budgets x 10 unless '
                   '--budget-scale): tests the check itself, says nothing of a GPU')
    p.add_argument('--make-carry', nargs='?', const='.venv312/carry', metavar='DIR',
                   help='copy what the lent machine lacks from .venv312 into DIR (default '
                   '%(const)s) and print the carry list and run command (docs/gpu.md)')
    p.add_argument('--source', default='.venv312/lib/python3.12/site-packages',
                   help='site-packages --make-carry copies from (default %(default)s; '
                   'relative paths are the repository\'s)')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.make_carry:
        from chainer_yolo_dist.benchmarks import gpu_check_carry
        os.chdir(gpu_check.REPO)  # the default paths, and the printed ones, are the repository's
        return gpu_check_carry.main(args.source, args.make_carry)
    try:
        stages = gpu_check.select(gpu_check.STAGES, args.only, args.skip)
    except ValueError as e:
        print('error: %s' % e, file=sys.stderr)
        return 2
    scale = args.budget_scale if args.budget_scale != 1.0 or not args.cpu_smoke else 10.0
    if args.dry_run:
        gpus = args.gpus if args.gpus is not None else 1
        for line in gpu_check.describe(stages, gpus, scale):
            print(line)
        return 0
    if args.cpu_smoke:
        gpus = args.gpus if args.gpus is not None else 1
    else:
        visible, why = gpu_check.probe_cuda()
        if not visible:
            print('GPU check: no CUDA GPU here (%s); nothing run (--dry-run lists the stages)'
                  % why)
            return 2
        gpus = visible if args.gpus is None else args.gpus
    work = args.work or tempfile.mkdtemp(prefix='check_gpu_')
    print('GPU check: %d stage(s), %d GPU(s), budget %.0f s; work in %s'
          % (len(stages), gpus, gpu_check.total_budget(stages, gpus) * scale, work), flush=True)
    records = gpu_check.run_stages(stages, work, gpus, out=args.out, cpu_smoke=args.cpu_smoke,
                                   scale=scale, mpiexec=args.mpiexec,
                                   log=lambda line: print(line, flush=True))
    counts = {s: sum(r['status'] == s for r in records) for s in ('PASS', 'FAIL', 'SKIP')}
    print('GPU check: %s: %d PASS, %d FAIL, %d SKIP in %.0f s%s'
          % ('FAILED' if counts['FAIL'] else 'ok', counts['PASS'], counts['FAIL'],
             counts['SKIP'], sum(r['seconds'] for r in records),
             '; %s' % os.path.join(args.out, gpu_check.SUMMARY_NAME) if args.out else ''))
    if not args.work and not args.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return gpu_check.exit_status(records)


if __name__ == '__main__':
    sys.exit(main())
