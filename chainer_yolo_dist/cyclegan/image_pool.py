"""Zhu et al.'s history of generated images for the discriminators (Shrivastava et al. 2017).

The discriminator is shown, for each new fake, with probability 0.5 the new fake and with
probability 0.5 an older fake from a pool of 50, which then takes the new one's place; until the
pool is full every fake is stored and returned as is (Zhu's ``util/image_pool.py``, pool size 50,
paper 002 appendix A.1 follows Zhu's settings).

The pool draws from its own seeded ``numpy.random.RandomState`` (never the global one) and
:meth:`ImagePool.serialize` saves the stored images and that generator's state, so a resumed run
makes the same choices as an uninterrupted one. The pool is per process: every rank keeps its
own, seeded differently, and each rank's pool must be saved for an exact resume.
"""
import chainer
import numpy as np

#: Zhu et al.'s ``--pool_size``.
POOL_SIZE = 50


class ImagePool(object):
    """History of up to ``size`` images ``(C, H, W)``; ``size = 0`` returns every input unchanged.

    Args:
        size (int): capacity (50 in Zhu's code).
        seed (int): seed of the pool's own random generator (give each rank its own).
    """

    def __init__(self, size=POOL_SIZE, seed=0):
        if size < 0:
            raise ValueError('pool size must be >= 0, got %r' % (size,))
        self.size = int(size)
        self.rng = np.random.RandomState(seed)
        self.images = []

    def query(self, images):
        """Returns a batch the same shape as ``images`` ``(N, C, H, W)``, partly from the history.

        ``images`` is an array (NumPy or CuPy) without graph; the stored copies live on the same
        device. For each image in batch order: while the pool is not full, store it and return
        it; otherwise with probability 0.5 return a uniformly chosen stored image and store the
        new one in its place, else return the new one.
        """
        if self.size == 0:
            return images
        xp = _array_module(images)
        out = []
        for image in images:
            image = image.copy()
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif self.rng.uniform(0, 1) > 0.5:
                k = self.rng.randint(0, self.size)
                out.append(xp.asarray(self.images[k]))
                self.images[k] = image
            else:
                out.append(image)
        return xp.stack(out)

    def serialize(self, serializer):
        """Saves or restores the stored images (stacked, ``(n, C, H, W)``) and the RNG state."""
        name, keys, pos, has_gauss, cached = self.rng.get_state()
        keys = serializer('rng_keys', np.asarray(keys))
        pos = serializer('rng_pos', int(pos))
        has_gauss = serializer('rng_has_gauss', int(has_gauss))
        cached = serializer('rng_cached_gaussian', float(cached))
        self.rng.set_state((name, np.asarray(keys, np.uint32), int(pos), int(has_gauss),
                            float(cached)))
        n = serializer('n_images', len(self.images))
        if n == 0:
            self.images = []
            return
        if isinstance(serializer, chainer.serializer.Deserializer):
            stacked = serializer('images', None)  # restored as NumPy; moved on first query
        else:
            stacked = serializer('images', _array_module(self.images[0]).stack(self.images))
        self.images = list(stacked)


def _array_module(x):
    return chainer.backend.get_array_module(x)
