"""What the benchmark says: the JSON header of a run, the human-readable lines, the notes.

Only formatting lives here; every number comes from the measuring modules. The text lines
start with fixed words (`training step`, `scaling`, `processes`, `epoch`, `projected`, `data path`,
`host syncs`, `negative`, `memory-bank`, `sinkhorn`, `levers`, `peak`) that scripts/gpu_benchmark.sh
greps for its summary.
"""
import json
import os

import torch

TEACHER_NOTE = "teacher has random weights (speed does not depend on them)"
DATA_NOTE = "synthetic uint8 noise of CIFAR-100's shape and size (speed does not depend on the pixels)"


def header(args, opt, device, method, device_label):
    """The JSON fields that say what was run, where, and with which options."""
    from dataset.batch import CONTRAST_INDEX, VIEWS
    return {
        "label": args.label, "method": opt.distill, "model_t": opt.model_t, "model_s": opt.model_s,
        "device": str(device), "device_name": device_label, "torch_version": torch.__version__,
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "options": {"amp": opt.amp, "teacher_bf16": opt.teacher_bf16, "channels_last": opt.channels_last,
                    "compile": opt.compile,
                    "loader": opt.loader, "num_workers": opt.num_workers if opt.loader == "torch" else None,
                    "batch_size": opt.batch_size,
                    "nce_k": getattr(opt, "nce_k", None) if CONTRAST_INDEX in method.needs_for(opt) else None,
                    "mixup_num": getattr(opt, "mixup_num", None) if VIEWS in method.needs_for(opt) else None},
        "n_data": args.n_data, "n_test": args.n_test, "epochs": opt.epochs,
        "warmup": args.warmup, "repeats": args.repeats,
    }


def json_line(report):
    return json.dumps(report)


def fmt_duration(seconds):
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def start_line(report):
    return (f"benchmark {report['method']}: {report['model_t']} -> {report['model_s']} on {report['device']} "
            f"({report['device_name']}), torch {report['torch_version']}, {report['torch_threads']} threads; "
            f"batch {report['options']['batch_size']}, options "
            + ", ".join(f"{k}={v}" for k, v in report["options"].items() if v is not None))


def processes_line(report):
    """Under torchrun: how many processes, and the batch each gets; None in one process."""
    if report.get("world_size", 1) <= 1:
        return None
    return (f"processes: {report['world_size']} (torchrun) on {report['nodes']} node(s), one step = a global batch "
            f"of {report['global_batch_size']} ({report['batch_size_per_process']} per process); rank 0 reports")


def scaling_line(report):
    efficiency = report.get("scaling_efficiency")
    return (f"scaling: {report['world_size']} process(es), aggregate {report['aggregate_images_per_s']:,.0f} "
            f"images/s, {report['images_per_s_per_process']:,.0f} per process; ms/step per rank: "
            + ", ".join(f"{v:.1f}" for v in report["ms_per_step_ranks"])
            + (f"; efficiency {100 * efficiency:.0f}% of {report['world_size']} x "
               f"{report['baseline_images_per_s']:,.0f} images/s (--baseline_images_per_s)"
               if efficiency is not None else "; no --baseline_images_per_s: no scaling efficiency"))


def malloc_line(malloc):
    if malloc is None:
        return None
    if malloc.get("applied") is None:
        return f"malloc: glibc defaults ({malloc['why']})"
    return "malloc: " + ", ".join(f"{k}={v >> 20} MiB" for k, v in malloc["applied"].items()) \
        + " (util.malloc.keep_freed_memory)"


def loader_line(what, row):
    return (f"{what}: {row['images_per_s']:,.0f} images/s, {row['ms_per_batch']:.2f} ms/batch, "
            f"{cores_text(row['cores_used'])}, {row['images_per_cpu_s']:,.0f} images per CPU-second")


def cores_text(cores_used, machine=None):
    """Busy cores = CPU-seconds / wall seconds. Worker processes' CPU time is counted when they
    exit, so a short window can show more than the machine has: then say so instead of a number
    that cannot be."""
    import os
    machine = machine or os.cpu_count() or 1
    if cores_used > machine:
        return f"all {machine} cores busy (measured {cores_used:.2f}: worker CPU time from outside the window)"
    return f"{cores_used:.2f} cores busy"


