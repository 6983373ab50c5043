"""The few collectives the models' state needs under `torch.distributed` (no-ops alone).

Memory banks (CRD, PACKD) must stay one bank on every rank: each rank updates them with
the rows of the whole global batch, gathered here. Everything is a no-op when no
process group is initialised, so single-process runs are unchanged bit for bit.
"""
import torch
import torch.distributed as dist


def world_size():
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank():
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


@torch.no_grad()
def gather_rows(*tensors):
    """Concatenate each tensor's rows over all ranks, in rank order (the same on every rank).

    Ranks may hold different row counts (the last batch of an epoch): the sizes are
    exchanged first and the rows padded to the largest, then trimmed."""
    if world_size() == 1:
        return tensors if len(tensors) > 1 else tensors[0]
    n = world_size()
    local = torch.tensor([tensors[0].shape[0]], device=tensors[0].device)
    sizes = [torch.zeros_like(local) for _ in range(n)]
    dist.all_gather(sizes, local)
    sizes = [int(s) for s in sizes]
    biggest = max(sizes)
    out = []
    for t in tensors:
        padded = t.new_zeros((biggest, *t.shape[1:]))
        padded[:t.shape[0]] = t
        parts = [torch.empty_like(padded) for _ in range(n)]
        dist.all_gather(parts, padded.contiguous())
        out.append(torch.cat([p[:s] for p, s in zip(parts, sizes)]))
    return tuple(out) if len(out) > 1 else out[0]


@torch.no_grad()
def mean_over_ranks(t):
    """The mean of `t` over ranks (in place, returned); `t` unchanged alone."""
    if world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t.div_(world_size())
    return t


@torch.no_grad()
def sum_over_ranks(t):
    if world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t
