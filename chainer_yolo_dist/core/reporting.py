"""What a run reports: observations averaged over ranks, and rank 0's log, table and plots.

Every rank computes its own loss on its own examples; ChainerMN's ``ObservationAggregator``
replaces each reported value by its mean over the ranks, so rank 0's ``log`` (LogReport) and
plots show the mean of the global batch, the number one process with the whole batch reports.
"""
import sys

import chainer
from chainer.training import extensions


class _PlainOutput(object):
    """Standard output without PrintReport's terminal escape (ESC[J), which would end up in
    log files and CI output, and flushed after every row."""

    def write(self, text):
        if text != '\033[J':
            sys.stdout.write(text)
            if text.endswith('\n'):
                sys.stdout.flush()  # a row as soon as it is complete, also into a log file

    def flush(self):
        sys.stdout.flush()


def aggregate(trainer, comm, keys):
    """Averages each observation in ``keys`` over the ranks, every iteration (collective)."""
    import chainermn

    class Aggregator(chainermn.extensions.ObservationAggregator):
        # ChainerMN 7.8.1 moves a reported Variable to the ChainerX device 'native', which
        # fails without ChainerX: a Variable (as chainer.report passes on) is averaged as its
        # array.
        def compute_summary(self, trainer):
            value = trainer.observation.get(self.original_key)
            if isinstance(value, chainer.Variable):
                trainer.observation[self.original_key] = value.array
            return super().compute_summary(trainer)

    for key in keys:
        trainer.extend(Aggregator(comm, key), name='aggregate_' + key.replace('/', '_'))


def epoch_axis(iterations_per_epoch, ylabel):
    """PlotReport postprocess: label the iteration axis in (fractional) epochs."""
    def postprocess(figure, axes, summary):
        from matplotlib.ticker import FuncFormatter, MultipleLocator
        epochs = axes.get_xlim()[1] / iterations_per_epoch
        every = max(1, int(round(epochs / 8)))  # whole epochs, about 8 ticks
        axes.xaxis.set_major_locator(MultipleLocator(every * iterations_per_epoch))
        axes.xaxis.set_major_formatter(
            FuncFormatter(lambda x, _: '%g' % round(x / iterations_per_epoch, 2)))
        axes.set_xlabel('epoch')
        axes.set_ylabel(ylabel)
    return postprocess


def titled(title, ylabel, ylim=None):
    """PlotReport postprocess: a title, a y label and optionally fixed y limits."""
    def postprocess(figure, axes, summary):
        axes.set_title(title)
        axes.set_xlabel('epoch')
        axes.set_ylabel(ylabel)
        if ylim is not None:
            axes.set_ylim(*ylim)
        axes.grid(alpha=0.3)
    return postprocess


def add_rank0_reports(trainer, settings, comm, columns, plots=()):
    """On rank 0: ``log`` every ``settings.log_interval`` iterations, the printed table of
    ``columns`` (with the elapsed time), the given ``PlotReport`` extensions, and a progress
    bar where someone watches a terminal."""
    if comm.rank != 0:
        return
    trigger = (settings.log_interval, 'iteration')
    trainer.extend(extensions.LogReport(trigger=trigger))
    trainer.extend(extensions.PrintReport(list(columns) + ['elapsed_time'],
                                         out=_PlainOutput()), trigger=trigger)
    for plot in plots:
        trainer.extend(plot)
    if settings.progress:
        trainer.extend(extensions.ProgressBar(update_interval=1))


def run_metrics(trainer, settings):
    """What every run's ``metrics.json`` holds, read just after ``trainer.run()``: epochs and
    iterations done, wall time (the trainer's clock, resumed runs included) and examples per
    second over all workers (the same on every rank: the ranks move in lockstep)."""
    elapsed = trainer.elapsed_time
    examples = trainer.updater.iteration * settings.batchsize * settings.workers
    return {'epochs': trainer.updater.epoch_detail, 'iterations': trainer.updater.iteration,
            'elapsed_seconds': elapsed, 'images_per_second': examples / max(elapsed, 1e-9),
            'comm_size': settings.ranks, 'workers': settings.workers}

