"""The papers' training settings as data: one TOML file per preset, read with ``tomllib``.

``load(name, n_gpus, **overrides)`` returns a frozen :class:`Preset`; every TOML value carries a
comment citing paper and section (see docs/presets.md for the table and the readings chosen where
the papers are ambiguous). Command-line options override preset values by keyword; callers pass
only the options the user actually set, because ``None`` is a meaningful value for some fields
(``multiscale=None`` turns multi-scale training off).

TOML has no null, so the files write ``"none"`` for an absent string (``pretrained``,
``allreduce_grad_dtype``) and ``[]`` for no multi-scale training.
"""
import dataclasses
import difflib
import math
import os
import re
import tomllib

from chainer_yolo_dist.core.parallelism.modes import MODES
from chainer_yolo_dist.core.sampling import draws_per_epoch
from chainer_yolo_dist.core.schedules import LRSchedule, batch_fraction_check, scaled_lr

#: The preset files: data only, one TOML file per preset.
PRESET_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          'presets')

# ChainerMN 7.8.1's communicators; hierarchical, two_dimensional and single_node were removed.
COMMUNICATORS = ('naive', 'flat', 'non_cuda_aware', 'pure_nccl', 'dummy')
ALLREDUCE_DTYPES = (None, 'float16', 'float32')
DECAYS = ('step', 'poly', 'constant', 'linear')
# Readings of the papers' augmentation (docs/papers.md): 'paper' as the papers describe it
# (random crop, rotation, hue/saturation/exposure), 'darknet' as Darknet's detection loader
# does it (jittered crop, horizontal flip, hue/saturation/exposure).
AUGMENTATIONS = ('paper', 'darknet')
POLY_FROM = ('warmup_end', 'start')
# Batch size at which eta is the rate, as a function of the per-GPU batch n:
#   k_eta          lr = k*eta       (paper 000 sec. 4.1; the reading chosen for paper 001 sec. 4.2)
#   literal_knEta  lr = k*n*eta     (paper 001 sec. 4.2 as printed)
#   kn_256_eta     lr = k*n/256*eta (paper 001 sec. 4.1, Goyal et al.'s 0.1 per 256 images)
#   custom         reference_batch given explicitly
#   constant       lr = eta whatever k and n (paper 002 sec. 3.2: the rate is not changed with
#                  the number of GPUs)
#   sqrt_k_eta     lr = sqrt(k)*eta (square-root scaling, reference batch = n): not in the
#                  papers; the scaling study's ablation (docs/study.md)
LR_RULES = {
    'k_eta': lambda n: n,
    'sqrt_k_eta': lambda n: n,
    'literal_knEta': lambda n: 1,
    'kn_256_eta': lambda n: 256,
    'custom': None,
    'constant': lambda n: n,
}
# Rules whose peak is eta itself, not scaled with the global batch.
UNSCALED_RULES = ('constant',)
LR_RULE_FORMULAS = {'constant': 'η', 'k_eta': 'k·η', 'literal_knEta': 'k·n·η',
                    'kn_256_eta': 'k·n/256·η', 'sqrt_k_eta': '√k·η'}
# Rules whose rate grows as the square root of the global batch; all others grow linearly.
SQRT_RULES = ('sqrt_k_eta',)
# Multi-scale sizes must be multiples of the network stride (paper 000 sec. 2.2).
STRIDE = 32


