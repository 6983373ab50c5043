"""Host reads on the CPU: the operations that would make the host wait for a GPU.

On CUDA, torch's sync debug mode names every call that waits for the device (what
`scripts/benchmark.py` counts there). On the CPU nothing waits, so this records the
operations that *would*: reading a value to the host (`.item()`, `bool(t)`, `float(t)`,
`int(t)`, `.tolist()`, `.numpy()`), and the kernels whose output size depends on the
data (`nonzero`, boolean-mask indexing, `masked_select`, `unique`, `repeat_interleave`
without an output size, `bincount`) or that check results on the host (`equal`, the
linear-algebra error checks).
"""
import contextlib
import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

# ops whose CUDA kernels copy a value or a size to the host before they return
WAITING_OPS = {"_local_scalar_dense", "nonzero", "masked_select", "_unique", "_unique2", "unique_dim",
               "unique_consecutive", "bincount", "equal", "is_nonzero", "_linalg_check_errors"}


def _where():
    """The first frame of the project's own code (not torch's, not this file's)."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        if "/torch/" not in frame.filename and frame.filename != __file__:
            return f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} {frame.line}"
    return "?"


class _WaitingOps(TorchDispatchMode):
    def __init__(self, found):
        super().__init__()
        self.found = found

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if name in WAITING_OPS:
            self.found.append(f"{name}: {_where()}")
        elif name == "repeat_interleave" and func._overloadname != "self_int" and kwargs.get("output_size") is None:
            # repeats as a tensor: the output size is their sum, read on the host
            self.found.append(f"repeat_interleave without output_size: {_where()}")
        elif name in ("index", "index_put", "index_put_") and any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] or ())):
            self.found.append(f"{name} with a boolean mask: {_where()}")
        return func(*args, **kwargs)


@contextlib.contextmanager
def host_reads():
    """Yields a list that fills with one line per host read done inside the block."""
    found = []
    patched = {}

    def recorder(name, original):
        def read(self, *args, **kwargs):
            found.append(f"Tensor.{name}: {_where()}")
            return original(self, *args, **kwargs)
        return read

    for name in ("tolist", "numpy"):  # they read memory directly: no aten op to see
        patched[name] = getattr(torch.Tensor, name)
        setattr(torch.Tensor, name, recorder(name, patched[name]))
    try:
        with _WaitingOps(found):
            yield found
    finally:
        for name, original in patched.items():
            setattr(torch.Tensor, name, original)
