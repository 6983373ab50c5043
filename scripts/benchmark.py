"""Speed harness: real training steps of one distillation method on CIFAR-100-shaped data.

    python scripts/benchmark.py --distill crd --model_t resnet56 --model_s resnet20 \
        --steps 20 --warmup 5 --device cpu --threads 2 --json

What runs is what train_student.py runs: the options come from its own parser (so
every default is the real one; unknown flags such as `-b 0.8` pass through to it), the
loaders from `dataset.make_loaders`, the distiller from `distiller_zoo.METHODS`, the
optimizer from `helper.trainer.make_optimizer`, and the steps from
`helper.loops.train_epoch` itself, fed a loader cut to the first N batches of an epoch.
The teacher has random weights (no checkpoint needed) and the data are uniform uint8
noise of CIFAR-100's size (50,000 training and 10,000 test images, 100 classes):
speed does not depend on the pixel values.

Reported: ms/step and images/s of the training step (data path included), the time
of an epoch and the projection for the whole run (epochs x (train + test evaluation),
plus PACKD's forward-only epoch, plus the pre-training stage estimated from a few of
its real steps: the stage itself is skipped), peak memory, the data path alone (device
augmentation vs the DataLoader path, images per CPU-second), and for CRD / PACKD the
negative sampling and the criterion's forward+backward alone. `--levers` adds
micro-benchmarks of the teacher forward (no_grad / inference_mode / bf16 /
channels_last) and of SGD (foreach vs fused). On CUDA the host syncs of a few steps are
counted. With --json the last line of stdout is one JSON object with everything.

Noise: with --repeats R the training steps are timed R times (median and min reported;
the projection uses the median) and every other timing is the fastest of R windows.
"""
import argparse
import copy
import itertools
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import warnings

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import torch  # noqa: E402

from helper.errors import UsageError  # noqa: E402

CIFAR100_TRAIN_SIZE = 50_000
CIFAR100_TEST_SIZE = 10_000
NUM_CLASSES = 100
IMAGE_SHAPE = (3, 32, 32)
# Which option holds the number of pre-training epochs (AB, FT, FSP read init_epochs).
PRETRAIN_EPOCH_OPTION = {"packd": "t_epoch"}
DEFAULT_PRETRAIN_EPOCH_OPTION = "init_epochs"
# Concurrent jobs (--barrier) poll their meeting folder this often, and give up after this long.
BARRIER_POLL_S = 0.01
BARRIER_TIMEOUT_S = 300
# Host syncs are counted over this many steps (CUDA only).
SYNC_CHECK_STEPS = 3
TEACHER_NOTE = "teacher has random weights (speed does not depend on them)"