@dataclasses.dataclass(frozen=True)
class Preset:
    """One paper's training recipe for ``n_gpus`` processes (one GPU each).

    Derived (not settable): ``global_batchsize = n_gpus * batchsize_per_gpu``,
    ``peak_lr = eta * global_batchsize / reference_batch`` (``eta * sqrt(global_batchsize /
    reference_batch)`` for ``lr_rule = 'sqrt_k_eta'``), ``warmup_start_lr = eta`` (both
    papers start the warmup at the non-distributed rate), ``batch_fraction =
    global_batchsize / n_train``. ``multiscale`` is ``(min_size, max_size, every_iterations)``
    in pixels / iterations, or None. ``clip_frames`` is the number of frames per example of a
    video model (the Fast pathway's frames for SlowFast, paper 004 sec. 3.2), 0 for images.
    ``loader_workers``: loader worker processes per rank where the paper gives them (paper
    004 sec. 4.2: 6), None where it does not (the machine's default then applies,
    ``core/resolve.py``).
    ``parallelism``: how the paper combined its workers' gradients (``sync``, ``async``, ``local``,
    ``stale``: ``core/parallelism/__init__.py``); a run in another mode says so among its
    departures. ``lars``: the optimizer takes ``GradientLARS`` (which applies ``weight_decay``
    itself) instead of ``WeightDecay``, as ``--lars`` does (``core/optimizers.py``).
    """

    name: str
    paper: str
    model: str
    dataset: str
    n_class: int
    n_train: int
    published_gpus: tuple
    n_gpus: int
    batchsize_per_gpu: int
    epochs: int
    eta: float
    lr_rule: str
    warmup_hold_epochs: float
    warmup_epochs: float
    decay: str
    steps: tuple
    step_factor: float
    poly_power: float
    poly_from: str
    burn_in_iterations: int
    momentum: float
    weight_decay: float
    insize: int
    multiscale: tuple | None
    pretrained: str | None
    transfer_layers: int
    communicator: str
    allreduce_grad_dtype: str | None
    cudnn_fast_bn: bool
    reference_batch: float | None = None
    augmentation: str = 'paper'
    linear_from: float = 0.0
    sampling_scale: float | None = None
    max_iterations: int | None = None
    clip_frames: int = 0
    lars: bool = False
    parallelism: str = 'sync'
    loader_workers: int | None = None
    global_batchsize: int = dataclasses.field(init=False)
    peak_lr: float = dataclasses.field(init=False)
    warmup_start_lr: float = dataclasses.field(init=False)
    batch_fraction: float = dataclasses.field(init=False)

    def __post_init__(self):
        where = 'preset %r' % (self.name,)
        _check_choice(where, 'augmentation', self.augmentation, AUGMENTATIONS)
        _check_choice(where, 'lr_rule', self.lr_rule, tuple(LR_RULES))
        _check_choice(where, 'decay', self.decay, DECAYS)
        _check_choice(where, 'parallelism', self.parallelism, tuple(MODES))
        _check_choice(where, 'poly_from', self.poly_from, POLY_FROM)
        _check_choice(where, 'communicator', self.communicator, COMMUNICATORS)
        _check_choice(where, 'allreduce_grad_dtype', self.allreduce_grad_dtype,
                      ALLREDUCE_DTYPES)
        for key in ('n_class', 'n_train', 'n_gpus', 'batchsize_per_gpu', 'epochs', 'insize'):
            if getattr(self, key) < 1:
                raise ValueError('%s: %s must be >= 1, got %r' % (where, key,
                                                                  getattr(self, key)))
        if not self.eta > 0:
            raise ValueError('%s: eta must be positive, got %r' % (where, self.eta))
        if not 0 <= self.momentum < 1:
            raise ValueError('%s: momentum must be in [0, 1), got %r' % (where, self.momentum))
        if not self.weight_decay >= 0:
            raise ValueError('%s: weight_decay must be >= 0, got %r' % (where,
                                                                        self.weight_decay))
        if self.max_iterations is not None and self.max_iterations < 1:
            raise ValueError('%s: max_iterations must be >= 1, got %r'
                             % (where, self.max_iterations))
        if self.sampling_scale is not None and not self.sampling_scale > 0:
            raise ValueError('%s: sampling_scale must be positive, got %r'
                             % (where, self.sampling_scale))
        if self.loader_workers is not None and self.loader_workers < 0:
            raise ValueError('%s: loader_workers must be >= 0, got %r'
                             % (where, self.loader_workers))
        if self.clip_frames < 0:
            raise ValueError('%s: clip_frames must be >= 0, got %r' % (where, self.clip_frames))
        if self.insize % STRIDE:
            raise ValueError('%s: insize %d is not a multiple of the stride %d'
                             % (where, self.insize, STRIDE))
        if self.multiscale is not None:
            lo, hi, every = self.multiscale
            if lo % STRIDE or hi % STRIDE or not 0 < lo <= hi or every < 1:
                raise ValueError('%s: multiscale must be (min, max, every) with multiples of '
                                 '%d and min <= max, got %r' % (where, STRIDE, self.multiscale))
        if (self.pretrained is None) != (self.transfer_layers == 0):
            raise ValueError('%s: pretrained=%r needs transfer_layers > 0 exactly when set, '
                             'got transfer_layers=%r' % (where, self.pretrained,
                                                         self.transfer_layers))
        rule = LR_RULES[self.lr_rule]
        if rule is None:
            if self.reference_batch is None or not self.reference_batch > 0:
                raise ValueError("%s: lr_rule 'custom' needs a positive reference_batch"
                                 % where)
        else:
            expected = rule(self.batchsize_per_gpu)
            if self.reference_batch is not None and self.reference_batch != expected:
                raise ValueError('%s: reference_batch %r contradicts lr_rule %r (which means '
                                 '%r); give lr_rule="custom" to set it freely'
                                 % (where, self.reference_batch, self.lr_rule, expected))
            object.__setattr__(self, 'reference_batch', expected)
        global_batch = self.n_gpus * self.batchsize_per_gpu
        object.__setattr__(self, 'global_batchsize', global_batch)
        object.__setattr__(self, 'peak_lr',
                           self.eta if self.lr_rule in UNSCALED_RULES
                           else scaled_lr(self.eta, global_batch, self.reference_batch,
                                          'sqrt' if self.lr_rule in SQRT_RULES
                                          else 'linear'))
        object.__setattr__(self, 'warmup_start_lr', self.eta)
        object.__setattr__(self, 'batch_fraction', global_batch / self.n_train)
        # Let LRSchedule reject an inconsistent schedule now rather than mid-training.
        self.schedule()

    @property
    def iterations_per_epoch(self):
        """Updates per epoch (float): ChainerMN's ``scatter_dataset`` gives each rank
        ``ceil(n_train / n_gpus)`` samples, read ``batchsize_per_gpu`` at a time; with a
        ``sampling_scale`` each rank draws ``ceil(sampling_scale * n_train / n_gpus)``
        (``core.sampling.draws_per_epoch``, paper 002 sec. 3.2)."""
        if self.sampling_scale is not None:
            return (draws_per_epoch(self.n_train, self.sampling_scale, self.n_gpus)
                    / self.batchsize_per_gpu)
        return math.ceil(self.n_train / self.n_gpus) / self.batchsize_per_gpu

    def schedule(self):
        """The :class:`~chainer_yolo_dist.core.schedules.LRSchedule` of this preset."""
        return LRSchedule(
            self.peak_lr, warmup_start_lr=self.warmup_start_lr,
            warmup_hold_epochs=self.warmup_hold_epochs, warmup_epochs=self.warmup_epochs,
            decay=self.decay, steps=self.steps, step_factor=self.step_factor,
            poly_power=self.poly_power, total_epochs=self.epochs, poly_from=self.poly_from,
            burn_in_iterations=self.burn_in_iterations,
            iterations_per_epoch=self.iterations_per_epoch, linear_from=self.linear_from)

    def with_data(self, n_train, n_class):
        """This preset for the data actually loaded: its size enters the batch share and the
        iterations per epoch, its classes the network's head."""
        return dataclasses.replace(self, n_train=int(n_train), n_class=int(n_class))

    def batch_fraction_check(self, warn_above=0.07):
        """``(batch_fraction, warning or None)``; see ``schedules.batch_fraction_check``. The
        warning is about the linear scaling rule: none for a rate not scaled with k."""
        fraction, warning = batch_fraction_check(self.global_batchsize, self.n_train,
                                                 warn_above)
        return fraction, None if self.lr_rule in UNSCALED_RULES else warning


