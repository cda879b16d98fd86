"""Which GPU each rank trains on, and which communicators may touch device memory.

A cluster job runs one MPI rank per GPU. Two launch styles must both work:

* every rank sees all of its node's GPUs (``mpiexec -n 8`` on a 4-GPU node pair): rank ``r``
  of a node takes GPU ``r``;
* every rank sees only its own GPU (Slurm ``--gpus-per-task=1``, a per-task
  ``CUDA_VISIBLE_DEVICES``): every rank takes GPU 0 of its own view, a different physical GPU.

:func:`choose_gpu` covers both (the rank's index among the node's *training* ranks, modulo
the GPUs it sees); :func:`refuse_shared_gpus` then compares the (host, PCI bus id) of every
rank's GPU, so a launch that puts two ranks on one GPU stops with one line before training.
Parameter-server ranks (``--parallelism async``) train nothing and take no GPU: counting them
would move every worker of the node one GPU up, past the last one.

The MPI that ``make setup`` installs (MPICH from PyPI) is not CUDA-aware: device memory must
reach other ranks through NCCL or through host copies (:mod:`.persistents`,
:mod:`.flat`). ChainerMN's MPI-based communicators (``naive``, ``flat``, ``hierarchical``, ...)
hand CuPy pointers to MPI, so a GPU run uses ``pure_nccl`` (:data:`GPU_COMMUNICATORS`), and
``naive`` means training on the CPU.
"""
import collections
import socket

import chainer
import numpy as np

#: Communicators a run on GPUs may use: they reduce device memory through NCCL only.
GPU_COMMUNICATORS = ('pure_nccl',)
#: Communicators a run on CPUs may use (``naive`` on a GPU node also trains on the CPU).
CPU_COMMUNICATORS = ('naive',)


def gpu_count():
    """The number of CUDA devices this process sees: 0 without CuPy, without a driver, or
    with none visible (a CPU node with CuPy installed is a CPU node)."""
    try:
        from chainer.backends import cuda
        if not cuda.available:
            return 0
        return int(cuda.cupy.cuda.runtime.getDeviceCount())
    except Exception:  # no driver, no device, a broken CuPy: every one of them means no GPU
        return 0


def check_communicator(name, explicit, gpus):
    """Raises ValueError when communicator ``name`` cannot run on this node.

    Args:
        name (str): the communicator in force.
        explicit (bool): the user named it (``--communicator``), rather than the preset.
        gpus (int): :func:`gpu_count`.
    """
    if gpus == 0 and name != 'naive':
        if name == 'pure_nccl' and explicit:
            raise ValueError('--communicator pure_nccl needs a CUDA GPU, and this node has '
                             'none (no CuPy, no driver or no visible device): leave '
                             '--communicator out, or use naive, on CPUs')
        if name not in GPU_COMMUNICATORS:
            raise ValueError('--communicator %s is not available: use pure_nccl on GPUs or '
                             'naive on CPUs' % name)
    if gpus > 0 and name not in GPU_COMMUNICATORS + CPU_COMMUNICATORS:
        raise ValueError('--communicator %s would hand GPU memory to MPI, and this MPI is not '
                         'CUDA-aware: use pure_nccl (the default with GPUs), or naive to '
                         'train on the CPU' % name)


def training_local_ranks(hosts, trains):
    """Each rank's index among the ranks that train on its node, or -1 for one that does not.

    Args:
        hosts (list of str): every rank's host name, in world-rank order.
        trains (list of bool): whether each rank trains (False: a parameter server).
    Returns:
        list of int, one per rank.
    """
    seen = collections.Counter()
    out = []
    for host, training in zip(hosts, trains):
        if training:
            out.append(seen[host])
            seen[host] += 1
        else:
            out.append(-1)
    return out


def choose_gpu(local_rank, gpus):
    """The GPU id of a training rank: its index among its node's training ranks modulo the
    GPUs it sees (``gpus == 1`` under one-GPU-per-task launchers gives 0 to every rank)."""
    if gpus < 1:
        raise ValueError('no GPU visible to choose from')
    return local_rank % gpus


def pci_bus_id(device_id):
    """The PCI bus id of GPU ``device_id`` as CUDA names it (e.g. '0000:3B:00.0'): the same
    physical GPU has the same id whatever ``CUDA_VISIBLE_DEVICES`` each rank was given."""
    from chainer.backends import cuda
    return cuda.cupy.cuda.Device(device_id).pci_bus_id


def refuse_shared_gpus(places):
    """Raises ValueError naming the first two ranks that share a GPU.

    Args:
        places (list): per world rank, ``(host, pci_bus_id)`` of its GPU, or None for a rank
            without one.
    """
    first = {}
    for rank, place in enumerate(places):
        if place is None:
            continue
        if place in first:
            raise ValueError(
                'ranks %d and %d would share GPU %s on %s: start one rank per GPU (as many '
                'ranks per node as GPUs, or one visible GPU per rank)'
                % (first[place], rank, place[1], place[0]))
        first[place] = rank


def select_device(mpi_comm, trains, gpus):
    """This rank's GPU id (-1 for a rank that does not train), chosen as :func:`choose_gpu`
    says and checked against every other rank's (a collective over ``mpi_comm``: every rank
    must call it). Host names and bus ids travel as pickled Python objects, host memory."""
    host = socket.gethostname()
    hosts = mpi_comm.allgather(host)
    flags = mpi_comm.allgather(bool(trains))
    local = training_local_ranks(hosts, flags)[mpi_comm.rank]
    device = choose_gpu(local, gpus) if trains else -1
    place = (host, pci_bus_id(device)) if device >= 0 else None
    places = mpi_comm.allgather(place)
    refuse_shared_gpus(places)
    return device


def images_to_device(images, device):
    """A batch of images as the networks take it, converted on ``device``.

    Args:
        images: N arrays ``(3, H, W)`` RGB in [0, 255], uint8 or real.
        device: a Chainer device specifier (None or -1: the host).
    Returns:
        float32 ``(N, 3, H, W)`` in [0, 1] on ``device``. The batch crosses to the device in
        its own dtype (uint8 is a quarter of float32's bytes) and is divided there: the same
        float32 division as on the host, so the same numbers on every device.
    """
    x = chainer.dataset.to_device(device, np.stack(images))
    x = x.astype(np.float32, copy=False)
    x /= 255
    return x