# ----------------------------------------------------------------------------------
# Options
# ----------------------------------------------------------------------------------
def _positive(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _worker_list(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip() != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers, e.g. 0,2, got {text!r}") from None
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"worker counts must be 0 or more, got {text!r}")
    return values


def build_parser():
    from helper.options import Parser
    p = Parser(description="Time real training steps of one method on synthetic CIFAR-100-shaped data. "
                           "Flags not listed here are passed to train_student.py's parser (e.g. -b 0.8).")
    p.add_argument("--distill", default="kd", help="method name (distiller_zoo.METHODS)")
    p.add_argument("--model_t", default="resnet56", help="teacher (random weights)")
    p.add_argument("--model_s", default="resnet20", help="student")
    p.add_argument("--steps", type=_positive, default=50, help="timed training steps")
    p.add_argument("--warmup", type=_non_negative, default=10, help="untimed steps before timing (and compiling)")
    p.add_argument("--repeats", type=_positive, default=1,
                   help="timing windows: the steps' median (and min) is reported, other timings take the fastest")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--threads", type=_positive, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--json", action="store_true", help="last line of stdout: one JSON object")
    p.add_argument("--label", default=None, help="free text copied into the JSON (e.g. a row name)")
    p.add_argument("--batch_size", type=_positive, default=64)
    p.add_argument("--nce_k", type=_positive, default=16384, help="negatives per sample (CRD, PACKD)")
    p.add_argument("--mixup_num", type=int, default=3, help="PACKD mixed views per sample")
    p.add_argument("--amp", action="store_true", help="bf16 autocast")
    p.add_argument("--channels_last", action="store_true")
    p.add_argument("--teacher_bf16", action="store_true", help="teacher forward in bf16 autocast (student float32)")
    p.add_argument("--compile", action="store_true", help="torch.compile the student and the teacher (warm-up steps compile)")
    p.add_argument("--loader", choices=["device", "torch"], default="device", help="training data path")
    p.add_argument("--num_workers", type=_non_negative, default=2, help="DataLoader workers for --loader torch")
    p.add_argument("--epochs", type=_positive, default=240, help="epochs of the projected run")
    p.add_argument("--n_data", type=_positive, default=CIFAR100_TRAIN_SIZE, help="synthetic training images")
    p.add_argument("--n_test", type=_positive, default=CIFAR100_TEST_SIZE, help="synthetic test images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data_only", action="store_true", help="time only the data path (no model)")
    p.add_argument("--skip_data_path", action="store_true", help="do not time the data path alone")
    p.add_argument("--data_steps", type=_positive, default=None, help="batches per data-path timing (default --steps)")
    p.add_argument("--data_workers", type=_worker_list, default=[0, 2],
                   help="DataLoader worker counts compared with the device path (e.g. 0,2)")
    p.add_argument("--eval_steps", type=_non_negative, default=None,
                   help="test batches timed for the per-epoch evaluation (default min(--steps, a test epoch); 0: skip)")
    p.add_argument("--pretrain_steps", type=_non_negative, default=None,
                   help="steps of the method's pre-training code timed for its estimate (default --steps; 0: skip)")
    p.add_argument("--barrier", default=None,
                   help="folder shared by concurrent jobs: after warm-up each job waits here until "
                        "--barrier_count jobs are warm, so their timed windows overlap")
    p.add_argument("--barrier_count", type=_positive, default=1, help="jobs meeting at --barrier")
    p.add_argument("--levers", action="store_true",
                   help="also time teacher forward variants and SGD foreach vs fused")
    return p


def parse_args(argv=None):
    """-> (benchmark args, train_student options Namespace)."""
    args, extra = build_parser().parse_known_args(argv)
    opt = training_options(args, extra)
    if args.loader == "torch" and opt.distill == "packd":
        raise UsageError("--loader torch cannot build packd's extra views; use --loader device")
    if args.levers and args.compile:
        raise UsageError("--levers times eager teacher variants against each other; run it without --compile")
    return args, opt


def training_options(args, extra=()):
    """The options train_student.py would build for the same flags (all its defaults)."""
    import train_student
    from models import model_dict
    if args.model_t not in model_dict:
        raise UsageError(f"unknown --model_t '{args.model_t}'; valid names: {', '.join(model_dict)}")
    argv = ["--path_t", "(none: random teacher)", "--model_t", args.model_t, "--model_s", args.model_s,
            "--distill", args.distill, "--batch_size", str(args.batch_size), "--nce_k", str(args.nce_k),
            "--mixup_num", str(args.mixup_num), "--loader", args.loader, "--num_workers", str(args.num_workers),
            "--epochs", str(args.epochs), "--seed", str(args.seed), "--device", args.device, *extra]
    argv += [f"--{flag}" for flag in ("amp", "channels_last", "compile", "teacher_bf16") if getattr(args, flag)]
    opt = train_student.parse_args(argv)
    opt.n_data = args.n_data
    return opt


