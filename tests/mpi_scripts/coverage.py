"""Each epoch, every training sample is on exactly one rank (run under mpiexec).

Usage: coverage.py N_SAMPLES BATCH EPOCHS OUT.json
Uses the training pipeline's own pieces: scatter_indices, IndexedSubset,
EpochSampledDataset, make_train_iterator (with worker processes). Rank 0 writes, per epoch,
every base index seen on any rank.
"""
import json
import sys

import chainermn

from chainer_yolo_dist import distributed, sampling
from chainer_yolo_dist.training import IndexedSubset, make_train_iterator


def main(n, batch, epochs, out):
    distributed.start_forkserver()
    comm = chainermn.create_communicator('naive')
    indices, n_padding = distributed.scatter_indices(n, comm, seed=5)
    shard = sampling.EpochSampledDataset(IndexedSubset(list(range(n)), indices),
                                         transform=None, seed=5)
    it = make_train_iterator(shard, batch, seed=5, n_processes=1)
    assert len(shard.base) % batch == 0, 'choose a batch that divides the share'
    seen = []
    for epoch in range(epochs):
        seen.append([])
        for _ in range(len(shard.base) // batch):
            seen[-1].extend(int(v) for v in next(it))
        assert it.epoch == epoch + 1 and it.is_new_epoch
    it.finalize()
    gathered = comm.gather_obj({'seen': seen, 'shard': len(indices), 'padding': n_padding})
    if comm.rank == 0:
        with open(out, 'w') as f:
            json.dump(gathered, f)


if __name__ == '__main__':
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