def _check_choice(where, key, value, choices):
    if value not in choices:
        raise ValueError('%s: %s must be one of %s, got %r' % (where, key, choices, value))


# TOML has no null: "none" stands for an absent string value.
_NONE_STRING = 'none'


def _opt_str(value):
    return None if value in (None, _NONE_STRING) else str(value)


def _multiscale(value):
    if value is None or len(value) == 0:
        return None
    if len(value) != 3:
        raise ValueError('multiscale must be [min, max, every_iterations] or empty, got %r'
                         % (value,))
    return tuple(int(v) for v in value)


def _bool(value):
    # bool('false') would be True: accept only real booleans.
    if not isinstance(value, bool):
        raise ValueError('expected true or false, got %r' % (value,))
    return value


# TOML keys and how to convert them; 'name' comes from the file name, 'n_gpus' from load().
_CONVERT = {
    'paper': str, 'model': str, 'dataset': str, 'n_class': int, 'n_train': int,
    'published_gpus': lambda v: tuple(int(x) for x in v),
    'batchsize_per_gpu': int, 'epochs': int, 'eta': float, 'lr_rule': str,
    'reference_batch': lambda v: None if v is None else float(v),
    'warmup_hold_epochs': float, 'warmup_epochs': float, 'decay': str,
    'steps': lambda v: tuple(float(x) for x in v), 'step_factor': float,
    'poly_power': float, 'poly_from': str, 'burn_in_iterations': int,
    'momentum': float, 'weight_decay': float, 'insize': int, 'multiscale': _multiscale,
    'pretrained': _opt_str, 'transfer_layers': int, 'communicator': str,
    'allreduce_grad_dtype': _opt_str, 'cudnn_fast_bn': _bool, 'augmentation': str,
    'linear_from': float,
    'max_iterations': lambda v: None if v in (None, 0, _NONE_STRING) else int(v),
    'sampling_scale': lambda v: None if v in (None, _NONE_STRING) else float(v),
    'clip_frames': int, 'lars': _bool, 'parallelism': str,
    'loader_workers': lambda v: None if v in (None, _NONE_STRING) else int(v),
}
# Keys a file may leave out: the field's default applies. linear_from: epochs at the full rate
# before decay = "linear" (paper 002 A.1.2: 100); sampling_scale: "none" reads a fixed share
# per rank (papers 000, 001), a number draws ceil(scale * n_train / k) examples per rank and
# epoch (paper 002 sec. 3.2: 4); max_iterations: a run that stops after this many updates
# rather than after `epochs` (Darknet's max_batches; paper 002 sec. 3.3: 5,000);
# clip_frames: frames read per clip (paper 004 sec. 3.2; 0: an image model); lars: LARS in
# place of plain weight decay (papers 000 sec. 6 and 001 sec. 6 name it as future work);
# parallelism: the paper's mode of data parallelism (paper 003: asynchronous); loader_workers:
# loader processes per rank where the paper gives them (paper 004 sec. 4.2: 6).
_OPTIONAL_KEYS = ('reference_batch', 'augmentation', 'linear_from', 'sampling_scale',
                  'max_iterations', 'clip_frames', 'lars', 'parallelism', 'loader_workers')
