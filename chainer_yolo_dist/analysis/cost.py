"""The billing model of paper 000, sec. 5.4: cost = time / 3600 x nodes x c.

ABCI bills whole nodes of 4 GPUs, so a run on k GPUs pays for ceil(k / 4) nodes; one GPU
is billed as one node. ``c`` (``node_hour_price``) is the price of one node-hour; with the
default 1.0 the cost comes out in units of c, as the paper's tables print it.
"""
import math


def nodes(gpus, gpus_per_node=4):
    """Number of billed nodes for ``gpus`` GPUs: ``ceil(gpus / gpus_per_node)``."""
    if int(gpus) != gpus or gpus < 1:
        raise ValueError('gpus must be a positive integer, got %r' % (gpus,))
    if int(gpus_per_node) != gpus_per_node or gpus_per_node < 1:
        raise ValueError('gpus_per_node must be a positive integer, got %r' % (gpus_per_node,))
    return math.ceil(int(gpus) / int(gpus_per_node))


def cost(time_s, gpus, gpus_per_node=4, node_hour_price=1.0):
    """Price of a run: ``time_s / 3600 * nodes(gpus) * node_hour_price``.

    Args:
        time_s: wall-clock time of the run in seconds (>= 0).
        gpus: GPUs used (one MPI process each).
        gpus_per_node: GPUs per billed node (4 on ABCI).
        node_hour_price: price of one node-hour, ``c`` in the paper.
    """
    if time_s < 0:
        raise ValueError('time_s must be >= 0, got %r' % (time_s,))
    return time_s / 3600.0 * nodes(gpus, gpus_per_node) * node_hour_price
