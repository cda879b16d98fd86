"""What a run reports: observations averaged over ranks, and rank 0's log, table and plots.

Every rank computes its own loss on its own examples; ChainerMN's ``ObservationAggregator``
replaces each reported value by its mean over the ranks, so rank 0's ``log`` (LogReport) and
plots show the mean of the global batch, the number one process with the whole batch reports.
"""
import os
import sys

import chainer
from chainer.training import extensions

from chainer_yolo_dist.core import plotting
from chainer_yolo_dist.core.updaters import PHASES


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


def run_title(settings, what=None):
    """The title of a run's figures: model (or ``what``), mode, k and peak rate
    (:func:`~chainer_yolo_dist.core.plotting.run_title`)."""
    return plotting.run_title(what or settings.preset.model, settings.parallelism,
                              settings.workers, settings.preset.peak_lr)


def epoch_axis(iterations_per_epoch, ylabel, title=None):
    """PlotReport postprocess: the iteration axis labelled in (fractional) epochs, ticks at
    round epochs inside the limits (also for a run of a fraction of an epoch), markers on a
    short series, the y label and a title."""
    def postprocess(figure, axes, summary):
        axes.set_xlim(left=0)  # from the start: one point sits at its epoch, not centred
        plotting.epoch_ticks(axes, iterations_per_epoch)
        plotting.finish(axes, title, 'epoch', ylabel)
    return postprocess


def loss_plot(keys, settings, iterations_per_epoch):
    """``loss.png``: the losses ``keys`` (mean over ranks) against the fractional epoch,
    titled with the run (:func:`run_title`)."""
    return extensions.PlotReport(list(keys), 'iteration', filename='loss.png', marker=None,
                                 trigger=(settings.log_interval, 'iteration'),
                                 postprocess=epoch_axis(iterations_per_epoch,
                                                        'loss (mean over ranks)',
                                                        run_title(settings)))


def titled(title, ylabel, ylim=None):
    """PlotReport postprocess: a title, a y label, markers on a short series and optionally
    fixed y limits."""
    def postprocess(figure, axes, summary):
        plotting.finish(axes, title, 'epoch', ylabel)
        if ylim is not None:
            axes.set_ylim(*ylim)
    return postprocess


class LogTrigger(object):
    """Fires every ``settings.log_interval`` iterations, after every evaluation (every
    ``settings.eval_interval`` epochs, as the evaluator's ``IntervalTrigger``) and after the
    last update, so that a validation is logged at the iteration it was computed after, not at
    the next multiple of the log interval. Stateless (reads the updater's iteration and
    epochs), so a resumed run needs nothing from the snapshot."""

    def __init__(self, settings):
        self.every = settings.log_interval
        self.eval_every = settings.eval_interval
        self.stop = settings.stop_trigger

    def __call__(self, trainer):
        updater = trainer.updater
        if updater.iteration % self.every == 0:
            return True
        now, before = updater.epoch_detail, updater.previous_epoch_detail
        if before is None:
            return False
        if self.eval_every and before // self.eval_every != now // self.eval_every:
            return True
        length, unit = self.stop
        if unit == 'iteration':
            return updater.iteration == length
        return before < length <= now


def add_rank0_reports(trainer, settings, comm, columns, plots=(), make_trigger=None):
    """On rank 0: ``log`` every ``settings.log_interval`` iterations, after each evaluation and
    after the last update (:class:`LogTrigger`; or when the trigger
    ``make_trigger()`` returns fires), the printed table of ``columns`` (with the elapsed time),
    the given ``PlotReport`` extensions, and a progress bar where someone watches a terminal.
    ``make_trigger`` is called once per extension: Chainer's ``IntervalTrigger`` keeps the
    iteration it last saw, so one instance shared by two extensions fires for the first only."""
    if comm.rank != 0:
        return
    make_trigger = make_trigger or (lambda: LogTrigger(settings))
    trainer.extend(extensions.LogReport(trigger=make_trigger()))
    trainer.extend(extensions.PrintReport(list(columns) + ['elapsed_time'],
                                          out=_PlainOutput()), trigger=make_trigger())
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


