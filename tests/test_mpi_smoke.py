"""Two ranks under the venv's mpiexec: MPI itself and ChainerMN's CPU ('naive') communicator."""
from conftest import check, run_mpi

SCRIPT = r'''
import os
import sys

import numpy as np
import chainermn
from chainer_yolo_dist.datasets import SyntheticShapesDataset

comm = chainermn.create_communicator('naive')
assert comm.size == 2, comm.size
x = np.array([comm.rank + 1.0, 10.0 * comm.rank], np.float32)
total = comm.allreduce(x)  # sums over ranks
indices = np.arange(7) if comm.rank == 0 else None
mine = chainermn.scatter_dataset(indices, comm, shuffle=True, seed=0)
seen = comm.mpi_comm.allgather([int(i) for i in mine])
ds = SyntheticShapesDataset(n_images=7, size=32)
sub = chainermn.scatter_dataset(ds, comm, shuffle=True, seed=0)
img = sub[0][0]
# One file per rank: mpiexec may interleave the ranks' stdout mid-line.
with open(os.path.join(sys.argv[1], 'rank%d.txt' % comm.rank), 'w') as f:
    f.write('rank %d total %s lengths %s union %s img %s'
            % (comm.rank, total.tolist(), [len(s) for s in seen], sorted(set(sum(seen, []))),
               img.shape))
'''


def test_two_ranks_allreduce_and_scatter_dataset(tmp_path):
    check(run_mpi(2, ['-c', SCRIPT, str(tmp_path)], timeout=120))
    for rank in range(2):
        line = (tmp_path / ('rank%d.txt' % rank)).read_text()
        assert line.startswith('rank %d ' % rank)
        assert 'total [3.0, 10.0]' in line
        # 7 items over 2 ranks: padded to equal lengths, together covering every index
        assert 'lengths [4, 4]' in line
        assert 'union [0, 1, 2, 3, 4, 5, 6]' in line
        assert 'img (3, 32, 32)' in line
