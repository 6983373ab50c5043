"""Autocast in one place, so the loop, the teacher and the benchmark agree on it."""
import contextlib

import torch


def autocast_context(device, amp):
    """bf16 autocast on `device` when `amp`, else a null context.

    A null context (not `autocast(enabled=False)`) keeps an autocast that is already
    active, e.g. `--amp` around a teacher that has no bf16 setting of its own.
    """
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
