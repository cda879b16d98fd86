"""Each epoch, every training sample is on exactly one rank (run under mpiexec).

Usage: coverage.py N_SAMPLES BATCH EPOCHS OUT.json
Uses the training pipeline's own pieces: scatter_indices, subset,
EpochSampledDataset, train_iterator (with worker processes). Rank 0 writes, per epoch,
every base index seen on any rank.
"""
import json
import sys

import chainermn

from chainer_yolo_dist.core import iterators, mpi, sampling, sharding


def main(n, batch, epochs, out):
    mpi.start_forkserver()
    comm = chainermn.create_communicator('naive')
    shares, n_padding = sharding.scatter_indices(n, comm, seed=5)
    shard = sampling.EpochSampledDataset(sharding.subset(list(range(n)), shares[0]),
                                         transform=None, seed=5)
    it = iterators.train_iterator(shard, batch, seed=5, loaderjob=1)
    assert len(shard.base) % batch == 0, 'choose a batch that divides the share'
    seen = []
    for epoch in range(epochs):
        seen.append([])
        for _ in range(len(shard.base) // batch):
            seen[-1].extend(int(v) for v in next(it))
        assert it.epoch == epoch + 1 and it.is_new_epoch
    it.finalize()
    gathered = comm.gather_obj({'seen': seen, 'shard': len(shard.base), 'padding': n_padding})
    if comm.rank == 0:
        with open(out, 'w') as f:
            json.dump(gathered, f)


if __name__ == '__main__':
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
