"""The benchmark's flags, and the options train_student.py would build for them.

The benchmark owns only what a training run has no flag for (steps, repeats, synthetic
sizes, what to time). Everything else goes through train_student.py's own parser, so
every default is the real one and each method's own flags (`--nce_k`, `--mixup_num`,
`-b 0.8`, a new method's) pass through without being listed here.
"""
import argparse

from util.errors import UsageError

from .data import CIFAR100_TEST_SIZE, CIFAR100_TRAIN_SIZE


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


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
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
    # No abbreviations: a prefix of a benchmark flag must not swallow one of train_student.py's.
    p = Parser(description="Time real training steps of one method on synthetic CIFAR-100-shaped data. "
                           "Flags not listed here go to train_student.py's parser: a method's own flags "
                           "(--nce_k, --mixup_num, --t-epoch, ...) and the loss weights (-r/-a/-b).",
               allow_abbrev=False)
    p.add_argument("--distill", default="kd", help="any name (or alias) of distiller_zoo.METHODS")
    p.add_argument("--model_t", default="resnet56", help="teacher (random weights)")
    p.add_argument("--model_s", default="resnet20", help="student")
    p.add_argument("--steps", type=_positive, default=50, help="timed training steps")
    p.add_argument("--warmup", type=_non_negative, default=10, help="untimed steps before timing (and compiling)")
    p.add_argument("--repeats", type=_positive, default=1,
                   help="timing windows: the steps' median (and min) is reported, other timings take the fastest")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--threads", type=_positive, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--no_malloc_tuning", action="store_true",
                   help="on the CPU, keep glibc's malloc defaults (util.malloc.keep_freed_memory is applied "
                        "otherwise, as the training scripts do)")
    p.add_argument("--json", action="store_true", help="last line of stdout: one JSON object")
    p.add_argument("--label", default=None, help="free text copied into the JSON (e.g. a row name)")
    p.add_argument("--batch_size", type=_positive, default=64)
    p.add_argument("--amp", action="store_true", help="bf16 autocast")
    p.add_argument("--channels_last", action="store_true")
    p.add_argument("--teacher_bf16", action="store_true", help="teacher forward in bf16 autocast (student float32)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the student and the teacher (warm-up steps compile)")
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
                   help="steps of the method's pre-training stage timed for its estimate (default --steps; 0: skip)")
    p.add_argument("--barrier", default=None,
                   help="folder shared by concurrent jobs: after warm-up each job waits here until "
                        "--barrier_count jobs are warm, so their timed windows overlap (a torchrun job "
                        "counts once: its rank 0 announces it)")
    p.add_argument("--barrier_count", type=_positive, default=1, help="jobs meeting at --barrier")
    p.add_argument("--baseline_images_per_s", type=_positive_float, default=None,
                   help="images/s of the same row in one process (e.g. the 1-GPU torchrun row): under torchrun "
                        "the report adds scaling_efficiency = aggregate images/s / (processes x this)")
    p.add_argument("--levers", action="store_true",
                   help="also time teacher forward variants and SGD foreach vs fused")
    return p


def parse_args(argv=None):
    """-> (benchmark args, train_student options Namespace); UsageError on bad input."""
    from dataset.batch import VIEWS
    from distiller_zoo import method_named
    args, extra = build_parser().parse_known_args(argv)
    opt = training_options(args, extra)
    method = method_named(opt.distill)
    if args.loader == "torch" and VIEWS in method.needs_for(opt):
        raise UsageError(f"--loader torch cannot build {opt.distill}'s extra views (it needs '{VIEWS}'); "
                         f"use --loader device")
    if args.levers and args.compile:
        raise UsageError("--levers times eager teacher variants against each other; run it without --compile")
    return args, opt


def training_options(args, extra=()):
    """The options train_student.py would build for the same flags (all its defaults, each
    method's flags included); --distill is checked and its alias resolved there."""
    import train_student
    from models import model_dict
    if args.model_t not in model_dict:
        raise UsageError(f"unknown --model_t '{args.model_t}'; valid names: {', '.join(model_dict)}")
    argv = ["--path_t", "(none: random teacher)", "--model_t", args.model_t, "--model_s", args.model_s,
            "--distill", args.distill, "--batch_size", str(args.batch_size), "--loader", args.loader,
            "--num_workers", str(args.num_workers), "--epochs", str(args.epochs), "--seed", str(args.seed),
            "--device", args.device, *extra]
    argv += [f"--{flag}" for flag in ("amp", "channels_last", "compile", "teacher_bf16") if getattr(args, flag)]
    opt = train_student.parse_args(argv)
    opt.n_data = args.n_data
    return opt
