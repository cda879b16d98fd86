"""SlowFast frame mAP gathered across ranks equals one process's (run under mpiexec).

Usage: slowfast_gathered_eval.py OUT.json
The narrow SlowFast detector (seeded, so the same in every process; untrained, its scores are
still a deterministic function of each clip) on 7 synthetic test clips in batches of 2, so
the ranks get unequal shares. Rank 0 writes the distributed result and its own
single-process result.
"""
import json
import sys

import chainermn
import numpy as np

from chainer_yolo_dist.slowfast.data import ActionData
from chainer_yolo_dist.slowfast.evaluation import evaluate_actions
from chainer_yolo_dist.slowfast.models import build_detector
from chainer_yolo_dist.slowfast.synthetic import SyntheticActionClips


def main(out):
    comm = chainermn.create_communicator('naive')
    np.random.seed(0)
    detector = build_detector('slowfast_narrow', 7)
    clips = SyntheticActionClips(7, 'test', seed=4, n_frames=8, size=32)
    test = ActionData(clips, range(len(clips)), range(1, 8))
    distributed = evaluate_actions(detector, test, comm, batchsize=2)
    if comm.rank == 0:
        single = evaluate_actions(detector, test, None, batchsize=2)
        with open(out, 'w') as f:
            json.dump({'distributed': distributed, 'single': single}, f)


if __name__ == '__main__':
    main(sys.argv[1])
