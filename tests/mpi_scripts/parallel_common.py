"""A small network and a deterministic data stream shared by the parallelism test scripts."""
import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np

N_CLASS = 3
SIDE = 8


class SmallNet(chainer.Chain):
    """conv 3x3 (3->4) + BN + ReLU, conv 3x3 (4->4) + ReLU, global average pool, linear.

    Input ``(N, 3, 8, 8)``; logits ``(N, 3)``. Every parameter exists after construction.
    """

    def __init__(self):
        super().__init__()
        with self.init_scope():
            self.c1 = L.Convolution2D(3, 4, 3, pad=1)
            self.bn = L.BatchNormalization(4)
            self.c2 = L.Convolution2D(4, 4, 3, pad=1)
            self.fc = L.Linear(4, N_CLASS)

    def forward(self, x):
        h = F.relu(self.bn(self.c1(x)))
        h = F.relu(self.c2(h))
        return self.fc(F.average(h, axis=(2, 3)))


def build(seed=0, dtype=np.float64):
    """The same initial weights on every rank (Chainer draws from NumPy's global generator)."""
    chainer.global_config.dtype = np.dtype(dtype)
    np.random.seed(seed)
    return L.Classifier(SmallNet())


def batch(step, worker, batchsize=4, dtype=np.float64):
    """Worker ``worker``'s batch of step ``step``: a learnable task (the class is the channel
    with the brightest mean), the same on every rank that asks for it."""
    rng = np.random.RandomState(1000 * step + worker)
    t = rng.randint(0, N_CLASS, size=batchsize).astype(np.int32)
    x = rng.uniform(0, 0.5, size=(batchsize, 3, SIDE, SIDE))
    x[np.arange(batchsize), t] += 0.5
    return x.astype(dtype), t


def params(link):
    return {name: p.array.copy() for name, p in sorted(link.namedparams())}
