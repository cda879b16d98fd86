"""argparse types of the numeric options: a finite number within bounds, refused otherwise in
one line that names the option the user typed.

Every training script's numbers go through these (``core/cli.py``, the modes' options in
``core/parallelism/modes.py``, the scripts' own), so a negative batch, a zero interval, a
rate of ``nan`` or a dropout of 1.5 is refused while the options are parsed, before anything
is written or any process communicates.
"""
import argparse


class Bounded:
    """argparse type: a finite ``int`` or ``float`` within bounds, refused otherwise with a
    message that argparse prefixes with the option the user typed (``argument --batchsize:
    expected an integer >= 1, got '-4'``).

    ``low`` / ``high`` (None: unbounded) are inclusive unless ``low_open`` / ``high_open``;
    the attributes are public so that a test can derive the values each option refuses.
    """

    def __init__(self, kind, low=None, high=None, low_open=False, high_open=False):
        self.kind, self.low, self.high = kind, low, high
        self.low_open, self.high_open = low_open, high_open

    def describe(self):
        """The accepted values in words, e.g. ``an integer >= 1``, ``a number in [0, 1)``."""
        what = 'an integer' if self.kind is int else 'a number'
        number = '%d' if self.kind is int else '%g'
        if self.low is not None and self.high is not None:
            return ('%s in %s' + number + ', ' + number + '%s') % (
                what, '(' if self.low_open else '[', self.low, self.high,
                ')' if self.high_open else ']')
        if self.low is not None:
            return ('%s %s ' + number) % (what, '>' if self.low_open else '>=', self.low)
        if self.high is not None:
            return ('%s %s ' + number) % (what, '<' if self.high_open else '<=', self.high)
        return 'a finite number' if self.kind is float else what

    def __call__(self, text):
        try:
            value = self.kind(text)
        except ValueError:
            value = None
        # float() takes 'nan' and 'inf', which no option means.
        if value is None or value != value or value in (float('inf'), float('-inf')) or (
                self.low is not None and (value < self.low or self.low_open and
                                          value == self.low)) or (
                self.high is not None and (value > self.high or self.high_open and
                                           value == self.high)):
            raise argparse.ArgumentTypeError('expected %s, got %r' % (self.describe(), text))
        return value

    def __repr__(self):
        return 'Bounded(%s)' % self.describe()


#: The argparse types of most numeric options.
COUNT = Bounded(int, 1)  # a size or a number of things: at least one
NATURAL = Bounded(int, 0)  # zero means off or none
SEED = Bounded(int, 0, 2 ** 32 - 1)  # NumPy's seeds
POSITIVE = Bounded(float, 0, low_open=True)
NON_NEGATIVE = Bounded(float, 0)  # zero means off or none
FRACTION = Bounded(float, 0, 1, high_open=True)  # a probability or momentum
