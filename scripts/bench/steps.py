"""The training run itself, a few steps at a time, and the projection of a whole run.

Steps are `helper.loops.train_epoch` on a loader cut to an epoch's first batches (data
path included); evaluation is `helper.loops.evaluate`; the pre-training stage is the
method's own `pretrain`. A run = epochs x (train epoch + one test evaluation), plus a
forward-only first epoch when the method has one, plus the pre-training stage.
"""
import contextlib
import copy
import itertools
import os
import statistics
import tempfile
import time

import torch

from .data import FirstSteps
from .timing import Stopwatch, host_syncs, timed, timed_best, wait_at_barrier

# Host syncs are counted over this many steps (CUDA only).
SYNC_CHECK_STEPS = 3


def build_distiller(opt, device):
    """Teacher (random weights), student, distiller and optimizer as train_student.main builds them,
    the models with `opt.num_classes` classes (`options.training_options` sets it)."""
    from distiller_zoo import method_named
    from distiller_zoo.base import resolve_weights
    from helper.model_setup import prepare_model
    from helper.trainer import make_optimizer
    from models import build_model
    method = method_named(opt.distill)
    weights = resolve_weights(method, opt)
    opt.gamma, opt.alpha, opt.beta = weights["gamma"], weights["alpha"], weights["beta"]
    teacher = prepare_model(build_model(opt.model_t, opt.num_classes).eval(), opt, device)
    student = prepare_model(build_model(opt.model_s, opt.num_classes), opt, device)
    distiller = method(student, teacher, opt).to(device)
    optimizer = make_optimizer(distiller.trainable_parameters(), opt, device)
    return distiller, optimizer


def _train(distiller, optimizer, loader, steps, opt, device, forward_only=False, step_module=None):
    from helper.loops import train_epoch, uses_cuda_graphs
    train_epoch(distiller, FirstSteps(loader, steps), optimizer, 1, device, amp=opt.amp, forward_only=forward_only,
                print_freq=opt.print_freq, cuda_graph_steps=uses_cuda_graphs(opt), step_module=step_module)


def time_steps(distiller, optimizer, loader, args, opt, device, forward_only=False, step_module=None):
    """Warm-up, then `repeats` timings of `steps` steps of helper.loops.train_epoch.

    step_module: the DDP wrapper under torchrun (`helper.distributed.wrap_step`), as the
    Trainer passes it. Under torchrun every rank times the same windows, with a barrier
    before and after each so that they overlap; a window of the run lasts as long as its
    slowest rank (`ms_per_step`, `ms_per_step_repeats`), and each rank's own median is in
    `ms_per_step_ranks` (rank order). In one process both are this process's windows.
    """
    from helper import distributed

    def run(steps):
        _train(distiller, optimizer, loader, steps, opt, device, forward_only, step_module)

    warmup_s = timed(lambda: run(args.warmup), device) if args.warmup else 0.0
    if getattr(args, "barrier", None) and not forward_only and distributed.launched_processes().is_main:
        wait_at_barrier(args.barrier, args.barrier_count)  # one announcement per job (rank 0's): jobs, not ranks
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    steps = min(args.steps, len(loader))
    distributed.barrier()  # no-op in one process
    seconds, start_unix = [], time.time()
    for _ in range(args.repeats):
        distributed.barrier()
        seconds.append(timed(lambda: run(steps), device))
        distributed.barrier()
    end_unix = time.time()
    ranks = distributed.gather_objects(seconds)  # [[window seconds] of rank 0, of rank 1, ...]
    windows = [max(w) for w in zip(*ranks)]  # a window of the run ends when its slowest rank's does
    per_step = [s / steps for s in windows]
    return {"ms_per_step": 1000.0 * statistics.median(per_step), "ms_per_step_min": 1000.0 * min(per_step),
            "ms_per_step_repeats": [1000.0 * s for s in per_step],
            "ms_per_step_ranks": [1000.0 * statistics.median(r) / steps for r in ranks],
            "steps": steps, "warmup_s": warmup_s, "timed_start_unix": start_unix, "timed_end_unix": end_unix}


def count_host_syncs(distiller, optimizer, loader, opt, device, step_module=None):
    """Synchronising CUDA calls in SYNC_CHECK_STEPS steps of train_epoch (torch's sync debug mode).

    One of them is the loop's designed metric read-back at the last step of the interval.
    """
    syncs = host_syncs(lambda: _train(distiller, optimizer, loader, SYNC_CHECK_STEPS, opt, device,
                                      step_module=step_module), device)
    return {"steps": SYNC_CHECK_STEPS, "syncs": len(syncs), "includes_loop_readback": 1, "first": syncs[:3]}


def time_evaluation(distiller, test_loader, args, opt, device, epoch_batches=None):
    """Seconds of one test-set evaluation (the trainer runs one after every epoch) of
    `epoch_batches` batches (default the test loader's)."""
    from helper.loops import evaluate
    batches = min(args.steps if args.eval_steps is None else args.eval_steps, len(test_loader))
    if batches == 0:
        return None
    evaluate(distiller, FirstSteps(test_loader, 1), device, amp=opt.amp)
    seconds = timed_best(lambda: evaluate(distiller, FirstSteps(test_loader, batches), device, amp=opt.amp), device,
                         args.repeats)
    return {"ms_per_batch": 1000.0 * seconds / batches, "batches_timed": batches,
            "batch_size": test_loader.batch_size,
            "epoch_s": seconds / batches * (len(test_loader) if epoch_batches is None else epoch_batches)}


