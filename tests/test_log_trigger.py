"""The log's rows: every log interval, after every evaluation (so that a validation is logged
at the update it was computed after) and after the last update."""
import types

import pytest

from chainer_yolo_dist.core.reporting import LogTrigger


def _fired(trigger, per_epoch, iterations):
    updater = types.SimpleNamespace(iteration=0, epoch_detail=0.0, previous_epoch_detail=None)
    trainer = types.SimpleNamespace(updater=updater)
    fired = []
    for i in range(1, iterations + 1):
        updater.iteration = i
        updater.previous_epoch_detail = (i - 1) / per_epoch
        updater.epoch_detail = i / per_epoch
        if trigger(trainer):
            fired.append(i)
    return fired


@pytest.mark.parametrize('eval_interval, stop, expected', [
    # 8 iterations an epoch, validation every epoch: rows at 8 and 16, not at 10 and 20 only.
    (1, (18, 'iteration'), [5, 8, 10, 15, 16, 18]),
    (0, (20, 'iteration'), [5, 10, 15, 20]),
    (0.5, (2.25, 'epoch'), [4, 5, 8, 10, 12, 15, 16, 18]),
])
def test_rows_at_the_interval_at_each_evaluation_and_at_the_end(eval_interval, stop, expected):
    settings = types.SimpleNamespace(log_interval=5, eval_interval=eval_interval,
                                     stop_trigger=stop)
    assert _fired(LogTrigger(settings), 8, 18 if stop[1] == 'epoch' else stop[0]) == expected
