"""The data path alone: how many images per second (and per CPU-second) each loader gives.

The device path (`dataset.DeviceLoader`: augmentation as batched tensor ops) is compared
with the DataLoader path (`dataset.TorchLoader`: torchvision per-sample transforms in
worker processes), on plain batches and, for the device path, with everything the method
`needs` (indices, negatives, views). CPU-seconds include the workers' (read from /proc),
since a loader that is fast only because it keeps more cores busy is not cheaper.
"""
from .data import FirstSteps
from .timing import CpuMeter, synchronize, timed

# At most this many untimed batches before a data-path timing (--warmup if smaller, at least 1).
MAX_DATA_PATH_WARMUP = 5


def time_loader(loader, steps, warmup, device, repeats=1):
    """Batches of `loader` alone: images/s and images per CPU-second (workers included);
    the fastest of `repeats` windows."""
    for _ in FirstSteps(loader, warmup):
        pass  # starts DataLoader workers, warms caches
    synchronize(device)
    cut = FirstSteps(loader, steps)
    counted = []

    def consume():
        counted.append(sum(len(batch) for batch in cut))

    windows = []
    for _ in range(max(int(repeats), 1)):
        with CpuMeter() as cpu:
            seconds = timed(consume, device)
        windows.append((seconds, cpu))
    seconds, cpu = min(windows, key=lambda w: w[0])
    images = counted[0]
    return {"images_per_s": images / seconds, "ms_per_batch": 1000.0 * seconds / len(cut), "batches": len(cut),
            "cpu_s": cpu.seconds, "cores_used": cpu.seconds / seconds,
            "images_per_cpu_s": images / max(cpu.seconds, 1e-9), "worker_cpu_measured": cpu.measured_children}


def data_path_warmup(args):
    """Untimed batches before each data-path timing: enough to start workers and warm caches."""
    return max(1, min(args.warmup, MAX_DATA_PATH_WARMUP))


def time_data_path(args, opt, data, device, train_loader, needs):
    """{row name: timing}: "device_plain", the training loader with the method's needs
    ("device_method" or "torch_method", when it needs anything), "torch_workers_<n>" per
    --data_workers, and "device_vs_dataloader_per_core"."""
    from dataset import DeviceLoader, TorchLoader
    steps = args.data_steps or args.steps
    warmup = data_path_warmup(args)
    x, y = data["train"]
    out = {"batch_size": opt.batch_size, "batches": steps}
    plain = DeviceLoader(x, y, opt.batch_size, train=True, device=device, seed=opt.seed)
    out["device_plain"] = time_loader(plain, steps, warmup, device, args.repeats)
    del plain
    if needs:
        # the training loader itself, with everything the method asked for
        key = "device_method" if isinstance(train_loader, DeviceLoader) else "torch_method"
        out[key] = time_loader(train_loader, steps, warmup, device, args.repeats)
        out[key]["needs"] = sorted(needs)
    for workers in args.data_workers:
        loader = TorchLoader(x, y, opt.batch_size, train=True, device=device, num_workers=workers, seed=opt.seed)
        row = time_loader(loader, steps, warmup, device, args.repeats)
        row["num_workers"] = workers
        out[f"torch_workers_{workers}"] = row
        del loader
    torch_rows = [v for k, v in out.items() if k.startswith("torch_workers_")]
    if torch_rows:
        best = max(r["images_per_cpu_s"] for r in torch_rows)
        out["device_vs_dataloader_per_core"] = out["device_plain"]["images_per_cpu_s"] / best
    return out