_DERIVED = tuple(f.name for f in dataclasses.fields(Preset) if not f.init)


def names():
    """Names of the shipped presets (sorted), e.g. 'yolov2_voc_2018'."""
    return sorted(f[:-len('.toml')] for f in os.listdir(PRESET_DIR) if f.endswith('.toml'))


def preset_path(name):
    """Path of the TOML file of preset ``name``."""
    if name not in names():
        close = difflib.get_close_matches(str(name), names(), n=3)
        if close:  # a typo: the near names, not the whole list
            raise ValueError('unknown preset %r: did you mean %s? (docs/presets.md lists them '
                             'all)' % (name, ' or '.join(close)))
        raise ValueError('unknown preset %r; known presets: %s' % (name, ', '.join(names())))
    return os.path.join(PRESET_DIR, name + '.toml')


def read_file(path):
    """Raw values of one preset file (dict key -> converted value), checked for unknown and
    missing keys."""
    try:
        with open(path, 'rb') as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ValueError('preset file %s: not valid TOML: %s' % (path, e)) from e
    unknown = sorted(set(raw) - set(_CONVERT))
    if unknown:
        raise ValueError('preset file %s: unknown keys %s' % (path, unknown))
    missing = sorted(set(_CONVERT) - set(raw) - set(_OPTIONAL_KEYS))
    if missing:
        raise ValueError('preset file %s: missing keys %s' % (path, missing))
    values = {}
    for key, value in raw.items():
        try:
            values[key] = _CONVERT[key](value)
        except (TypeError, ValueError) as e:
            raise ValueError('preset file %s: bad value for %s: %r (%s)'
                             % (path, key, value, e)) from e
    return values