# ----------------------------------------------------------------------------------
# Data, loaders, timing helpers
# ----------------------------------------------------------------------------------
def synthetic_cifar100(n_train, n_test, seed=0):
    """{"train": (uint8 (N,3,32,32), int64 labels), "test": ...}: uniform noise, balanced classes."""
    g = torch.Generator().manual_seed(seed)

    def split(n):
        images = torch.randint(0, 256, (n, *IMAGE_SHAPE), generator=g, dtype=torch.uint8)
        labels = torch.arange(n) % NUM_CLASSES
        return images, labels[torch.randperm(n, generator=g)]

    return {"train": split(n_train), "test": split(n_test)}


class FirstSteps:
    """The first `steps` batches of an epoch of `loader`, with the loader interface
    train_epoch / evaluate / pretrain use (len, iterate(skip), iteration)."""

    def __init__(self, loader, steps):
        self.loader = loader
        self.steps = min(int(steps), len(loader))

    def __len__(self):
        return self.steps

    def iterate(self, skip=0):
        return itertools.islice(self.loader.iterate(skip), max(self.steps - skip, 0))

    def __iter__(self):
        return self.iterate()


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device):
    """Seconds taken by fn(): CUDA events on the GPU (work finished), perf_counter on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def timed_best(fn, device, repeats):
    """Fastest of `repeats` timings of fn() (seconds): on a shared machine noise only adds time."""
    return min(timed(fn, device) for _ in range(max(int(repeats), 1)))


def _children_cpu_seconds():
    """{pid: CPU seconds} of this process's live children (DataLoader workers); None off Linux."""
    if not os.path.isdir("/proc"):
        return None
    me, tick = os.getpid(), os.sysconf("SC_CLK_TCK")
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # fields after "(comm)": state, ppid, ...
        if len(fields) > 12 and int(fields[1]) == me:
            out[int(entry)] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return out


class CpuMeter:
    """CPU seconds used by this process (all threads) and its live child processes."""

    def __enter__(self):
        self.children0 = _children_cpu_seconds()
        self.self0 = time.process_time()
        return self

    def __exit__(self, *exc):
        self.seconds = time.process_time() - self.self0
        children = _children_cpu_seconds()
        self.measured_children = children is not None and self.children0 is not None
        if self.measured_children:
            self.seconds += sum(cpu - self.children0.get(pid, 0.0) for pid, cpu in children.items())
        return False


