"""The Frechet distance split over the ranks (issue 21, finding 12): each rank translates and
extracts the features of its share of the held-out images, rank 0 gathers them, and the
distance is bit for bit the one-process number, which is also what the former rank-0-only
computation gave (``extract(translate(gen, A))`` against ``extract(B)`` on whole arrays).

Run by pytest; also the MPI script of its last test (``mpiexec -n 2 python THIS_FILE``).
"""
import sys

import chainer
import chainer.links as L
import numpy as np
import pytest

from chainer_yolo_dist.cyclegan import evaluation, fid
from chainer_yolo_dist.cyclegan.data import SyntheticDomains
from chainer_yolo_dist.cyclegan.features import PooledFeatures
from chainer_yolo_dist.cyclegan.networks import ResnetGenerator

# 45 held-out images of 24 px: with the extractor's batches of 8 and the generator's of 16 the
# unit is 16 images, so 2 ranks get 16 and 29 (the last unit cut short at 13).
N_IMAGES, SIZE, EXTRACT_BATCH = 45, 24, 8


class _TinyMaps(chainer.Chain):
    """A stand-in feature network (a conv, as Darknet's maps): ``(N, 3, h, w) -> (N, 6, ...)``."""

    def __init__(self):
        super().__init__()
        with self.init_scope():
            self.conv = L.Convolution2D(3, 6, 3)

    def forward(self, x):
        return self.conv(x)


def _setup():
    np.random.seed(0)
    gen = ResnetGenerator(1, 4)
    extract = PooledFeatures(_TinyMaps(), input_size=16, batchsize=EXTRACT_BATCH)
    test = SyntheticDomains('test', N_IMAGES + 3, SIZE, seed=2)
    return gen, extract, test


def _former(gen, extract, test):
    """What rank 0 alone computed before: whole arrays, ``(baseline, distance)``."""
    images_a = evaluation.stack(test.domain_a, N_IMAGES)
    features_b = extract(evaluation.stack(test.domain_b, N_IMAGES))
    return (fid.frechet_distance_of_features(extract(images_a), features_b),
            fid.frechet_distance_of_features(extract(evaluation.translate(gen, images_a)),
                                             features_b))


@pytest.mark.parametrize('n,size,unit', [(45, 2, 16), (48, 3, 16), (5, 4, 2), (128, 512, 32),
                                         (7, 1, 32), (0, 2, 4)])
def test_shards_cover_the_images_in_order_in_whole_units(n, size, unit):
    ranges = [evaluation.shard(n, size, rank, unit) for rank in range(size)]
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    for (_, stop), (start, _) in zip(ranges, ranges[1:]):
        assert stop == start  # contiguous, in rank order
    units = -(-n // unit)
    for start, stop in ranges:
        assert start % unit == 0 or start == n  # never inside a unit
        assert stop - start <= -(-units // size) * unit  # at most one unit more than others
    assert sum(stop > start for start, stop in ranges) == min(units, size)


def test_one_process_gives_the_former_numbers_bit_for_bit():
    gen, extract, test = _setup()
    frechet = evaluation.FrechetExtension(gen, test.domain_a, test.domain_b, extract,
                                          n_images=N_IMAGES)
    assert frechet.unit == 16
    baseline, distance = _former(gen, extract, test)
    assert frechet.baseline == baseline and frechet.measure() == distance
    assert frechet.last == distance and distance > 0


def test_two_ranks_give_the_one_process_distance():
    from conftest import check, run_mpi
    proc = check(run_mpi(2, [__file__], timeout=180))
    assert 'OK' in proc.stdout


def main():
    import chainermn
    comm = chainermn.create_communicator('naive')
    gen, extract, test = _setup()  # the same seeds: equal networks on both ranks
    frechet = evaluation.FrechetExtension(gen, test.domain_a, test.domain_b, extract,
                                          comm=comm, n_images=N_IMAGES)
    assert len(frechet.share_a) == (16, 29)[comm.rank], len(frechet.share_a)
    distance = frechet.measure()
    values = comm.gather_obj((frechet.baseline, distance, frechet.last))
    if comm.rank == 0:
        assert values[0] == values[1], values  # every rank holds rank 0's numbers
        assert frechet.features_b.shape[0] == N_IMAGES
        expected = _former(gen, extract, test)
        assert (frechet.baseline, distance) == expected, ((frechet.baseline, distance),
                                                          expected)
        print('OK', frechet.baseline, distance)
    else:
        assert frechet.features_b is None  # only rank 0 keeps B's features


if __name__ == '__main__':
    sys.exit(main())
