"""The order of the measurements, and the report they fill (the JSON object).

The training steps are timed first, on a fresh process's warm state; the parts alone and
the levers after, since they touch the memory banks and the caches. What is timed follows
from the method class: its `needs` (the data path with them; negative sampling and the
criterion when it needs contrast indices), `forward_only_first_epoch` (a forward-only
epoch in the projection) and an overridden `pretrain` (the stage's estimate). The data come
from a data source (`cifar.CifarData`, or `imagenet.ImageNetData` for --dataset imagenet):
the data and loaders, the epoch the run is projected with, the data path rows and their lines.

Under torchrun (`torchrun --nproc_per_node N scripts/benchmark.py ...`) every rank joins
the process group (`helper.distributed.start`), takes its slice of each global batch
(`--batch_size` is the global batch, as in training), runs the step wrapped in DDP as the
Trainer does (`helper.distributed.wrap_step`) and every measurement in the same order, so
that the collectives inside a step (gradient all-reduce, memory-bank gathers) and the timed
windows line up; the pre-training stage runs on rank 0 alone, as in training. Rank 0 alone
prints and reports: the step time of the run (each window as long as its slowest rank), each
rank's ms/step, the aggregate images/s (global batch x steps / time), images/s per process
(per GPU: one process per GPU) and, given --baseline_images_per_s, the scaling efficiency.
"""
import copy
import socket

import torch

from util.errors import UsageError

from . import report as text
from .cifar import CifarData
from .options import IMAGENET
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


def data_source(args, opt):
    """What a run times: synthetic CIFAR-100 on the device (`cifar.CifarData`) or JPEG folders
    (`imagenet.ImageNetData`, --dataset imagenet); a context that deletes what it wrote."""
    if args.dataset == IMAGENET:
        from .imagenet import ImageNetData
        return ImageNetData(args, opt)
    return CifarData(args, opt)


def run_benchmark(args, opt, log=print):
    """-> the report (on every rank under torchrun; rank 0 alone logs, and only its report is printed)."""
    from distiller_zoo import method_named
    from helper import distributed
    from helper.util import resolve_device, seed_everything

    procs, device = distributed.start(resolve_device(opt.device), opt.dist_timeout)
    if not procs.is_main:
        log = _silent
    malloc = apply_malloc_tuning(args, device)  # before the first large allocation
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(opt.seed, opt.deterministic)
    method = method_named(opt.distill)
    report = text.header(args, opt, device, method, device_name(device))
    report["malloc"] = malloc
    report.update(processes_fields(procs, opt))
    log(text.start_line(report))
    if text.processes_line(report):
        log(text.processes_line(report))
    if text.malloc_line(malloc):
        log(text.malloc_line(malloc))

    with data_source(args, opt) as source:
        return _measure(report, source, args, opt, procs, device, log)