class StageLoader:
    """The loader handed to a pre-training stage, which then runs with its real options.

    Its first pass gives `warmup` untimed and `steps` timed batches; every later pass gives
    one batch. The stage's own loop thus says how many epochs it has (the passes counted
    here), with no option name to know, and costs one step per further epoch. One batch,
    not none, so that no stage divides by an empty epoch.
    """

    def __init__(self, loader, warmup, steps, stopwatch):
        self.loader, self.warmup, self.steps, self.stopwatch = loader, warmup, steps, stopwatch
        self.passes = 0
        self.timed_batches = 0

    def __len__(self):
        return self.warmup + self.steps

    def __iter__(self):
        return self.iterate()

    def iterate(self, skip=0):
        """`skip` is accepted for the loader interface; a stage starts its epochs from the top."""
        self.passes += 1
        if self.passes == 1:
            return self._first_pass()
        self.stopwatch.stop()  # a stage that left its first pass early
        return itertools.islice(self.loader.iterate(), 1)

    def _first_pass(self):
        batches = self.loader.iterate()
        for i in range(self.warmup + self.steps):
            if i == self.warmup:
                self.stopwatch.start()  # the steps of the warm-up batches are done (host side)
            batch = next(batches, None)
            if batch is None:
                break
            if i >= self.warmup:
                self.timed_batches += 1
            yield batch
        self.stopwatch.stop()  # asked for one more: the last timed step is done


@contextlib.contextmanager
def scratch_working_directory():
    """A temporary working directory: what a stage writes under relative paths (a cache)
    lands there and is deleted, and no cache of an earlier run is found there."""
    previous = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="bench_stage_") as folder:
        os.chdir(folder)
        try:
            yield folder
        finally:
            os.chdir(previous)


def _files_under(folder):
    return sorted(os.path.relpath(os.path.join(root, name), folder)
                  for root, _, names in os.walk(folder) for name in names)


def time_pretrain(distiller, train_loader, args, opt, device, log=lambda *a, **k: None, procs=None):
    """The method's pre-training stage (an overridden `Distiller.pretrain`), estimated from
    a few of its real steps; None when the method has no stage.

    The stage runs with the real options on a `StageLoader` in a scratch working directory.
    Its epoch count is the number of passes it makes over the loader; 0 passes means it
    trained nothing (a cache it found, or 0 epochs). Per-epoch costs of its own (a loss
    read-back, a log line) and what it does after its epochs (writing a cache) are left out.

    Under torchrun (`procs.distributed`) the stage runs as the Trainer runs it: on rank 0
    alone, on the whole data (the unsharded loader), then every rank takes rank 0's state;
    every rank returns rank 0's estimate.
    """
    from distiller_zoo.base import Distiller
    if type(distiller).pretrain is Distiller.pretrain:
        return None
    if procs is not None and procs.distributed:
        from helper import distributed
        info = None
        if procs.is_main:
            info = time_pretrain(distiller, train_loader.unsharded(), args, opt, device, log)
        distributed.broadcast_state(distiller)  # the other ranks wait here for rank 0's stage
        return distributed.gather_objects(info)[0]
    info = {"epochs": None, "epochs_counted_by": "passes over its loader", "skipped": True}
    steps = args.steps if args.pretrain_steps is None else args.pretrain_steps
    steps = min(steps, len(train_loader))
    if steps == 0:
        return info
    warmup = min(args.warmup, len(train_loader) - steps)
    stopwatch = Stopwatch(device)
    loader = StageLoader(train_loader, warmup, steps, stopwatch)
    with scratch_working_directory() as folder:
        distiller.pretrain(loader, copy.copy(opt), device, log=log)
        stopwatch.stop()
        info["wrote"] = _files_under(folder)
    distiller.train()
    info["epochs"] = loader.passes
    if loader.passes == 0 or not loader.timed_batches or stopwatch.seconds is None:
        return info
    seconds = stopwatch.seconds
    info.update({"ms_per_step_estimate": 1000.0 * seconds / loader.timed_batches,
                 "steps_timed": loader.timed_batches, "warmup_steps": warmup,
                 "epoch_s_estimate": seconds / loader.timed_batches * len(train_loader)})
    return info


def project_run(step_s, steps_per_epoch, epochs, eval_epoch_s=0.0, forward_only_step_s=None, pretrain_epoch_s=None,
                pretrain_epochs=0):
    """Seconds of a whole run: epochs x (train epoch + test evaluation), plus a forward-only
    epoch (evaluated too) and the pre-training stage when given."""
    train_epoch_s = step_s * steps_per_epoch
    main_s = epochs * (train_epoch_s + eval_epoch_s)
    forward_only_s = 0.0 if forward_only_step_s is None else forward_only_step_s * steps_per_epoch + eval_epoch_s
    pretrain_s = 0.0 if pretrain_epoch_s is None else pretrain_epoch_s * (pretrain_epochs or 0)
    return {"train_epoch_s": train_epoch_s, "main_s": main_s, "forward_only_epoch_s": forward_only_s,
            "pretrain_s": pretrain_s, "total_s": main_s + forward_only_s + pretrain_s,
            "total_without_pretrain_s": main_s + forward_only_s}
