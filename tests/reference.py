"""The deterministic fill rule and input generators of the reference fixtures.

`tests/fixtures/README.md` defines them; these helpers re-implement that text so every
fixture test builds weights and inputs exactly as the reference numbers were made.
"""
import json
import math
import pathlib
import zlib

import torch

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def load_fixture(name):
    """Parsed JSON of `tests/fixtures/<name>.json`."""
    with open(FIXTURES / f"{name}.json") as fh:
        return json.load(fh)


def phase(name):
    return (zlib.crc32(name.encode()) % 10007) / 10007 * 2 * math.pi


def base(name, n):
    i = torch.arange(n, dtype=torch.float64)
    return torch.sin(0.7 * i + phase(name))


def fill_value(name, t):
    """The value the fill rule gives the state_dict entry `name` of shape like `t`."""
    b = base(name, t.numel()).reshape(t.shape)
    if t.dim() >= 2:
        v = b / math.sqrt(t[0].numel())
    elif name.endswith("running_var"):
        v = 1 + 0.5 * b ** 2
    elif name.endswith("running_mean"):
        v = 0.1 * b
    elif name.endswith("weight"):
        v = 0.25 + 0.05 * b
    else:
        v = 0.1 * b
    return v.to(torch.float32)


@torch.no_grad()
def apply_fill(module, only=None):
    """Fill every floating-point state_dict entry of `module` (or those named in `only`)."""
    state = module.state_dict()
    for name, t in state.items():
        if not t.is_floating_point() or (only is not None and name not in only):
            continue
        t.copy_(fill_value(name, t))
    return module


def sin_input(shape, freq=0.05, offset=0.0):
    n = math.prod(shape)
    x = torch.sin(freq * torch.arange(n, dtype=torch.float64) + offset)
    return x.to(torch.float32).reshape(shape)


def hash_input(shape, seed):
    i = torch.arange(math.prod(shape), dtype=torch.int64)
    x = ((i * i * 7919 + i * 104729 + seed * 7907) % 65536).to(torch.float64) / 32768 - 1
    return x.to(torch.float32).reshape(shape)


def contrast_index(idx, n_data, k):
    """contrast_idx[i, j] = (7919*j + 104729*i + 13) % n_data, column 0 replaced by idx[i]."""
    i = torch.arange(len(idx)).unsqueeze(1)
    j = torch.arange(k + 1).unsqueeze(0)
    c = (7919 * j + 104729 * i + 13) % n_data
    c[:, 0] = torch.as_tensor(idx)
    return c


def assert_stats(t, ref, rtol=1e-4, atol=1e-5, what=""):
    """Compare a tensor against a recorded `stats` entry (shape, sum, abs_sum, norm, first)."""
    t = t.detach().to(torch.float64).cpu()
    assert list(t.shape) == list(ref["shape"]), f"{what}: shape {list(t.shape)} != {ref['shape']}"
    got = torch.tensor([t.sum(), t.abs().sum(), t.norm()], dtype=torch.float64)
    want = torch.tensor([ref["sum"], ref["abs_sum"], ref["norm"]], dtype=torch.float64)
    assert torch.allclose(got, want, rtol=rtol, atol=atol), f"{what}: sum/abs_sum/norm {got.tolist()} != {want.tolist()}"
    first = t.flatten()[: len(ref["first"])]
    want_first = torch.tensor(ref["first"], dtype=torch.float64)
    # `first` is stored rounded to 7 decimals
    assert torch.allclose(first, want_first, rtol=rtol, atol=max(atol, 1e-6)), f"{what}: first {first.tolist()} != {ref['first']}"
