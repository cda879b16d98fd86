"""Guards that keep NaN and infinity out of updates and out of every file the package writes.

A diverged run (paper 001's YOLOv2 at 96 GPUs) must stop with the iteration named, before the
update that would spread the non-finite values, and must leave no snapshot or model file
holding them.
"""
import numpy as np


class NonFiniteError(FloatingPointError):
    """A loss or a parameter is NaN or infinite; the message names what and where."""


class NonFiniteLossError(NonFiniteError):
    """The loss of the update about to be made is NaN or infinite."""


def check_loss(loss, iteration, parts=None):
    """Raises :class:`NonFiniteLossError` naming ``iteration`` if ``loss`` is not finite.

    Args:
        loss (float): the scalar loss of the update about to be made.
        iteration (int or None): the number of that update (1 for the first); None when no
            updater has set it (a chain called on its own): the message then says so.
        parts (dict or None): named parts of the loss, shown in the message.
    """
    if np.isfinite(loss):
        return
    detail = ''
    if parts:
        detail = '; %s' % ', '.join('%s %s' % (k, v) for k, v in parts.items())
    if iteration is None:
        raise NonFiniteLossError('non-finite loss %s at an iteration no updater named%s; no '
                                 'update was made with it' % (loss, detail))
    after = ('the weights after update %d' % (iteration - 1) if iteration > 1
             else 'the initial weights')
    raise NonFiniteLossError('non-finite loss %s at iteration %d (computed on %s%s); training '
                             'stopped before update %d, no file holds non-finite weights'
                             % (loss, iteration, after, detail, iteration))


def non_finite_params(link):
    """Names of the parameters and persistent arrays of ``link`` that hold NaN or infinity."""
    xp = link.xp
    bad = [name for name, param in link.namedparams()
           if param.array is not None and not bool(xp.isfinite(param.array).all())]
    for name, value in _namedpersistents(link):
        if getattr(value, 'dtype', None) is not None and value.dtype.kind == 'f' \
                and not bool(xp.isfinite(value).all()):
            bad.append(name)
    return bad


def _namedpersistents(link):
    for path, child in ([('', link)] + [(p, c) for p, c in _namedlinks(link)]):
        for name in child._persistent:
            yield path + '/' + name, getattr(child, name)


def _namedlinks(link):
    return [(p, c) for p, c in link.namedlinks(skipself=True)]


def require_finite(link, what, iteration=None):
    """Raises :class:`NonFiniteError` if ``link`` holds a non-finite value; returns True.

    ``what`` says which file was about to be written ("model.npz", "a snapshot").
    """
    bad = non_finite_params(link)
    if bad:
        at = '' if iteration is None else ' at iteration %d' % iteration
        raise NonFiniteError('%d arrays are not finite%s (first: %s): refusing to write %s'
                             % (len(bad), at, bad[0], what))
    return True
