"""The shared distributed-training machinery every system composes.

It imports no system (``detection``, ``classification``, ...) and nothing from ``analysis``.
One idea per module:

- :mod:`.mpi`: start-up order (forkserver before MPI), the ChainerMN communicator, ending the
  whole job when any rank fails;
- :mod:`.presets`: the papers' settings read from ``chainer_yolo_dist/presets/*.toml``;
- :mod:`.settings`: the one frozen run-settings object, built once;
- :mod:`.cli`: the command-line options every training script shares;
- :mod:`.sharding`, :mod:`.sampling`, :mod:`.iterators`: each rank's share of the data,
  reproducible epochs and augmentation streams, the iterators over them;
- :mod:`.optimizers`, :mod:`.schedules`, :mod:`.updaters`: the multi-node optimizer, the
  learning-rate schedule and the extension that applies it, the updater;
- :mod:`.finite`: the guards that keep non-finite values out of updates and files;
- :mod:`.atomic`: every file the package writes is written whole or not at all;
- :mod:`.snapshots`, :mod:`.reporting`, :mod:`.run`: snapshots and resume, rank-0 logs and
  plots, and the trainer assembled from all of the above.
"""