def load(name, n_gpus, **overrides):
    """The preset ``name`` for ``n_gpus`` GPUs, with fields replaced by ``overrides``.

    Overriding ``reference_batch`` alone switches ``lr_rule`` to 'custom'; overriding
    ``lr_rule`` recomputes ``reference_batch`` (e.g. ``lr_rule='literal_knEta'`` for paper 001's
    printed k*n*eta). Unknown keys and derived fields (global_batchsize, peak_lr,
    warmup_start_lr, batch_fraction) raise TypeError.
    """
    path = preset_path(name)
    bad = sorted(k for k in overrides if k in _DERIVED)
    if bad:
        raise TypeError('preset %s: %s are derived from other fields and cannot be overridden '
                        '(set n_gpus, batchsize_per_gpu, eta, lr_rule or reference_batch)'
                        % (name, bad))
    unknown = sorted(k for k in overrides if k not in _CONVERT)
    if unknown:
        raise TypeError('preset %s: unknown override keys %s; known keys: %s'
                        % (name, unknown, ', '.join(sorted(_CONVERT))))
    values = read_file(path)
    if 'reference_batch' in overrides and 'lr_rule' not in overrides:
        values['lr_rule'] = 'custom'
    if 'lr_rule' in overrides and 'reference_batch' not in overrides:
        values.pop('reference_batch', None)
    for key, value in overrides.items():
        try:
            values[key] = _CONVERT[key](value)
        except (TypeError, ValueError) as e:
            raise ValueError('preset %s: bad override %s=%r (%s)' % (name, key, value, e)) from e
    return Preset(name=name, n_gpus=int(n_gpus), **values)


def _fmt(x):
    return '%g' % x


def describe(name):
    """Main settings of preset ``name`` as strings (column -> cell) for README/docs tables."""
    p = load(name, 1)
    formula = LR_RULE_FORMULAS.get(p.lr_rule, 'η·kn/%g' % p.reference_batch)
    peaks = [load(name, k).peak_lr for k in p.published_gpus]
    if p.decay == 'step':
        decay = 'x%s at %s' % (_fmt(p.step_factor), ', '.join(_fmt(s) for s in p.steps))
    elif p.decay == 'poly':
        decay = 'poly power %s' % _fmt(p.poly_power)
    elif p.decay == 'linear':
        decay = 'linear to 0 from %s' % _fmt(p.linear_from)
    else:
        decay = 'none'
    if p.warmup_epochs > 0:
        warmup = 'η for %s, linear to peak at %s' % (_fmt(p.warmup_hold_epochs),
                                                     _fmt(p.warmup_epochs))
    else:
        warmup = 'none'
    ms = ('%d-%d every %d it.' % p.multiscale) if p.multiscale else 'off'
    pre = '%s (%d layers)' % (p.pretrained, p.transfer_layers) if p.pretrained else 'none'
    return {
        'preset': p.name,
        'paper': _paper_id(p.name),
        'model': p.model,
        'data': '%s (%s images, %d classes)' % (p.dataset, format(p.n_train, ','), p.n_class),
        'n/GPU': str(p.batchsize_per_gpu),
        'GPUs k': ', '.join(str(k) for k in p.published_gpus),
        'η': _fmt(p.eta),
        'lr': formula,
        'peak lr at k': ', '.join(_fmt(x) for x in peaks),
        'warmup (epochs)': warmup,
        'decay': decay,
        'epochs': str(p.epochs),
        'input': str(p.insize),
        'multi-scale': ms,
        'momentum / wd': '%s / %s%s' % (_fmt(p.momentum), _fmt(p.weight_decay),
                                        ' (LARS)' if p.lars else ''),
        'pretrained': pre,
        'allreduce': '%s, %s%s' % (p.communicator, p.allreduce_grad_dtype or 'float32',
                                   ', fast BN' if p.cudnn_fast_bn else ''),
    }


def _paper_id(name):
    """'000' / '001': the paper (numbered as in docs/papers.md) cited on the preset file's
    ``paper =`` line, or '-' for a preset that reproduces no paper (the demo)."""
    with open(preset_path(name), encoding='utf-8') as f:
        for line in f:
            match = re.match(r'paper\s*=.*#\s*paper (\d{3})', line)
            if match:
                return match.group(1)
    return '-'


def table(preset_names=None):
    """Markdown table of ``describe`` for the given presets (all by default)."""
    rows = [describe(n) for n in (preset_names or names())]
    cols = list(rows[0])
    lines = ['| ' + ' | '.join(cols) + ' |', '| ' + ' | '.join('---' for _ in cols) + ' |']
    lines += ['| ' + ' | '.join(r[c] for c in cols) + ' |' for r in rows]
    return '\n'.join(lines) + '\n'
