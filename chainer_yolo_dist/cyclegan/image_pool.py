"""Zhu et al.'s history of generated images for the discriminators (Shrivastava et al. 2017).

The discriminator is shown, for each new fake, with probability 0.5 the new fake and with
probability 0.5 an older fake from a pool of 50, which then takes the new one's place; until the
pool is full every fake is stored and returned as is (Zhu's ``util/image_pool.py``, pool size 50;
paper 002 does not mention the pool: sec. 3.1 follows Zhu et al.'s implementation).

The pool draws from its own seeded ``numpy.random.RandomState`` (never the global one) and
:meth:`ImagePool.serialize` saves the stored images and that generator's state, so a resumed run
makes the same choices as an uninterrupted one. The pool is per process: every rank keeps its
own, seeded differently, and each rank's pool must be saved for an exact resume.

Every stored image lives on the pool's one ``device`` (the updater gives it the discriminator's):
images queried from elsewhere are copied there, and images restored from a snapshot (which come
back as NumPy) are moved there, so the history never mixes NumPy and CuPy arrays, which could
neither be stacked for the next snapshot nor handed to the discriminator.
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
        device: where the stored images live (anything ``chainer.get_device`` takes, e.g.
            ``'@numpy'`` or ``'@cupy:0'``, or a ``chainer.backend.Device``); default the CPU.
    """

    def __init__(self, size=POOL_SIZE, seed=0, device=None):
        if size < 0:
            raise ValueError('pool size must be >= 0, got %r' % (size,))
        self.size = int(size)
        self.rng = np.random.RandomState(seed)
        self.device = (chainer.backend.CpuDevice() if device is None
                       else chainer.get_device(device))
        self.images = []  # each (C, H, W), on self.device

    def query(self, images):
        """Returns a batch the same shape as ``images`` ``(N, C, H, W)``, partly from the history.

        ``images`` is an array (NumPy or CuPy) without graph; the result is on the same device
        as ``images``, the stored copies on the pool's device. For each image in batch order:
        while the pool is not full, store it and return it; otherwise with probability 0.5
        return a uniformly chosen stored image and store the new one in its place, else return
        the new one.
        """
        if self.size == 0:
            return images
        source = chainer.backend.get_device_from_array(images)
        batch = self.device.send(images)  # no copy when already there (the training case)
        out = []
        for image in batch:
            image = image.copy()  # the caller may reuse its buffer; the history must not change
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif self.rng.uniform(0, 1) > 0.5:
                k = self.rng.randint(0, self.size)
                out.append(self.images[k])
                self.images[k] = image
            else:
                out.append(image)
        return source.send(self.device.xp.stack(out))

    def serialize(self, serializer):
        """Saves or restores the stored images (stacked, ``(n, C, H, W)``, written as NumPy
        whatever the pool's device) and the RNG state; restored images go to the pool's
        device."""
        name, keys, pos, has_gauss, cached = self.rng.get_state()
        keys = serializer('rng_keys', np.asarray(keys))
        pos = serializer('rng_pos', int(pos))
        has_gauss = serializer('rng_has_gauss', int(has_gauss))
        cached = serializer('rng_cached_gaussian', float(cached))
        self.rng.set_state((name, np.asarray(keys, np.uint32), int(pos), int(has_gauss),
                            float(cached)))
        n = serializer('n_images', len(self.images))
        if isinstance(serializer, chainer.serializer.Deserializer):
            # A snapshot holds NumPy arrays: one transfer of the stack, then the rows (views).
            self.images = list(self.device.send(serializer('images', None))) if n else []
        elif n:
            # Stacked where the images are (one transfer), written from the host: serializers
            # other than NPZ's do not all take CuPy arrays. The stored list is left as it is.
            stacked = self.device.xp.stack([self.device.send(x) for x in self.images])
            serializer('images', chainer.backend.CpuDevice().send(stacked))
