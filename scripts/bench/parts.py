"""A method's costly parts alone, found from what one real step does, never from its name.

One probe forward (`probe_step`) of the distiller on a real batch records
  - the outermost of the method's own modules (student and teacher excluded) that receives
    the batch's contrast indices: the memory-bank criterion (CRD's `CRDLoss`, PACKD's
    `PACKDLoss`, or a new method's), with the arguments it was given;
  - the calls of the library kernels in `KERNELS` (e.g. `packd.sinkhorn.sinkhorn_plan`),
    with their arguments, wherever in the step they are called from.
Each is then timed alone on those real arguments. The negative sampler is the training
loader's own (`loader.negatives`, present when the method needs contrast indices).
"""
import importlib
import inspect
import itertools
import sys

import torch

from .data import FirstSteps
from .timing import timed_best


def _sinkhorn_details(fn, kwargs):
    check = kwargs.get("check_every")
    _, iterations = fn(**{**kwargs, "return_iterations": True})
    return {"iterations": int(iterations),
            "check_every": "2, 4, 8, ... (default)" if check is None else check}


# Library functions worth timing alone when a step calls them: report key -> (module,
# function, details(fn, kwargs) -> dict or None). Keyed by the library, not by a method.
KERNELS = {"sinkhorn": ("packd.sinkhorn", "sinkhorn_plan", _sinkhorn_details)}


def _tensors(args, kwargs):
    return [a for a in itertools.chain(args, kwargs.values()) if torch.is_tensor(a)]


def _same_tensor(a, b):
    return a is b or (a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.device == b.device)


def _own_modules(distiller):
    """(name, module) of the method's modules: everything but the student and the teacher."""
    for name, child in distiller.named_children():
        if name not in ("student", "teacher"):
            yield from child.named_modules(prefix=name)


class _CallRecorder:
    """Arguments of the first call of each given Python function while active (sys.setprofile)."""

    def __init__(self, functions):
        # unwrap: a decorated function's wrapper shares its code with every function so decorated
        self.by_code = {inspect.unwrap(fn).__code__: key for key, fn in functions.items()}
        self.calls = {}  # key -> (kwargs of the first call, number of calls)

    def _profile(self, frame, event, arg):
        if event == "call" and frame.f_code in self.by_code:
            key = self.by_code[frame.f_code]
            code = frame.f_code
            names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
            first, count = self.calls.get(key, ({n: frame.f_locals[n] for n in names}, 0))
            self.calls[key] = (first, count + 1)

    def __enter__(self):
        self.previous = sys.getprofile()
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc):
        sys.setprofile(self.previous)
        return False


def _kernel_functions():
    """{key: function} of the KERNELS whose module is loaded (one not imported is not called)."""
    out = {}
    for key, (module, name, _) in KERNELS.items():
        if module in sys.modules:
            out[key] = getattr(importlib.import_module(module), name)
    return out


def probe_step(distiller, loader, opt, device):
    """One real forward_train on the loader's first batch, recording what `parts` times.

    -> {"criterion": (name, module, args, kwargs) or None, "kernels": {key: (fn, kwargs, calls)},
        "contrast_index": the batch's contrast indices or None}.
    """
    from util.precision import autocast_context
    batch = next(iter(FirstSteps(loader, 1)))
    contrast = batch.contrast_index
    found = []

    def pre_hook(module, args, kwargs):
        if not found and any(_same_tensor(t, contrast) for t in _tensors(args, kwargs)):
            found.append((module, args, kwargs))

    names = {}
    handles = []
    if contrast is not None:
        for name, module in _own_modules(distiller):
            names[id(module)] = name
            handles.append(module.register_forward_pre_hook(pre_hook, with_kwargs=True))
    functions = _kernel_functions()
    distiller.train()
    try:
        with _CallRecorder(functions) as recorder, autocast_context(device, opt.amp):
            distiller.forward_train(batch)  # with autograd on: which inputs need gradients is recorded too
    finally:
        for handle in handles:
            handle.remove()
    criterion = None
    if found:
        module, args, kwargs = found[0]
        criterion = (names[id(module)], module, args, kwargs)
    kernels = {key: (functions[key], kwargs, calls) for key, (kwargs, calls) in recorder.calls.items()}
    return {"criterion": criterion, "kernels": kernels, "contrast_index": contrast}


def _detached(value):
    if not torch.is_tensor(value):
        return value
    copy = value.detach().clone()
    return copy.requires_grad_(True) if value.requires_grad and copy.is_floating_point() else copy


def _as_loss(out):
    """A scalar to backpropagate from whatever the module returned."""
    if torch.is_tensor(out):
        return out.float().sum()
    parts = [t.float().sum() for t in (out if isinstance(out, (tuple, list)) else out.values())
             if torch.is_tensor(t) and t.is_floating_point()]
    return torch.stack(parts).sum()


def time_criterion(probe, args, opt, device):
    """The module that consumes the contrast indices, alone: forward + backward on the
    arguments it got in the probe step (ms per batch); None when no module consumed them."""
    from util.precision import autocast_context
    if probe["criterion"] is None:
        return None
    name, module, call_args, call_kwargs = probe["criterion"]
    call_args = [_detached(a) for a in call_args]
    call_kwargs = {k: _detached(v) for k, v in call_kwargs.items()}
    inputs = [t for t in _tensors(call_args, call_kwargs) if t.requires_grad]
    params = [p for p in module.parameters() if p.requires_grad]
    backward = bool(inputs or params)
    floats = [t for t in _tensors(call_args, call_kwargs) if t.is_floating_point()]

    def run(n):
        for _ in range(n):
            with autocast_context(device, opt.amp):
                loss = _as_loss(module(*call_args, **call_kwargs))
            if backward:
                for p in itertools.chain(inputs, params):
                    p.grad = None
                loss.backward()

    run(max(1, min(args.warmup, args.steps)))
    seconds = timed_best(lambda: run(args.steps), device, args.repeats)
    contrast = probe["contrast_index"]
    return {"ms_per_batch": 1000.0 * seconds / args.steps, "module": f"{name} ({type(module).__name__})",
            "rows": floats[0].shape[0] if floats else None, "negatives": contrast.shape[1] - 1,
            "backward": backward}


def time_kernels(probe, args, device):
    """{key: timing} of each KERNELS function the probe step called, alone on its arguments."""
    out = {}
    for key, (fn, kwargs, calls) in probe["kernels"].items():
        def run(n, fn=fn, kwargs=kwargs):
            for _ in range(n):
                fn(**kwargs)

        run(1)
        seconds = timed_best(lambda: run(args.steps), device, args.repeats)
        row = {"ms_per_call": 1000.0 * seconds / args.steps, "calls_per_step": calls,
               "function": f"{KERNELS[key][0]}.{KERNELS[key][1]}"}
        details = KERNELS[key][2]
        if details is not None:
            row.update(details(fn, kwargs))
        out[key] = row
    return out


def time_negative_sampling(sampler, args, opt, device):
    """The training loader's negative sampler alone on random batches of indices (ms per batch)."""
    g = torch.Generator(device=device).manual_seed(opt.seed)
    batches = [torch.randperm(sampler.n_data, generator=g, device=device)[:opt.batch_size]
               for _ in range(args.steps)]

    def run(n):
        for index in batches[:n]:
            sampler.sample(index, g)

    run(max(1, min(args.warmup, args.steps)))
    seconds = timed_best(lambda: run(args.steps), device, args.repeats)
    return {"ms_per_batch": 1000.0 * seconds / args.steps, "negatives": sampler.nce_k}