def _measure(report, source, args, opt, procs, device, log):
    """Everything timed, in order, into `report`: the data path, the training steps, evaluation,
    the forward-only epoch, the pre-training stage, the projection, the parts and the levers."""
    from distiller_zoo import method_named
    from helper import distributed
    method = method_named(opt.distill)
    data = source.load(procs, log)
    train_loader, test_loader = source.loaders(data, device, method.needs_for(opt), procs)
    opt.n_data = train_loader.num_samples
    opt.steps_per_epoch = len(train_loader)
    steps_per_epoch, test_batches = source.epoch_batches(train_loader, test_loader)  # of the projected run
    report["steps_per_epoch"] = steps_per_epoch
    views = train_loader.views.num_views if getattr(train_loader, "views", None) is not None else 1
    report["views"] = views
    report.update(source.fields())
    notes = [text.TEACHER_NOTE, *source.notes()]
    for line in source.lines():
        log(line)

    local_opt = copy.copy(opt)  # what one process's loader works on: its slice of the global batch
    local_opt.batch_size = report["batch_size_per_process"]
    if not args.skip_data_path:
        report["data_path"] = source.time_data_path(local_opt, data, device, train_loader, method.needs_for(opt))
        for line in source.data_path_lines(report["data_path"]):
            log(line)
    if args.data_only:
        return _data_only(report, device, notes)

    distiller, optimizer = build_distiller(opt, device)
    step_module = distributed.wrap_step(distiller)  # DDP under torchrun, as the Trainer; None alone
    report["loss_weights"] = {"gamma": opt.gamma, "alpha": opt.alpha, "beta": opt.beta}
    report["loss"] = distiller.describe_loss()
    report["options"]["fused_sgd"] = bool(optimizer.defaults.get("fused"))
    steps = time_steps(distiller, optimizer, train_loader, args, opt, device, step_module=step_module)
    report["peak_memory_bytes"], report["peak_memory_kind"] = peak_memory(device)
    report["peak_memory_bytes_ranks"] = distributed.gather_objects(report["peak_memory_bytes"])
    report.update(steps)
    step_s = steps["ms_per_step"] / 1000.0
    report["images_per_s"] = opt.batch_size / step_s  # the global batch: the whole run's images/s
    if views > 1:
        report["view_images_per_s"] = opt.batch_size * views / step_s
    report.update(scaling_fields(report["images_per_s"], procs.world_size, args.baseline_images_per_s))
    log(text.step_line(report, steps, args.repeats, views))
    if procs.distributed or args.baseline_images_per_s:
        log(text.scaling_line(report))
    log(text.memory_line(report))

    evaluation = time_evaluation(distiller, test_loader, args, opt, device, epoch_batches=test_batches)
    report["evaluation"] = evaluation
    forward_only = None
    if distiller.forward_only_first_epoch:
        fo_args = copy.copy(args)
        fo_args.warmup = min(args.warmup, 2)
        forward_only = time_steps(distiller, optimizer, train_loader, fo_args, opt, device, forward_only=True,
                                  step_module=step_module)
        report["forward_only_ms_per_step"] = forward_only["ms_per_step"]
        report["forward_only_ms_per_step_repeats"] = forward_only["ms_per_step_repeats"]
        log(text.forward_only_line(opt.distill, forward_only))
    if device.type == "cuda":
        report["host_syncs"] = count_host_syncs(distiller, optimizer, train_loader, opt, device, step_module)
        log(text.host_syncs_line(report["host_syncs"]))
    pretrain = time_pretrain(distiller, train_loader, args, opt, device, procs=procs)
    report["pretrain"] = pretrain
    notes += text.pretrain_notes(pretrain)

    projection = project_run(step_s, steps_per_epoch, opt.epochs,
                             evaluation["epoch_s"] if evaluation else 0.0,
                             forward_only["ms_per_step"] / 1000.0 if forward_only else None,
                             pretrain.get("epoch_s_estimate") if pretrain else None,
                             pretrain["epochs"] if pretrain else 0)
    report["epoch_s"] = projection["train_epoch_s"]
    report["projection"] = projection
    report["projected_run_s"] = projection["total_without_pretrain_s"]
    report["projected_run_with_pretrain_s"] = projection["total_s"]
    notes.append(text.projection_note(evaluation, forward_only))
    log(text.epoch_line(projection, steps_per_epoch, evaluation, forward_only))
    log(text.projection_line(opt.epochs, projection, pretrain))

    _time_parts(report, distiller, train_loader, method, args, local_opt, device, log)
    if args.levers:
        from .levers import time_levers
        report["levers"] = time_levers(distiller, optimizer, train_loader, args, opt, device)
        log(text.levers_line(report["levers"]))
    report["notes"] = notes
    for note in notes:
        log(f"note: {note}")
    return report


def processes_fields(procs, opt):
    """The JSON fields that say how many processes ran (one process: world_size 1, rank 0, one node, the
    whole batch)."""
    from helper import distributed
    hosts = distributed.gather_objects(socket.gethostname())
    return {"world_size": procs.world_size, "rank": procs.rank, "nodes": len(set(hosts)),
            "global_batch_size": opt.batch_size, "batch_size_per_process": opt.batch_size // procs.world_size}


def scaling_fields(images_per_s, world_size, baseline=None):
    """Aggregate images/s, per process, and the scaling efficiency against one process's
    images/s (`baseline`, measured separately: --baseline_images_per_s)."""
    return {"aggregate_images_per_s": images_per_s, "images_per_s_per_process": images_per_s / world_size,
            "baseline_images_per_s": baseline,
            "scaling_efficiency": images_per_s / (world_size * baseline) if baseline else None}


def _silent(*args, **kwargs):
    pass


def _time_parts(report, distiller, train_loader, method, args, opt, device, log):
    """Negative sampling, the memory-bank criterion and library kernels, each alone (every rank
    runs them alike under torchrun: the criterion's memory update gathers over the ranks).
    `opt.batch_size` is one process's batch."""
    from dataset.batch import CONTRAST_INDEX
    sampler = getattr(train_loader, "negatives", None)
    if CONTRAST_INDEX in method.needs_for(opt) and sampler is not None:
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
    row = (path.get("device_method") or path.get("torch_method") or path.get("device_plain")
           or path.get("training_loader"))
    if row is None:
        raise UsageError("--data_only with --skip_data_path times nothing; drop one of them")
    report["what"] = "data path only (the training loader with the method's needs)"
    report["ms_per_step"] = row["ms_per_batch"]
    report["images_per_s"] = row["images_per_s"]
    report["peak_memory_bytes"], report["peak_memory_kind"] = peak_memory(device)
    report["notes"] = notes
    return report