def peak_memory(device):
    """(bytes, what was measured)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "torch.cuda.max_memory_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss * (1 if sys.platform == "darwin" else 1024), "ru_maxrss (whole process)"


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


# ----------------------------------------------------------------------------------
# Measurements
# ----------------------------------------------------------------------------------
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


def time_data_path(args, opt, data, device, train_loader, needs, log):
    """Device augmentation vs the DataLoader path (plain crop/flip/normalise batches),
    and the device path with everything this method needs (indices, negatives, views)."""
    from dataset import DeviceLoader, TorchLoader
    steps = args.data_steps or args.steps
    warmup = max(1, min(args.warmup, 5))
    x, y = data["train"]
    out = {"batch_size": opt.batch_size, "batches": steps}
    plain = DeviceLoader(x, y, opt.batch_size, train=True, device=device, seed=opt.seed)
    out["device_plain"] = time_loader(plain, steps, warmup, device, args.repeats)
    del plain
    log_row(log, "data path: device augmentation", out["device_plain"])
    if needs:
        # the training loader itself, with everything the method asked for
        on_device = isinstance(train_loader, DeviceLoader)
        key = "device_method" if on_device else "torch_method"
        out[key] = time_loader(train_loader, steps, warmup, device, args.repeats)
        out[key]["needs"] = sorted(needs)
        log_row(log, f"data path: {'device' if on_device else 'DataLoader (training loader)'}, with "
                     f"{opt.distill}'s needs ({', '.join(sorted(needs))})", out[key])
    for workers in args.data_workers:
        loader = TorchLoader(x, y, opt.batch_size, train=True, device=device, num_workers=workers, seed=opt.seed)
        row = time_loader(loader, steps, warmup, device, args.repeats)
        row["num_workers"] = workers
        out[f"torch_workers_{workers}"] = row
        del loader
        log_row(log, f"data path: DataLoader, {workers} workers", row)
    torch_rows = [v for k, v in out.items() if k.startswith("torch_workers_")]
    if torch_rows:
        best = max(r["images_per_cpu_s"] for r in torch_rows)
        out["device_vs_dataloader_per_core"] = out["device_plain"]["images_per_cpu_s"] / best
        log(f"data path: device augmentation gives {out['device_vs_dataloader_per_core']:.1f}x the images per "
            f"CPU-second of the best DataLoader setting")
    return out


def log_row(log, what, row):
    log(f"{what}: {row['images_per_s']:,.0f} images/s, {row['ms_per_batch']:.2f} ms/batch, "
        f"{row['cores_used']:.2f} cores busy, {row['images_per_cpu_s']:,.0f} images per CPU-second")


def build_distiller(opt, device):
    """Teacher (random weights), student and distiller exactly as train_student.main builds them."""
    from distiller_zoo import METHODS
    from distiller_zoo._base import resolve_weights
    from helper.trainer import make_optimizer
    from models import model_dict
    from train_teacher import prepare_model
    method = METHODS[opt.distill]
    weights = resolve_weights(method, opt)
    opt.gamma, opt.alpha, opt.beta = weights["gamma"], weights["alpha"], weights["beta"]
    teacher = prepare_model(model_dict[opt.model_t](num_classes=NUM_CLASSES).eval(), opt, device)
    student = prepare_model(model_dict[opt.model_s](num_classes=NUM_CLASSES), opt, device)
    distiller = method(student, teacher, opt).to(device)
    optimizer = make_optimizer(distiller.trainable_parameters(), opt, device)
    return distiller, optimizer


def time_steps(distiller, optimizer, loader, args, opt, device, forward_only=False):
    """Warm-up, then `repeats` timings of `steps` steps of helper.loops.train_epoch."""
    from helper.loops import train_epoch, uses_cuda_graphs

    def run(steps):
        train_epoch(distiller, FirstSteps(loader, steps), optimizer, 1, device, amp=opt.amp,
                    forward_only=forward_only, print_freq=opt.print_freq, cuda_graph_steps=uses_cuda_graphs(opt))

    warmup_s = timed(lambda: run(args.warmup), device) if args.warmup else 0.0
    if getattr(args, "barrier", None) and not forward_only:
        wait_at_barrier(args.barrier, args.barrier_count)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    steps = min(args.steps, len(loader))
    seconds, start_unix = [], time.time()
    for _ in range(args.repeats):
        seconds.append(timed(lambda: run(steps), device))
    end_unix = time.time()
    per_step = [s / steps for s in seconds]
    return {"ms_per_step": 1000.0 * statistics.median(per_step), "ms_per_step_min": 1000.0 * min(per_step),
            "ms_per_step_repeats": [1000.0 * s for s in per_step],
            "steps": steps, "warmup_s": warmup_s, "timed_start_unix": start_unix, "timed_end_unix": end_unix}


def wait_at_barrier(folder, count, timeout_s=BARRIER_TIMEOUT_S):
    """Announce this job in `folder` and wait until `count` jobs have (concurrent timings)."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"ready.{os.getpid()}"), "w"):
        pass
    deadline = time.time() + timeout_s
    while sum(name.startswith("ready.") for name in os.listdir(folder)) < count:
        if time.time() > deadline:
            raise UsageError(f"--barrier '{folder}': only some of the {count} jobs arrived within {timeout_s}s")
        time.sleep(BARRIER_POLL_S)


