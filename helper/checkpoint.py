"""Checkpoints as plain dicts of tensors and Python values, written atomically.

Loadable with `torch.load(path, map_location="cpu", weights_only=True)`. A crash while
writing leaves the previous file intact: we write a temp file in the same folder,
fsync it, then rename it over the target.
"""
import json
import os
import tempfile

import torch


def atomic_save(obj, path):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".pth", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(obj, path):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".json", dir=folder)
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh, indent=1, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)


def load_checkpoint(path, what="checkpoint", trust=False):
    """Load a checkpoint on the CPU; one-line UsageError when it is missing or unreadable."""
    from helper.errors import UsageError
    if not os.path.isfile(path):
        raise UsageError(f"{what} '{path}' does not exist; check the path")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            raise UsageError(f"{what} '{path}' holds pickled Python objects, not only tensors; if you trust "
                             f"the file, add --trust_checkpoint") from None
        raise UsageError(f"{what} '{path}' is not a readable PyTorch checkpoint (truncated or corrupt?): {msg[:160]}") from None


def plain(value):
    """Arguments as JSON/weights_only-safe plain Python values."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
