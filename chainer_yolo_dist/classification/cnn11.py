"""Paper 003's ImageNet classifier: a CNN with 11 convolution layers (a reading).

Paper 003 (Overview) says only that the network it trained on 48 GPUs "has 11
convolution layers"; it gives no widths, kernels, normalisation or classifier. The reading
here is a design of that period (2015) with exactly 11 convolutions and nothing else with
weights:

* convolutions 1-10: VGG's configuration B (Simonyan & Zisserman 2015): five stages of two
  3x3 convolutions, 64, 128, 256, 512, 512 channels, each stage followed by a 2x2/2 max
  pooling, with batch normalisation (Ioffe & Szegedy 2015) after each convolution and ReLU;
* convolution 11: a 1x1 convolution to the classes followed by global average pooling
  (Network in Network, Lin et al. 2014; GoogLeNet and Darknet-19 end the same way) in place
  of VGG's three fully connected layers.

The other reading, eleven 3x3 convolutions followed by a fully connected classifier (VGG's
stages with three convolutions in the last one, global average pooling, one linear layer),
is ``head='linear'``.

Conventions as :mod:`chainer_yolo_dist.classification.darknet`: input ``x`` float32
``(N, 3, S, S)``, RGB in ``[0, 1]``, ``S`` a multiple of 32 (five poolings); ``forward`` returns
logits ``(N, n_class)``; ``channels_scale`` multiplies every convolution width (1 is the model
above, 1/8 a CPU-sized network of the same depth).
"""
import chainer
import chainer.functions as F
import chainer.links as L
from chainercv.links import Conv2DBNActiv

from chainer_yolo_dist.classification.darknet import STRIDE, scaled_width

#: Channels of the five stages at ``channels_scale=1`` (VGG, all configurations).
CNN11_WIDTHS = (64, 128, 256, 512, 512)
#: 3x3 convolutions per stage: VGG configuration B (10), plus the 1x1 classifier = 11.
CNN11_CONVS = (2, 2, 2, 2, 2)
#: The ``head='linear'`` reading: eleven 3x3 convolutions, then a linear classifier.
CNN11_CONVS_LINEAR_HEAD = (2, 2, 2, 2, 3)
HEADS = ('conv', 'linear')


class CNN11(chainer.Chain):
    """The 11-convolution ImageNet CNN of paper 003 (see the module docstring).

    Args:
        n_class (int): number of classes (1000 for ImageNet).
        channels_scale (float): multiplies every width; must give whole channel counts.
        head (str): ``'conv'`` (default: 10 3x3 convolutions + a 1x1 convolution to the
            classes) or ``'linear'`` (11 3x3 convolutions + a linear layer).

    Attributes:
        trunk (ChainList): the 3x3 conv + BN + ReLU layers, a 2x2/2 max pooling after the
            last layer of each stage.
        head: ``L.Convolution2D(C, n_class, 1)`` or ``L.Linear(C, n_class)``.
    """

    def __init__(self, n_class=1000, channels_scale=1, head='conv'):
        super().__init__()
        if int(n_class) != n_class or n_class < 1:
            raise ValueError('n_class must be a positive integer, got %r' % (n_class,))
        if head not in HEADS:
            raise ValueError('head must be one of %s, got %r' % (HEADS, head))
        self.n_class = int(n_class)
        self.channels_scale = channels_scale
        self.head_kind = head
        convs = CNN11_CONVS if head == 'conv' else CNN11_CONVS_LINEAR_HEAD
        layers, pool_after = [], []
        in_ch = 3
        for width, n_conv in zip(CNN11_WIDTHS, convs):
            out_ch = scaled_width(width, channels_scale)
            for _ in range(n_conv):
                layers.append(Conv2DBNActiv(in_ch, out_ch, 3, pad=1, activ=F.relu))
                in_ch = out_ch
            pool_after.append(len(layers) - 1)
        self.pool_after = tuple(pool_after)
        with self.init_scope():
            self.trunk = chainer.ChainList(*layers)
            if head == 'conv':
                self.head = L.Convolution2D(in_ch, self.n_class, 1)
            else:
                self.head = L.Linear(in_ch, self.n_class)

    @property
    def n_conv(self):
        """Number of convolution layers (11 for both heads)."""
        return len(self.trunk) + (1 if self.head_kind == 'conv' else 0)

    def _check_input(self, x):
        shape = x.shape
        if len(shape) != 4 or shape[1] != 3:
            raise ValueError('CNN11 expects a batch of RGB images (N, 3, S, S), got shape %r'
                             % (tuple(shape),))
        if shape[2] % STRIDE or shape[3] % STRIDE or shape[2] == 0 or shape[3] == 0:
            raise ValueError('CNN11 expects H and W to be positive multiples of %d, got %dx%d'
                             % (STRIDE, shape[2], shape[3]))

    def forward(self, x):
        """``x`` ``(N, 3, S, S)`` float32 in [0, 1] -> logits ``(N, n_class)``."""
        self._check_input(x)
        h = x
        for i, layer in enumerate(self.trunk):
            h = layer(h)
            if i in self.pool_after:
                h = F.max_pooling_2d(h, 2, stride=2)
        if self.head_kind == 'conv':
            return F.mean(self.head(h), axis=(2, 3))
        return self.head(F.mean(h, axis=(2, 3)))

    def predict(self, x):
        """Class probabilities ``(N, n_class)`` (rows sum to 1), test mode, no graph."""
        with chainer.using_config('train', False), chainer.no_backprop_mode():
            return F.softmax(self.forward(x)).array
