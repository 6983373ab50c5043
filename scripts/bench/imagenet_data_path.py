"""The ImageNet data path alone: JPEG decoding and the training crop, per path and setting.

Rows: the training loader itself (the path and workers the training step uses, with
everything the method `needs`), the DataLoader path (`dataset.imagenet.ImageNetLoader`:
workers decode with torchvision.io and crop to uint8, normalised on the device) at each
--data_workers count, and NVIDIA DALI (`dataset.imagenet_dali.DALIImageNetLoader`: nvJPEG
on CUDA, its CPU operators otherwise) at each of those counts as its thread count, or a
line saying why DALI was skipped. Each row is `data_path.time_loader` on a fresh loader that
goes on with one pass (`imagenet.ContinuingLoader`): images/s, ms/batch and images per
CPU-second, the DataLoader workers' CPU included, DALI's threads being this process's own.
Rows of several DataLoader workers warm up for and time whole waves of batches
(`imagenet.data_path_timing`): "batches" and "warmup_batches" say how many.
"""
from util.errors import UsageError

from .data_path import time_loader
from .imagenet import ContinuingLoader, data_path_timing, loader_workers, workers_text
from .report import loader_line


def time_imagenet_data_path(args, opt, data, device, needs):
    """{row name: timing}: "training_loader", "torch_workers_<n>" per --data_workers, and
    "dali_threads_<n>" per distinct max(n, 1), or "dali_skipped" (why). `opt.batch_size` is one
    process's batch; every loader here is one process's."""
    from dataset import make_loaders
    from dataset.imagenet import ImageNetLoader, PackedFiles

    def timed_row(loader, waves_of, /, **about):
        """`waves_of`: the loader's DataLoader workers (0 or 1: no waves, DALI's threads)."""
        warmup, steps = data_path_timing(args, waves_of)
        row = time_loader(ContinuingLoader(loader), steps, warmup, device, args.repeats)
        return {**row, "warmup_batches": warmup, **about}

    out = {"batch_size": opt.batch_size, "batches": args.data_steps or args.steps}
    training, _ = make_loaders(opt, data, device, needs)
    kind = "torch" if isinstance(training, ImageNetLoader) else "dali"
    workers = loader_workers(kind, opt.num_workers)
    out["training_loader"] = timed_row(training, workers if kind == "torch" else 1, loader=kind,
                                       num_workers=workers, needs=sorted(needs))
    del training
    files = PackedFiles(data["train"])  # packed once for all the rows
    common = dict(train=True, device=device, seed=opt.seed)
    for workers in args.data_workers:
        out[f"torch_workers_{workers}"] = timed_row(ImageNetLoader(files, opt.batch_size, num_workers=workers,
                                                                   **common), workers, num_workers=workers)
    try:
        from dataset.imagenet_dali import DALIImageNetLoader, import_dali
        import_dali()
    except UsageError as e:
        out["dali_skipped"] = str(e)
        return out
    decoder = "nvJPEG on the GPU" if device.type == "cuda" else "CPU operators"
    for threads in sorted({max(workers, 1) for workers in args.data_workers}):
        out[f"dali_threads_{threads}"] = timed_row(DALIImageNetLoader(files, opt.batch_size, num_workers=threads,
                                                                      **common), 1, threads=threads, decoder=decoder)
    return out


def imagenet_data_path_lines(out, method_name):
    row = out["training_loader"]
    needs = f", with {method_name}'s needs ({', '.join(row['needs'])})" if row["needs"] else ""
    lines = [loader_line(f"data path: training loader ({row['loader']}, "
                         f"{workers_text(row['loader'], row['num_workers'])}{needs})", row)]
    for key, row in out.items():
        if key.startswith("torch_workers_"):
            lines.append(loader_line(f"data path: DataLoader (decode + crop in workers), "
                                     f"{workers_text('torch', row['num_workers'])}", row))
        elif key.startswith("dali_threads_"):
            lines.append(loader_line(f"data path: DALI ({row['decoder']}), {workers_text('dali', row['threads'])}",
                                     row))
    if "dali_skipped" in out:
        lines.append(f"data path: DALI skipped: {out['dali_skipped']}")
    return lines
