"""The order of the measurements, and the report they fill (the JSON object).

The training steps are timed first, on a fresh process's warm state; the parts alone and
the levers after, since they touch the memory banks and the caches. What is timed follows
from the method class: its `needs` (the data path with them; negative sampling and the
criterion when it needs contrast indices), `forward_only_first_epoch` (a forward-only
epoch in the projection) and an overridden `pretrain` (the stage's estimate).
"""
import copy

import torch

from util.errors import UsageError

from . import report as text
from .data import synthetic_cifar100
from .data_path import time_data_path
from .parts import probe_step, time_criterion, time_kernels, time_negative_sampling
from .steps import (build_distiller, count_host_syncs, project_run, time_evaluation, time_pretrain, time_steps)
from .timing import device_name, peak_memory


def apply_malloc_tuning(args, device):
    """util.malloc.keep_freed_memory on the CPU, as the training scripts do, unless
    --no_malloc_tuning; -> the JSON "malloc" entry (None on CUDA)."""
    if device.type != "cpu":
        return None
    if args.no_malloc_tuning:
        return {"applied": None, "why": "--no_malloc_tuning"}
    from util.malloc import keep_freed_memory
    applied = keep_freed_memory()
    return {"applied": applied, "why": "keep_freed_memory" if applied is not None else "not glibc on Linux"}


def run_benchmark(args, opt, log=print):
    from dataset import make_loaders
    from distiller_zoo import method_named
    from helper.util import resolve_device, seed_everything

    device = resolve_device(opt.device)
    malloc = apply_malloc_tuning(args, device)  # before the first large allocation
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(opt.seed, opt.deterministic)
    method = method_named(opt.distill)
    notes = [text.TEACHER_NOTE, text.DATA_NOTE]
    report = text.header(args, opt, device, method, device_name(device))
    report["malloc"] = malloc
    log(text.start_line(report))
    if text.malloc_line(malloc):
        log(text.malloc_line(malloc))

    data = synthetic_cifar100(args.n_data, args.n_test, opt.seed)
    train_loader, test_loader = make_loaders(opt, data, device, method.needs)
    opt.n_data = train_loader.num_samples
    opt.steps_per_epoch = len(train_loader)
    report["steps_per_epoch"] = opt.steps_per_epoch
    views = train_loader.views.num_views if getattr(train_loader, "views", None) is not None else 1
    report["views"] = views

    if not args.skip_data_path:
        report["data_path"] = time_data_path(args, opt, data, device, train_loader, method.needs)
        for line in text.data_path_lines(report["data_path"], opt.distill):
            log(line)
    if args.data_only:
        return _data_only(report, device, notes)

    distiller, optimizer = build_distiller(opt, device)
    report["loss_weights"] = {"gamma": opt.gamma, "alpha": opt.alpha, "beta": opt.beta}
    report["loss"] = distiller.describe_loss()
    report["options"]["fused_sgd"] = bool(optimizer.defaults.get("fused"))
    steps = time_steps(distiller, optimizer, train_loader, args, opt, device)
    report["peak_memory_bytes"], report["peak_memory_kind"] = peak_memory(device)
    report.update(steps)
    step_s = steps["ms_per_step"] / 1000.0
    report["images_per_s"] = opt.batch_size / step_s
    if views > 1:
        report["view_images_per_s"] = opt.batch_size * views / step_s
    log(text.step_line(report, steps, args.repeats, views))
    log(text.memory_line(report))

    evaluation = time_evaluation(distiller, test_loader, args, opt, device)
    report["evaluation"] = evaluation
    forward_only = None
    if distiller.forward_only_first_epoch:
        fo_args = copy.copy(args)
        fo_args.warmup = min(args.warmup, 2)
        forward_only = time_steps(distiller, optimizer, train_loader, fo_args, opt, device, forward_only=True)
        report["forward_only_ms_per_step"] = forward_only["ms_per_step"]
        report["forward_only_ms_per_step_repeats"] = forward_only["ms_per_step_repeats"]
        log(text.forward_only_line(opt.distill, forward_only))
    if device.type == "cuda":
        report["host_syncs"] = count_host_syncs(distiller, optimizer, train_loader, opt, device)
        log(text.host_syncs_line(report["host_syncs"]))
    pretrain = time_pretrain(distiller, train_loader, args, opt, device)
    report["pretrain"] = pretrain
    notes += text.pretrain_notes(pretrain)

    projection = project_run(step_s, opt.steps_per_epoch, opt.epochs,
                             evaluation["epoch_s"] if evaluation else 0.0,
                             forward_only["ms_per_step"] / 1000.0 if forward_only else None,
                             pretrain.get("epoch_s_estimate") if pretrain else None,
                             pretrain["epochs"] if pretrain else 0)
    report["epoch_s"] = projection["train_epoch_s"]
    report["projection"] = projection
    report["projected_run_s"] = projection["total_without_pretrain_s"]
    report["projected_run_with_pretrain_s"] = projection["total_s"]
    notes.append(text.projection_note(evaluation, forward_only))
    log(text.epoch_line(projection, opt.steps_per_epoch, evaluation, forward_only))
    log(text.projection_line(opt.epochs, projection, pretrain))

    _time_parts(report, distiller, train_loader, method, args, opt, device, log)
    if args.levers:
        from .levers import time_levers
        report["levers"] = time_levers(distiller, optimizer, train_loader, args, opt, device)
        log(text.levers_line(report["levers"]))
    report["notes"] = notes
    for note in notes:
        log(f"note: {note}")
    return report


def _time_parts(report, distiller, train_loader, method, args, opt, device, log):
    """Negative sampling, the memory-bank criterion and library kernels, each alone."""
    from dataset.batch import CONTRAST_INDEX
    sampler = getattr(train_loader, "negatives", None)
    if CONTRAST_INDEX in method.needs and sampler is not None:
        report["negative_sampling"] = time_negative_sampling(sampler, args, opt, device)
        log(text.negative_sampling_line(report["negative_sampling"]))
    probe = probe_step(distiller, train_loader, opt, device)
    criterion = time_criterion(probe, args, opt, device)
    if criterion is not None:
        report["criterion"] = criterion
        log(text.criterion_line(criterion))
    for key, row in time_kernels(probe, args, device).items():
        report[key] = row
        log(text.kernel_line(key, row))


def _data_only(report, device, notes):
    path = report.get("data_path", {})
    row = path.get("device_method") or path.get("torch_method") or path.get("device_plain")
    if row is None:
        raise UsageError("--data_only with --skip_data_path times nothing; drop one of them")
    report["what"] = "data path only (the training loader with the method's needs)"
    report["ms_per_step"] = row["ms_per_batch"]
    report["images_per_s"] = row["images_per_s"]
    report["peak_memory_bytes"], report["peak_memory_kind"] = peak_memory(device)
    report["notes"] = notes
    return report
