#!/usr/bin/env python
"""Check a GPU node: the CuPy / CUDA / cuDNN / NCCL stack, then YOLOv2 training through
``pure_nccl`` with FP32 and FP16 AllReduce (images/s, whether the loss falls).

    python scripts/check_gpu.py                  # one GPU
    python scripts/check_gpu.py --processes 4    # one process per GPU of a 4-GPU node

Exits 0 when everything works, 1 otherwise, saying what is broken (docs/gpu.md).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chainer_yolo_dist.benchmarks import gpu_check  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--processes', type=int, default=1, help='MPI processes (one per GPU)')
    p.add_argument('--iterations', type=int, default=40)
    p.add_argument('--batchsize', type=int, default=8, help='images per process')
    p.add_argument('--out', help='also write the report as JSON here')
    args = p.parse_args(argv)
    facts, problems = gpu_check.stack_report()
    print('stack: ' + json.dumps(facts, sort_keys=True))
    report = {'stack': facts, 'problems': problems}
    if not problems:
        runs = gpu_check.training_check(args.processes, args.iterations, args.batchsize)
        report['training'] = runs
        for dtype, run in sorted(runs.items()):
            if run['exit_status'] != 0:
                problems.append('%s AllReduce run failed: %s' % (dtype, ' | '.join(run['error'])))
            elif not run['loss_fell']:
                problems.append('%s AllReduce run: the loss did not fall (%.3g -> %.3g)'
                                % (dtype, run['first_loss'], run['last_loss']))
            else:
                print('%s AllReduce: %.1f images/s, loss %.3g -> %.3g'
                      % (dtype, run['images_per_second'], run['first_loss'],
                         run['last_loss']))
    if args.out:
        from chainer_yolo_dist.core.atomic import write_json
        write_json(args.out, report)
    for problem in problems:
        print('BROKEN: ' + problem)
    print('GPU check: %s' % ('broken' if problems else 'ok'))
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