def time_evaluation(distiller, test_loader, args, opt, device):
    """Seconds of one test-set evaluation (the trainer runs one after every epoch)."""
    from helper.loops import evaluate
    batches = min(args.steps if args.eval_steps is None else args.eval_steps, len(test_loader))
    if batches == 0:
        return None
    evaluate(distiller, FirstSteps(test_loader, 1), device, amp=opt.amp)
    seconds = timed_best(lambda: evaluate(distiller, FirstSteps(test_loader, batches), device, amp=opt.amp), device,
                         args.repeats)
    return {"ms_per_batch": 1000.0 * seconds / batches, "batches_timed": batches,
            "batch_size": test_loader.batch_size, "epoch_s": seconds / batches * len(test_loader)}


def time_pretrain(distiller, train_loader, args, opt, device):
    """The method's pre-training stage, estimated from a few steps of its real code.

    The stage runs with one (cut) epoch; PACKD's head cache goes to a temporary folder.
    Its once-per-epoch costs (a loss read-back, PACKD's head-cache write) are included.
    """
    from distiller_zoo._base import Distiller
    if type(distiller).pretrain is Distiller.pretrain:
        return None
    option = PRETRAIN_EPOCH_OPTION.get(opt.distill, DEFAULT_PRETRAIN_EPOCH_OPTION)
    info = {"epochs": int(getattr(opt, option)), "epochs_option": option, "skipped": True}
    steps = args.steps if args.pretrain_steps is None else args.pretrain_steps
    steps = min(steps, len(train_loader))
    if steps == 0:
        return info
    quiet = lambda *a, **k: None  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        def run(n, folder):
            cut = copy.copy(opt)
            setattr(cut, option, 1)
            cut.head_cache_dir = os.path.join(tmp, folder)
            distiller.pretrain(FirstSteps(train_loader, n), cut, device, log=quiet)

        if args.warmup:
            run(max(1, min(args.warmup, steps)), "warmup")
        seconds = timed(lambda: run(steps, "timed"), device)
    distiller.train()
    info.update({"ms_per_step_estimate": 1000.0 * seconds / steps, "steps_timed": steps,
                 "epoch_s_estimate": seconds / steps * len(train_loader)})
    return info


def project_run(step_s, steps_per_epoch, epochs, eval_epoch_s=0.0, forward_only_step_s=None, pretrain_epoch_s=None,
                pretrain_epochs=0):
    """Seconds of a whole run: epochs x (train epoch + test evaluation), plus a forward-only
    epoch (PACKD, evaluated too) and the pre-training stage when given."""
    train_epoch_s = step_s * steps_per_epoch
    main_s = epochs * (train_epoch_s + eval_epoch_s)
    forward_only_s = 0.0 if forward_only_step_s is None else forward_only_step_s * steps_per_epoch + eval_epoch_s
    pretrain_s = 0.0 if pretrain_epoch_s is None else pretrain_epoch_s * pretrain_epochs
    return {"train_epoch_s": train_epoch_s, "main_s": main_s, "forward_only_epoch_s": forward_only_s,
            "pretrain_s": pretrain_s, "total_s": main_s + forward_only_s + pretrain_s,
            "total_without_pretrain_s": main_s + forward_only_s}


def time_negative_sampling(sampler, args, opt, device):
    """NegativeSampler.sample alone on random batches of indices (ms per batch)."""
    g = torch.Generator(device=device).manual_seed(opt.seed)
    batches = [torch.randperm(sampler.n_data, generator=g, device=device)[:opt.batch_size]
               for _ in range(args.steps)]

    def run(n):
        for index in batches[:n]:
            sampler.sample(index, g)

    run(max(1, min(args.warmup, args.steps)))
    seconds = timed_best(lambda: run(args.steps), device, args.repeats)
    return {"ms_per_batch": 1000.0 * seconds / args.steps, "negatives": sampler.nce_k}


def contrast_criterion(distiller):
    """(criterion, student dim, teacher dim) of a memory-bank method (CRD, PACKD), else None."""
    criterion = getattr(distiller, "criterion_kd", None) if distiller.name == "crd" else \
        getattr(distiller, "criterion", None) if distiller.name == "packd" else None
    if criterion is None:
        return None
    s_dim = criterion.embed_s.linear.in_features
    linear_t = criterion.embed_t.linear
    t_dim = linear_t.in_features if linear_t is not None else criterion.feat_dim
    return criterion, s_dim, t_dim