#: Profile phases (``DataParallelUpdater(profile=True)``'s ``time/<phase>``) by kind, as paper
#: 004 Table 4 splits a run's time: compute (forward, backward, optimizer update) against
#: communication (the gradients' AllReduce). Data wait is neither and is reported apart.
COMPUTE_PHASES = ('forward', 'backward', 'update')
COMMUNICATION_PHASES = ('allreduce',)
#: The trainer's name of the :class:`ProfileRecorder` (``core.run.build_trainer`` adds it).
PROFILE_EXTENSION = 'profile'


class ProfileRecorder(chainer.training.Extension):
    """Keeps this rank's ``time/<phase>`` of every iteration (extension on every rank; it only
    reads the trainer's observation, no collective). :meth:`write` gathers every rank's rows
    on rank 0, which writes ``profile.json`` and returns :func:`profile_summary`."""

    trigger = 1, 'iteration'
    priority = chainer.training.PRIORITY_EDITOR  # before aggregation replaces the values

    def __init__(self):
        self.rows = []

    def __call__(self, trainer):
        obs = trainer.observation
        if 'time/step' not in obs:
            return
        row = {'iteration': trainer.updater.iteration}
        for phase in PHASES + ('step',):
            row[phase] = float(obs['time/' + phase])
        self.rows.append(row)

    def write(self, comm, out):
        """Collective: rank 0 writes ``out/profile.json`` (per rank, per iteration rows and
        the summary) and returns the summary; other ranks return None."""
        from chainer_yolo_dist.core import atomic
        ranks = comm.gather_obj(self.rows)
        if comm.rank != 0:
            return None
        summary = profile_summary(ranks)
        atomic.write_json(os.path.join(out, 'profile.json'),
                          {'summary': summary, 'phases': list(PHASES), 'ranks': ranks})
        return summary


def profile_summary(ranks, skip_first=1):
    """Per rank and over all ranks: seconds per iteration of each phase, and the shares of
    the time in paper 004 Table 4's form.

    Args:
        ranks (list): per rank, the rows of :class:`ProfileRecorder` (dicts of phase seconds).
        skip_first (int): iterations left out at the start of each rank's rows (the first
            includes start-up: the loader's first batch, lazy allocations).
    Returns:
        dict: ``per_rank`` (mean seconds per phase and iteration), ``mean`` (over ranks),
        ``shares`` (of the step time: data, compute, communication) and ``table4`` (compute
        and communication shares of their sum, as paper 004 Table 4 reports them).
    """
    per_rank = []
    for rows in ranks:
        kept = rows[skip_first:] if len(rows) > skip_first else rows
        means = {phase: sum(r[phase] for r in kept) / max(len(kept), 1)
                 for phase in PHASES + ('step',)}
        means['iterations'] = len(kept)
        per_rank.append(means)
    mean = {phase: sum(r[phase] for r in per_rank) / len(per_rank)
            for phase in PHASES + ('step',)}
    compute = sum(mean[p] for p in COMPUTE_PHASES)
    communication = sum(mean[p] for p in COMMUNICATION_PHASES)
    step = max(mean['step'], 1e-12)
    both = max(compute + communication, 1e-12)
    return {'per_rank': per_rank, 'mean': mean, 'skipped_first_iterations': skip_first,
            'shares': {'data': mean['data'] / step, 'compute': compute / step,
                       'communication': communication / step},
            'table4': {'compute': compute / both, 'communication': communication / both}}


def format_profile(summary):
    """Lines for rank 0's output: the phase means and Table 4's two shares."""
    m = summary['mean']
    lines = ['profile, seconds per iteration (mean over %d ranks): %s'
             % (len(summary['per_rank']),
                ', '.join('%s %.4f' % (p, m[p]) for p in PHASES + ('step',)))]
    lines.append('profile, paper 004 Table 4 form: compute %.1f%%, communication %.1f%% '
                 '(data wait %.1f%% of the step apart)'
                 % (100 * summary['table4']['compute'],
                    100 * summary['table4']['communication'], 100 * summary['shares']['data']))
    return lines


def write_profile(trainer, settings, comm, log=print):
    """After ``trainer.run()``, with ``settings.profile``: every rank's phase times gathered
    into ``profile.json`` and the summary logged by rank 0 (collective; every rank calls it).
    Returns the summary on rank 0, None elsewhere or without ``--profile``."""
    if not settings.profile:
        return None
    summary = trainer.get_extension(PROFILE_EXTENSION).write(comm, settings.out)
    if summary is not None:
        for line in format_profile(summary):
            log(line)
    return summary
