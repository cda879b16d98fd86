#!/usr/bin/env python
"""Evaluate a trained YOLO on a detection dataset: VOC mAP (VOC2007 11-point metric).

    python scripts/eval_yolo.py runs/quick_yolo/model.npz   # a run of README's quick commands
    python scripts/eval_yolo.py model.npz --model yolov3_small --dataset synthetic --n-class 4
    mpiexec -n 4 python scripts/eval_yolo.py RUN/model.npz --dataset voc0712 --data-dir VOCdevkit

SNAPSHOT is a ``model.npz`` written by train_yolo.py (or a trainer snapshot
``snapshot_iter_N``). Unless given, the model, classes, dataset and input size are read from
the ``config.json`` beside it. Prints the mAP and per-class AP, and paper 002 Table 2's
columns: TP, FP, FN, precision, recall and F1 of the detections scoring at least
``--score-thresh`` (0.25, a reading: docs/cyclegan.md) matched at IoU 0.5, with the mAP@0.5;
``--out`` also writes them as JSON.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chainer_yolo_dist.core import cli  # noqa: E402


def parse_args(argv=None):
    p = cli.Parser(description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('snapshot')
    p.add_argument('--config', help='config.json of the run (default: beside SNAPSHOT)')
    p.add_argument('--model', help='yolov2, yolov3, yolov2_tiny or yolov3_small')
    p.add_argument('--dataset', help='synthetic, voc0712 or vocformat')
    p.add_argument('--n-class', type=cli.COUNT, help='synthetic classes')
    p.add_argument('--data-dir')
    p.add_argument('--class-names', nargs='+')
    p.add_argument('--test-split')
    p.add_argument('--insize', type=cli.COUNT, help='evaluation input size (multiple of 32)')
    p.add_argument('--batchsize', type=cli.COUNT, default=8)
    p.add_argument('--score-thresh', type=cli.Bounded(float, 0, 1), default=None,
                   help='score threshold of the TP/FP/FN counts (default 0.25, the reading '
                   'of paper 002 Table 2: AlexeyAB darknet\'s detector map)')
    p.add_argument('--communicator', choices=['pure_nccl', 'naive'], default=None,
                   help='pure_nccl (the default where a GPU is visible: each rank evaluates '
                   'on its own GPU) or naive (the CPU)')
    p.add_argument('--out', help='write the result as JSON here')
    p.add_argument('--debug', action='store_true', help='show the traceback of an error')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from chainer_yolo_dist.core import mpi
    mpi.abort_on_exception()
    return mpi.main(lambda: evaluate(args), debug=args.debug)


def evaluate(args):
    from chainer_yolo_dist.core import mpi
    from chainer_yolo_dist.detection.evaluation import (detector_prefix, evaluate_saved_model,
                                                        saved_run_request)
    try:
        detector_prefix(args.snapshot)  # what the file is comes before what it needs
        request, model, insize = saved_run_request(vars(args))
    except (ValueError, OSError) as e:
        raise mpi.SetupError(str(e)) from e
    from chainer_yolo_dist.core import devices
    gpus = devices.gpu_count()
    name = args.communicator or ('pure_nccl' if gpus else 'naive')
    try:
        devices.check_communicator(name, args.communicator is not None, gpus)
    except ValueError as e:
        raise mpi.SetupError(str(e)) from e
    comm = mpi.create_communicator(name)
    try:  # one GPU per rank, as in training; naive evaluates on the CPU
        device = devices.select_device(comm.mpi_comm, True, gpus) if name != 'naive' else -1
    except ValueError as e:
        raise mpi.SetupError(str(e)) from e
    from chainer_yolo_dist.core.run import on_rank0
    from chainer_yolo_dist.detection.evaluation import detector_prefix
    on_rank0(comm, lambda: detector_prefix(args.snapshot))  # a classifier is named as one
    from chainer_yolo_dist.detection.counts import DEFAULT_SCORE_THRESH
    thresh = DEFAULT_SCORE_THRESH if args.score_thresh is None else args.score_thresh
    result = evaluate_saved_model(args.snapshot, request, model, comm, insize, args.batchsize,
                                  thresh, device)
    if result is not None:
        print('%s on %s: %d test images at %d px' % (result['model_file'], result['dataset'],
                                                     result['n_images'], result['insize']))
        print('mAP %.4f' % result['map'])
        for name, ap in result['ap'].items():
            print('  %-16s %s' % (name, 'n/a (no ground truth)' if ap is None
                                  else '%.4f' % ap))
        print(table2_header(result['counts']['score_thresh']))
        print(table2_row(result))
        if args.out:
            from chainer_yolo_dist.core.atomic import write_json
            write_json(args.out, result)
    return 0


def table2_header(score_thresh):
    """Paper 002 Table 2's columns (counts at ``score_thresh``, IoU 0.5)."""
    return ('Table 2 columns (score >= %g, IoU 0.5):\n%6s %6s %6s %9s %6s %5s %8s'
            % (score_thresh, 'TP', 'FP', 'FN', 'precision', 'recall', 'F1', 'mAP@0.5'))


def table2_row(result):
    """One evaluation result in :func:`table2_header`'s columns (mAP in percent)."""
    c = result['counts']
    return ('%6d %6d %6d %9.2f %6.2f %5.2f %7.2f%%'
            % (c['tp'], c['fp'], c['fn'], c['precision'], c['recall'], c['f1'],
               100 * result['map']))


if __name__ == '__main__':
    sys.exit(main())