def time_criterion(distiller, sampler, views, args, opt, device):
    """The memory-bank criterion alone: forward + backward on random features (ms per batch)."""
    from helper.loops import autocast_context
    found = contrast_criterion(distiller)
    if found is None:
        return None
    criterion, s_dim, t_dim = found
    g = torch.Generator(device=device).manual_seed(opt.seed)
    rows = opt.batch_size * views
    index = torch.randperm(sampler.n_data, generator=g, device=device)[:opt.batch_size]
    contrast_index = sampler.sample(index, g)
    f_s = torch.randn(rows, s_dim, device=device, generator=g, requires_grad=True)
    f_t = torch.randn(rows, t_dim, device=device, generator=g)

    def run(n):
        for _ in range(n):
            with autocast_context(device, opt.amp):
                loss = criterion(f_s, f_t, index, contrast_index)
            for p in itertools.chain([f_s], criterion.parameters()):
                p.grad = None
            loss.backward()

    run(max(1, min(args.warmup, args.steps)))
    seconds = timed_best(lambda: run(args.steps), device, args.repeats)
    return {"ms_per_batch": 1000.0 * seconds / args.steps, "rows": rows, "negatives": opt.nce_k}


def time_sinkhorn(distiller, views, args, opt, device):
    """PACKD's Sinkhorn plan alone (random unit embeddings; iterations depend on the data)."""
    from distiller_zoo.PACKD import sinkhorn_plan
    criterion = distiller.criterion
    g = torch.Generator(device=device).manual_seed(opt.seed)
    x = torch.nn.functional.normalize(torch.randn(opt.batch_size, views, criterion.feat_dim, generator=g,
                                                  device=device), dim=-1)
    y = torch.nn.functional.normalize(torch.randn(x.shape, generator=g, device=device), dim=-1)

    def run(n):
        for _ in range(n):
            sinkhorn_plan(x, y, criterion.ops_eps, criterion.ops_err_thres,
                          check_every=criterion.sinkhorn_check_every)

    run(1)
    seconds = timed_best(lambda: run(args.steps), device, args.repeats)
    _, iterations = sinkhorn_plan(x, y, criterion.ops_eps, criterion.ops_err_thres,
                                  check_every=criterion.sinkhorn_check_every, return_iterations=True)
    return {"ms_per_call": 1000.0 * seconds / args.steps, "iterations": int(iterations),
            "check_every": ("2, 4, 8, ... (default)" if criterion.sinkhorn_check_every is None
                            else criterion.sinkhorn_check_every)}


def count_host_syncs(distiller, optimizer, loader, opt, device):
    """Synchronising CUDA calls in SYNC_CHECK_STEPS steps of train_epoch (torch's sync debug mode).

    One of them is the loop's designed metric read-back at the last step of the interval.
    """
    from helper.loops import train_epoch, uses_cuda_graphs
    torch.cuda.synchronize(device)
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            train_epoch(distiller, FirstSteps(loader, SYNC_CHECK_STEPS), optimizer, 1, device, amp=opt.amp,
                        print_freq=opt.print_freq, cuda_graph_steps=uses_cuda_graphs(opt))
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    syncs = [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message).lower()]
    return {"steps": SYNC_CHECK_STEPS, "syncs": len(syncs), "includes_loop_readback": 1,
            "first": syncs[:3]}


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


