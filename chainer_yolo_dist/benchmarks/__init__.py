"""Measurement code behind ``scripts/bench_*.py`` and ``scripts/benchmark.py``: the training
step phase by phase (:mod:`.train_step`) and data loading per core (:mod:`.loader`). It may
import any system; nothing imports it."""
