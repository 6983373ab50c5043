"""Checkpoints as plain dicts of tensors and Python values, written atomically.

Loadable with `torch.load(path, map_location="cpu", weights_only=True)`, written with
`util.atomic` (temp file, fsync, rename), so a crash never leaves a half-written one.
"""
import os
import random

import numpy as np
import torch

from util.atomic import atomic_save, atomic_write_json, atomic_write_text, remove_stale_temp_files  # noqa: F401
from util.errors import UsageError


def load_checkpoint(path, what="checkpoint", trust=False):
    """Load a checkpoint on the CPU; one-line UsageError when it is missing or unreadable."""
    if not os.path.isfile(path):
        raise UsageError(f"{what} '{path}' does not exist; check the path")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except Exception as e:
        text = str(e).strip()
        first = " ".join(text.splitlines()[0].split()) if text else type(e).__name__
        if "weights_only" in text or "Unsupported global" in text:
            raise UsageError(f"{what} '{path}' holds pickled Python objects, not only tensors; if you trust "
                             f"the file, add --trust_checkpoint") from None
        raise UsageError(f"{what} '{path}' is not a readable PyTorch checkpoint (truncated or corrupt?): "
                         f"{first[:160]}") from None


def plain(value):
    """Arguments as JSON/weights_only-safe plain Python values."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


# ---------------------------------------------------------------------------------------
# Random number generators
# ---------------------------------------------------------------------------------------
def capture_rng():
    """Every global RNG that can affect training, as weights_only-safe values.

    torch CPU and every CUDA device, plus Python's `random` and NumPy's legacy global
    generator (used by third-party transforms). The loaders' own generators are saved
    by the loaders' state_dict.
    """
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    version, internal, gauss = random.getstate()
    state["python"] = {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss}
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state["numpy"] = {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    return state


def restore_rng(state):
    """Inverse of `capture_rng`."""
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        for index, device_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(device_state.cpu(), index)
    if "python" in state:
        p = state["python"]
        random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
    if "numpy" in state:
        n = state["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                             n["cached_gaussian"]))
