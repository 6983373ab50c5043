"""Several processes under `torchrun`: one per GPU (NCCL) or per CPU process (gloo).

`python train_*.py` alone runs one process and no process group, exactly as before.
Under `torchrun --nproc_per_node N` (one node or several: `--nnodes`, `--node_rank`,
rendezvous flags) each process trains on its slice of every global batch; gradients are
averaged by DistributedDataParallel, memory banks are updated with the whole global batch
(`util.dist.gather_rows`), evaluation is sharded and summed, and rank 0 alone writes files
and prints. A pre-training stage runs on rank 0 alone (on the whole data, as one process
would) and its result is broadcast, so every rank starts the main loop identical.
"""
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from util.errors import UsageError

# Other ranks wait in a collective while rank 0 runs a pre-training stage (PACKD's head:
# 60 epochs): the process group's timeout must outlast it.
DEFAULT_TIMEOUT_MIN = 180


@dataclass
class Processes:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def distributed(self):
        return self.world_size > 1


def launched_processes():
    """What torchrun says about this process (RANK / LOCAL_RANK / WORLD_SIZE); one process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Processes()
    return Processes(rank=int(os.environ["RANK"]), local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                     world_size=world)


def start(device, timeout_min=DEFAULT_TIMEOUT_MIN):
    """-> (Processes, this process's device). Joins the process group when torchrun started several
    processes: NCCL on CUDA (device cuda:LOCAL_RANK), gloo on the CPU."""
    procs = launched_processes()
    if not procs.distributed:
        return procs, device
    if device.type == "cuda":
        if procs.local_rank >= torch.cuda.device_count():
            raise UsageError(f"this node runs process {procs.local_rank} but sees {torch.cuda.device_count()} "
                             f"GPU(s); start torchrun with --nproc_per_node <= the visible GPUs")
        device = torch.device("cuda", procs.local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_min))
    return procs, device


def stop():
    """Leave the process group at the end of a run: all ranks meet first, so none tears its
    connections down while another still talks to it (gloo aborts the process otherwise)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        import gc
        gc.collect()  # DDP wrappers still referenced by a cycle must go before the group they use
        dist.destroy_process_group()


@torch.no_grad()
def broadcast_state(module, src=0):
    """Every parameter and buffer of `module` from rank `src` to all ranks (in place)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    for tensor in module.state_dict().values():
        dist.broadcast(tensor, src)


@torch.no_grad()
def broadcast_buffers(module, src=0):
    """Only the buffers (BatchNorm statistics) of `module` from rank `src`."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    for tensor in module.buffers():
        dist.broadcast(tensor, src)


def gather_objects(obj):
    """[obj of rank 0, obj of rank 1, ...] on every rank (small Python objects only)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier():
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def wrap_step(distiller):
    """Under torchrun: every rank takes rank 0's state, then `distiller.forward_train` is wrapped
    in DistributedDataParallel so that gradients are averaged over ranks; None in one process.

    Buffers are not broadcast each step: memory banks stay in sync by their own gathered
    updates, and BatchNorm statistics are per rank (as in any DDP run; --sync_bn syncs them).
    Pass the result as `step_module` to `helper.loops.train_epoch`. Used by the Trainer and
    by scripts/benchmark.py, so both time and train the same wrapped step."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    broadcast_state(distiller)
    from torch.nn.parallel import DistributedDataParallel
    return DistributedDataParallel(TrainStep(distiller), **_no_buffer_sync())


class TrainStep(torch.nn.Module):
    """`distiller.forward_train` as a module call, so DistributedDataParallel can wrap it."""

    def __init__(self, distiller):
        super().__init__()
        self.distiller = distiller

    def forward(self, batch):
        return self.distiller.forward_train(batch)


def _no_buffer_sync():
    """DDP's switch for "do not broadcast buffers every forward", under both spellings (newer
    torch renamed it; the GPU machines' 2.11 knows only the old one)."""
    import inspect
    from torch.nn.parallel import DistributedDataParallel
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters:
        return {"forward_sync_buffers": False}
    return {"broadcast_buffers": False}

