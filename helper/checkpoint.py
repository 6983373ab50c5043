"""Checkpoints as plain dicts of tensors and Python values, written atomically.

Loadable with `torch.load(path, map_location="cpu", weights_only=True)`. A crash while
writing leaves the previous file intact: we write a temp file in the same folder,
fsync it, then rename it over the target (and fsync the folder, so the rename itself
survives a power cut). A process killed mid-write leaves at most a `.tmp_*` file,
which `remove_stale_temp_files` clears on the next start.
"""
import json
import os
import random
import tempfile

import numpy as np
import torch

TEMP_PREFIX = ".tmp_"


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_folder(folder):
    """Make a rename durable; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path, suffix, mode, write):
    """Write `path` via a temp file in its folder + fsync + rename; the old file survives any failure."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=suffix, dir=folder)
    try:
        # mkstemp creates 0600 files: give the result the permissions a plain open() would
        os.chmod(tmp, 0o666 & ~_current_umask())
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def atomic_save(obj, path):
    """torch.save(obj, path), all or nothing."""
    _atomic_write(path, ".pth", "wb", lambda fh: torch.save(obj, fh))


def atomic_write_json(obj, path):
    """JSON (indented, sorted keys), all or nothing."""
    def write(fh):
        json.dump(obj, fh, indent=1, sort_keys=True)
        fh.write("\n")
    _atomic_write(path, ".json", "w", write)


def atomic_write_text(text, path):
    """A text file, all or nothing."""
    _atomic_write(path, ".txt", "w", lambda fh: fh.write(text))


def remove_stale_temp_files(folder):
    """Delete the temp files a killed writer left behind in `folder`; returns their names."""
    if not os.path.isdir(folder):
        return []
    stale = [n for n in os.listdir(folder) if n.startswith(TEMP_PREFIX)]
    for name in stale:
        try:
            os.unlink(os.path.join(folder, name))
        except OSError:
            pass
    return stale


def load_checkpoint(path, what="checkpoint", trust=False):
    """Load a checkpoint on the CPU; one-line UsageError when it is missing or unreadable."""
    from helper.errors import UsageError
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