# ----------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------
def run_benchmark(args, opt, log=print):
    from dataset import make_loaders
    from distiller_zoo import METHODS
    from distiller_zoo._base import CONTRAST_INDEX, VIEWS
    from helper.util import resolve_device, seed_everything

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(opt.device)
    seed_everything(opt.seed, opt.deterministic)
    method = METHODS[opt.distill]
    notes = [TEACHER_NOTE, "synthetic uint8 noise of CIFAR-100's shape and size (speed does not depend on "
             "the pixels)"]
    report = {
        "label": args.label, "method": opt.distill, "model_t": opt.model_t, "model_s": opt.model_s,
        "device": str(device), "device_name": device_name(device), "torch_version": torch.__version__,
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "options": {"amp": opt.amp, "teacher_bf16": opt.teacher_bf16, "channels_last": opt.channels_last,
                    "compile": opt.compile,
                    "loader": opt.loader, "num_workers": opt.num_workers if opt.loader == "torch" else None,
                    "batch_size": opt.batch_size, "nce_k": opt.nce_k,
                    "mixup_num": opt.mixup_num if VIEWS in method.needs else None},
        "n_data": args.n_data, "n_test": args.n_test, "epochs": opt.epochs,
        "warmup": args.warmup, "repeats": args.repeats,
    }
    log(f"benchmark {opt.distill}: {opt.model_t} -> {opt.model_s} on {device} ({report['device_name']}), torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads; batch {opt.batch_size}, options "
        + ", ".join(f"{k}={v}" for k, v in report["options"].items() if v is not None))

    data = synthetic_cifar100(args.n_data, args.n_test, opt.seed)
    train_loader, test_loader = make_loaders(opt, data, device, method.needs)
    opt.n_data = train_loader.num_samples
    opt.steps_per_epoch = len(train_loader)
    report["steps_per_epoch"] = opt.steps_per_epoch
    views = train_loader.views.num_views if getattr(train_loader, "views", None) is not None else 1
    report["views"] = views

    if not args.skip_data_path:
        report["data_path"] = time_data_path(args, opt, data, device, train_loader, method.needs, log)
    if args.data_only:
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

    distiller, optimizer = build_distiller(opt, device)
    report["loss_weights"] = {"gamma": opt.gamma, "alpha": opt.alpha, "beta": opt.beta}
    report["options"]["fused_sgd"] = bool(optimizer.defaults.get("fused"))
    steps = time_steps(distiller, optimizer, train_loader, args, opt, device)
    report["peak_memory_bytes"], report["peak_memory_kind"] = peak_memory(device)
    report.update(steps)
    step_s = steps["ms_per_step"] / 1000.0
    report["images_per_s"] = opt.batch_size / step_s
    if views > 1:
        report["view_images_per_s"] = opt.batch_size * views / step_s
    log(f"training step: {steps['ms_per_step']:.1f} ms/step ({report['images_per_s']:,.0f} images/s"
        + (f", {report['view_images_per_s']:,.0f} view images/s" if views > 1 else "")
        + f"), median of {args.repeats} x {steps['steps']} steps; warm-up {args.warmup} steps took "
        f"{steps['warmup_s']:.1f}s; repeats (ms/step): "
        + ", ".join(f"{v:.1f}" for v in steps["ms_per_step_repeats"]))
    log(f"peak memory: {report['peak_memory_bytes'] / 2 ** 20:,.0f} MiB ({report['peak_memory_kind']})")

    evaluation = time_evaluation(distiller, test_loader, args, opt, device)
    report["evaluation"] = evaluation
    forward_only = None
    if distiller.forward_only_first_epoch:
        fo_args = copy.copy(args)
        fo_args.warmup = min(args.warmup, 2)
        forward_only = time_steps(distiller, optimizer, train_loader, fo_args, opt, device, forward_only=True)
        report["forward_only_ms_per_step"] = forward_only["ms_per_step"]
        report["forward_only_ms_per_step_repeats"] = forward_only["ms_per_step_repeats"]
        log(f"forward-only step (packd's first epoch): {forward_only['ms_per_step']:.1f} ms/step; repeats: "
            + ", ".join(f"{v:.1f}" for v in forward_only["ms_per_step_repeats"]))
    if device.type == "cuda":
        report["host_syncs"] = count_host_syncs(distiller, optimizer, train_loader, opt, device)
        log(f"host syncs in {SYNC_CHECK_STEPS} steps: {report['host_syncs']['syncs']} (1 is the loop's "
            f"metric read-back at the end of the interval)")
    pretrain = time_pretrain(distiller, train_loader, args, opt, device)
    report["pretrain"] = pretrain
    if pretrain is not None:
        notes.append(f"pre-training stage skipped ({pretrain['epochs']} epochs, --{pretrain['epochs_option']}); "
                     + ("its time is estimated from the real code on a few steps" if "epoch_s_estimate" in pretrain
                        else "not estimated (--pretrain_steps 0)"))
        if opt.distill == "packd":
            notes.append("packd's head is cached per teacher (<head_cache_dir>/<model_t>_embed.pth): "
                         "a one-time cost per teacher")

    projection = project_run(step_s, opt.steps_per_epoch, opt.epochs,
                             evaluation["epoch_s"] if evaluation else 0.0,
                             forward_only["ms_per_step"] / 1000.0 if forward_only else None,
                             pretrain.get("epoch_s_estimate") if pretrain else None,
                             pretrain["epochs"] if pretrain else 0)
    report["epoch_s"] = projection["train_epoch_s"]
    report["projection"] = projection
    report["projected_run_s"] = projection["total_without_pretrain_s"]
    report["projected_run_with_pretrain_s"] = projection["total_s"]
    notes.append("projection: epochs x (train epoch + " + ("one test evaluation)" if evaluation else
                                                          "no test evaluation: --eval_steps 0)")
                 + (" + the forward-only first epoch" if forward_only else "")
                 + "; checkpoint writes excluded")
    log(f"epoch: {projection['train_epoch_s']:.1f}s training ({opt.steps_per_epoch} steps)"
        + (f" + {evaluation['epoch_s']:.1f}s test evaluation" if evaluation else "")
        + (f"; forward-only epoch {projection['forward_only_epoch_s']:.1f}s" if forward_only else ""))
    log(f"projected {opt.epochs}-epoch run: {fmt_duration(projection['total_without_pretrain_s'])}"
        + (f"; pre-training ({pretrain['epochs']} epochs, skipped here) ~{fmt_duration(projection['pretrain_s'])}"
           f" more" if pretrain and "epoch_s_estimate" in pretrain else ""))

    if CONTRAST_INDEX in method.needs and train_loader.negatives is not None:
        report["negative_sampling"] = time_negative_sampling(train_loader.negatives, args, opt, device)
        log(f"negative sampling alone: {report['negative_sampling']['ms_per_batch']:.2f} ms/batch "
            f"({opt.nce_k} negatives)")
        criterion = time_criterion(distiller, train_loader.negatives, views, args, opt, device)
        if criterion is not None:
            report["criterion"] = criterion
            log(f"memory-bank criterion alone (forward + backward): {criterion['ms_per_batch']:.2f} ms/batch "
                f"({criterion['rows']} rows x {opt.nce_k + 1} scores)")
        if opt.distill == "packd":
            report["sinkhorn"] = time_sinkhorn(distiller, views, args, opt, device)
            log(f"sinkhorn plan alone: {report['sinkhorn']['ms_per_call']:.2f} ms/call "
                f"({report['sinkhorn']['iterations']} iterations on random embeddings)")
    if args.levers:
        report["levers"] = time_levers(distiller, optimizer, train_loader, args, opt, device)
        log("levers (ms per call): " + ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                                                  for k, v in report["levers"].items()))
    report["notes"] = notes
    for note in notes:
        log(f"note: {note}")
    return report


def fmt_duration(seconds):
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def main(argv=None):
    args, opt = parse_args(argv)
    log = lambda text: print(text, flush=True)  # noqa: E731
    report = run_benchmark(args, opt, log)
    if args.json:
        print(json.dumps(report), flush=True)
    return report


if __name__ == "__main__":
    from helper.trainer import run_guarded
    run_guarded(lambda: main())
