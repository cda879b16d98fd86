"""Two or more real ranks choose their GPUs with core.devices.select_device.

No GPU is needed: the PCI bus id of "GPU d" is faked as a function of d alone, as on one node
where every rank sees the same GPUs. Rank 0 prints one JSON line per rank and case (gathered,
so lines never interleave):
``{"rank": r, "case": name, "device": d}`` or ``{"rank": r, "case": name, "error": msg}``.
"""
import json
import sys

from mpi4py import MPI

from chainer_yolo_dist.core import devices

devices.pci_bus_id = lambda device: '0000:%02X:00.0' % (0x10 + device)
comm = MPI.COMM_WORLD
cases = {
    # name: (trains, gpus visible to each rank)
    'one_gpu_per_rank': (True, comm.size),
    'one_visible_gpu_shared': (True, 1),
    'server_rank_takes_none': (comm.rank > 0, 1),  # rank 0 serves (async), rank 1 trains
}
for name, (trains, gpus) in cases.items():
    try:
        out = {'device': devices.select_device(comm, trains, gpus)}
    except ValueError as e:
        out = {'error': str(e)}
    rows = comm.gather(dict(out, rank=comm.rank, case=name))
    for row in rows or ():  # None on the other ranks
        print(json.dumps(row), flush=True)
sys.exit(0)
