"""Speed levers measured alone (--levers): teacher-forward variants and SGD implementations.

Each candidate is timed on the same input, so the table in BENCHMARK.md can say which of
`no_grad` / `inference_mode` / bf16 autocast / channels_last, and SGD foreach / fused, is
worth a flag, before a whole step is changed.
"""
import copy

import torch

from .data import FirstSteps
from .timing import timed_best


def time_levers(distiller, optimizer, loader, args, opt, device):
    """Teacher forward variants and SGD implementations, each alone (ms per call)."""
    teacher = distiller.teacher
    batch = next(iter(FirstSteps(loader, 1)))
    images = batch.views.flatten(0, 1) if batch.views is not None else batch.images
    images = images.contiguous()
    steps = args.steps
    out = {"teacher_images": images.shape[0]}

    def bench(fn):
        fn()
        fn()
        return 1000.0 * timed_best(lambda: [fn() for _ in range(steps)], device, args.repeats) / steps

    with torch.no_grad():
        out["teacher_no_grad_fp32_ms"] = bench(lambda: teacher(images))
    with torch.inference_mode():
        out["teacher_inference_mode_fp32_ms"] = bench(lambda: teacher(images))
    with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        out["teacher_no_grad_bf16_ms"] = bench(lambda: teacher(images))
    teacher_cl = copy.deepcopy(teacher).to(memory_format=torch.channels_last)
    images_cl = images.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        out["teacher_no_grad_fp32_channels_last_ms"] = bench(lambda: teacher_cl(images_cl))
    with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        out["teacher_no_grad_bf16_channels_last_ms"] = bench(lambda: teacher_cl(images_cl))

    params = [p.detach().clone().requires_grad_(True) for p in distiller.trainable_parameters()]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    hyper = dict(lr=opt.learning_rate, momentum=opt.momentum, weight_decay=opt.weight_decay)
    for name, extra in (("foreach", {"foreach": True}), ("fused", {"fused": True})):
        try:
            sgd = torch.optim.SGD(params, **hyper, **extra)
            out[f"sgd_{name}_ms"] = bench(sgd.step)
        except (RuntimeError, ValueError) as e:
            out[f"sgd_{name}_ms"] = None
            out[f"sgd_{name}_error"] = str(e).splitlines()[0]
    out["sgd_in_training"] = "fused" if optimizer.defaults.get("fused") else "foreach/default"
    return out
