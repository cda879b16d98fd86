#!/usr/bin/env python
"""Convert Kinetics SlowFast (or Slow) R50 weights to the trunk ``.npz`` ``--pretrained`` reads.

    python scripts/convert_slowfast_weights.py SLOWFAST_8x8_R50_state.npz kinetics_slowfast.npz
    mpiexec -n 4 python scripts/train_slowfast.py --preset slowfast_ava_2021 --data-dir AVA \\
        --model slowfast_r50_k7 --pretrained kinetics_slowfast.npz

The input is the checkpoint's state dict saved as an ``.npz`` of ``{name: array}``, in
PySlowFast's or PyTorchVideo's parameter names (detected). PyTorch is not needed here; where it
is installed, three lines export a PyTorch checkpoint (``.pyth``: PySlowFast's and PyTorchVideo's
model-zoo files keep the weights under ``model_state``):

    import numpy as np, torch
    sd = torch.load('SLOWFAST_8x8_R50.pyth', map_location='cpu')['model_state']
    np.savez('SLOWFAST_8x8_R50_state.npz', **{k: v.numpy() for k, v in sd.items()})

(a model built in PyTorch, e.g. ``torch.hub.load('facebookresearch/pytorchvideo',
'slowfast_r50', pretrained=True)``, exports its ``model.state_dict()`` the same way; PySlowFast's
Caffe2 ``.pkl`` files are loaded into its model with its own checkpoint loader first.)

The script prints the network the weights describe and the ``--model`` that fits it
(``slowfast_r50``: 5x1x1 laterals, the SlowFast paper's; ``slowfast_r50_k7``: PySlowFast's 7x1x1,
as in its SLOWFAST_8x8_R50; ``slow_r50``), lists the classifier arrays it drops (400 / 600 classes
for Kinetics-400 / -600, 80 for an AVA model; the AVA head is trained new) and stops with one
line naming the file and the array on a missing, extra or mis-shaped array. See
``chainer_yolo_dist/slowfast/convert.py`` and docs/slowfast.md.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chainer_yolo_dist.slowfast import convert, models  # noqa: E402
from chainer_yolo_dist.core import cli  # noqa: E402


def main(argv=None):
    p = cli.Parser(description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('source', help='.npz of the PyTorch state dict {name: array}')
    p.add_argument('out', help='the trunk .npz to write (for --pretrained)')
    p.add_argument('--naming', default='auto', choices=('auto',) + convert.NAMINGS,
                   help='parameter names of the source (default: detected)')
    args = p.parse_args(argv)
    try:
        with np.load(args.source) as f:
            state = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        sys.exit('%s: not a readable .npz of a state dict (%s)' % (args.source, e))
    try:
        arrays, info = convert.convert(state, args.naming)
    except ValueError as e:
        sys.exit('%s: %s' % (args.source, e))
    np.savez(args.out, **arrays)
    config = info['config']
    print('%s: %s naming; %s' % (args.source, info['naming'], convert._describe(config)))
    print('converted %d arrays, %s parameters (BN running statistics not counted)'
          % (sum(1 for k in arrays if not k.endswith('/N')), format(info['n_params'], ',')))
    for name, shape in sorted(info['dropped'].items()):
        print('dropped classifier %s %s' % (name, shape))
    if info['dropped']:
        n_class = max(s[0] for s in info['dropped'].values())
        print('the classifier had %d classes (%s); the AVA head (80 classes) is trained new'
              % (n_class, {400: 'Kinetics-400', 600: 'Kinetics-600', 80: 'AVA'}.get(
                  n_class, 'not a Kinetics or AVA classifier')))
    name = convert.fitting_model(config)
    if name:
        print('wrote %s; train with --pretrained %s --model %s' % (args.out, args.out, name))
    else:
        print('wrote %s; none of the named models (%s) has this trunk'
              % (args.out, ', '.join(models.MODELS)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
