"""Each worker's share of a dataset.

Training shares are equal in length (as ChainerMN's ``scatter_dataset`` makes them: consecutive
shares of one shuffled order overlap where the workers do not divide the data), because a rank
whose iterator ran out first would leave the others waiting in the AllReduce. Validation
shares are not padded: an exact metric must count every example once.
"""
import collections

import numpy as np
from chainer.datasets import SubDataset

#: Examples ``order[begin:end]`` of a dataset (``order`` None: ``begin:end`` in file order).
Share = collections.namedtuple('Share', ('begin', 'end', 'order'))


def worker_share(n, workers, worker, seed):
    """Worker ``worker``'s share of ``n`` examples shuffled with ``seed``, out of ``workers``
    equal shares of length ``ceil(n / workers)``: ChainerMN's
    ``scatter_dataset(..., shuffle=True, seed=seed)`` split for ``workers`` ranks."""
    begin = n * worker // workers
    return Share(begin, begin + -(-n // workers), np.random.RandomState(seed).permutation(n))


def scatter_indices(n, comm, seed, virtual_ranks=1):
    """This process's training shares of ``n`` examples shuffled with ``seed``.

    There are ``comm.size * virtual_ranks`` workers; this process is workers
    ``comm.rank * virtual_ranks`` to ``comm.rank * virtual_ranks + virtual_ranks - 1``.

    Returns ``(shares, n_padding)``: a list of ``virtual_ranks`` :class:`Share`, and how many
    examples are repeated in total so that every worker has the same count.
    """
    workers = comm.size * virtual_ranks
    shares = [worker_share(n, workers, comm.rank * virtual_ranks + v, seed)
              for v in range(virtual_ranks)]
    return shares, (shares[0].end - shares[0].begin) * workers - n


def scatter_validation(n, comm):
    """This rank's validation share: a contiguous block, no padding.

    Raises if there are fewer examples than ranks (a rank with nothing would divide by zero).
    """
    if n < comm.size:
        raise ValueError('the validation set has %d examples, fewer than the %d processes: '
                         'every rank needs at least one' % (n, comm.size))
    begin = n * comm.rank // comm.size
    return Share(begin, n * (comm.rank + 1) // comm.size, None)


def subset(dataset, share):
    """The examples of ``share`` (a :class:`Share`) of ``dataset``, without copying any."""
    return SubDataset(dataset, share.begin, share.end, share.order)