def data_path_lines(out, method_name):
    lines = [loader_line("data path: device augmentation", out["device_plain"])]
    for key, where in (("device_method", "device"), ("torch_method", "DataLoader (training loader)")):
        if key in out:
            lines.append(loader_line(f"data path: {where}, with {method_name}'s needs "
                                     f"({', '.join(out[key]['needs'])})", out[key]))
    for key, row in out.items():
        if key.startswith("torch_workers_"):
            lines.append(loader_line(f"data path: DataLoader, {row['num_workers']} workers", row))
    if "device_vs_dataloader_per_core" in out:
        lines.append(f"data path: device augmentation gives {out['device_vs_dataloader_per_core']:.1f}x the images "
                     f"per CPU-second of the best DataLoader setting")
    return lines


def step_line(report, steps, repeats, views):
    return (f"training step: {steps['ms_per_step']:.1f} ms/step ({report['images_per_s']:,.0f} images/s"
            + (f", {report['view_images_per_s']:,.0f} view images/s" if views > 1 else "")
            + f"), median of {repeats} x {steps['steps']} steps; warm-up {report['warmup']} steps took "
            f"{steps['warmup_s']:.1f}s; repeats (ms/step): "
            + ", ".join(f"{v:.1f}" for v in steps["ms_per_step_repeats"]))


def memory_line(report):
    return f"peak memory: {report['peak_memory_bytes'] / 2 ** 20:,.0f} MiB ({report['peak_memory_kind']})"


def forward_only_line(method_name, forward_only):
    return (f"forward-only step ({method_name}'s first epoch): {forward_only['ms_per_step']:.1f} ms/step; repeats: "
            + ", ".join(f"{v:.1f}" for v in forward_only["ms_per_step_repeats"]))


def host_syncs_line(syncs):
    return (f"host syncs in {syncs['steps']} steps: {syncs['syncs']} (1 is the loop's metric read-back at the end "
            f"of the interval)")


def epoch_line(projection, steps_per_epoch, evaluation, forward_only):
    return (f"epoch: {projection['train_epoch_s']:.1f}s training ({steps_per_epoch} steps)"
            + (f" + {evaluation['epoch_s']:.1f}s test evaluation" if evaluation else "")
            + (f"; forward-only epoch {projection['forward_only_epoch_s']:.1f}s" if forward_only else ""))


def projection_line(epochs, projection, pretrain):
    estimated = pretrain is not None and "epoch_s_estimate" in pretrain
    return (f"projected {epochs}-epoch run: {fmt_duration(projection['total_without_pretrain_s'])}"
            + (f"; pre-training ({pretrain['epochs']} epochs, skipped here) ~{fmt_duration(projection['pretrain_s'])}"
               f" more" if estimated else ""))


def negative_sampling_line(row):
    return f"negative sampling alone: {row['ms_per_batch']:.2f} ms/batch ({row['negatives']} negatives)"


def criterion_line(row):
    return (f"memory-bank criterion alone (forward{' + backward' if row['backward'] else ''}, "
            f"{row['module']}): {row['ms_per_batch']:.2f} ms/batch ({row['rows']} rows x {row['negatives'] + 1} "
            f"scores)")


def kernel_line(key, row):
    extra = f", {row['iterations']} iterations on this step's inputs" if "iterations" in row else ""
    return (f"{key} alone ({row['function']}): {row['ms_per_call']:.2f} ms/call, {row['calls_per_step']} "
            f"call(s) per step{extra}")


def levers_line(levers):
    return "levers (ms per call): " + ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                                                for k, v in levers.items())


def pretrain_notes(pretrain):
    """Notes on the skipped pre-training stage: its epochs and how its time was estimated."""
    if pretrain is None:
        return []
    if pretrain["epochs"] is None:
        how = "its epochs and time not estimated (--pretrain_steps 0)"
    elif pretrain["epochs"] == 0:
        how = "it made no pass over its loader here (it found a cache, or has 0 epochs): nothing to estimate"
    else:
        how = (f"{pretrain['epochs']} epochs (passes over its loader); its time is estimated from "
               f"{pretrain.get('steps_timed', 0)} steps of the real code")
    notes = [f"pre-training stage skipped; {how}"]
    if pretrain.get("wrote"):
        notes.append(f"the pre-training stage wrote {', '.join(pretrain['wrote'])} (relative to its working "
                     f"directory; a scratch folder here): if that is a cache that later runs load, the stage is a "
                     f"one-time cost")
    return notes


def projection_note(evaluation, forward_only):
    return ("projection: epochs x (train epoch + " + ("one test evaluation)" if evaluation else
                                                     "no test evaluation: --eval_steps 0)")
            + (" + the forward-only first epoch" if forward_only else "") + "; checkpoint writes excluded")
