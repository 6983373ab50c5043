"""The benchmark's flags, and the options train_student.py would build for them.

The benchmark owns only what a training run has no flag for (steps, repeats, synthetic
sizes, what to time). Everything else goes through train_student.py's own parser, so
every default is the real one and each method's own flags (`--nce_k`, `--mixup_num`,
`-b 0.8`, a new method's) pass through without being listed here. The defaults that
differ per data set (models, loader, sizes) are filled here for CIFAR-100 and in
`imagenet.py` for `--dataset imagenet`.
"""
import argparse

from util.errors import UsageError

from .data import CIFAR100_TEST_SIZE, CIFAR100_TRAIN_SIZE, NUM_CLASSES

IMAGENET = "imagenet"
# The benchmark's defaults for the synthetic CIFAR-100 rows (flags left at None).
CIFAR_DEFAULTS = {"model_t": "resnet56", "model_s": "resnet20", "loader": "device", "num_workers": 2,
                  "epochs": 240, "n_data": CIFAR100_TRAIN_SIZE, "n_test": CIFAR100_TEST_SIZE}
# Flags that only a JPEG folder has a use for.
IMAGENET_ONLY = ("data_folder", "generate_data", "image_size", "generated_classes")


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


def _image_size(text):
    """'375x500' -> (375, 500): height x width."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be HEIGHTxWIDTH in pixels, e.g. 375x500, got {text!r}") from None
    if height <= 0 or width <= 0:
        raise argparse.ArgumentTypeError(f"must be positive sizes, got {text!r}")
    return height, width


def build_parser():
    from helper.options import Parser
    # No abbreviations: a prefix of a benchmark flag must not swallow one of train_student.py's.
    p = Parser(description="Time real training steps of one method on synthetic CIFAR-100-shaped data, or on "
                           "ImageNet JPEGs (--dataset imagenet: a folder, or a generated set). "
                           "Flags not listed here go to train_student.py's parser: a method's own flags "
                           "(--nce_k, --mixup_num, --t-epoch, ...) and the loss weights (-r/-a/-b).",
               allow_abbrev=False)
    p.add_argument("--distill", default="kd", help="any name (or alias) of distiller_zoo.METHODS")
    p.add_argument("--dataset", choices=["cifar100", "cifar100_aug", IMAGENET], default="cifar100",
                   help="cifar100(_aug): synthetic noise of CIFAR-100's shape; imagenet: JPEGs read and augmented "
                        "as train_student.py --dataset imagenet reads them")
    p.add_argument("--data_folder", default=None,
                   help="ImageNet only: an ImageNet-layout folder (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG); "
                        "without it a generated set is written to a temporary folder and deleted afterwards")
    p.add_argument("--generate_data", action="store_true",
                   help="ImageNet only: write a generated set into --data_folder when it holds none (and keep it)")
    p.add_argument("--image_size", type=_image_size, default=None,
                   help="ImageNet only: HEIGHTxWIDTH of the generated JPEGs (default 375x500, ImageNet's most "
                        "common size)")
    p.add_argument("--generated_classes", type=_positive, default=None,
                   help="ImageNet only: class folders of the generated set (default 100; the models keep "
                        "ImageNet's 1000 classes)")
    p.add_argument("--model_t", default=None,
                   help="teacher (random weights); default resnet56 (CIFAR-100), resnet34_imagenet (ImageNet)")
    p.add_argument("--model_s", default=None,
                   help="student; default resnet20 (CIFAR-100), resnet18_imagenet (ImageNet)")
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
    p.add_argument("--loader", choices=["device", "torch", "dali", "auto"], default=None,
                   help="training data path: device (default) or torch for CIFAR-100; torch, dali or auto "
                        "(default: DALI on CUDA when installed, else torch, as train_student.py) for ImageNet")
    p.add_argument("--num_workers", type=_non_negative, default=None,
                   help="DataLoader workers (DALI threads) of the training loader; default 2 (CIFAR-100), "
                        "train_student.py's (ImageNet)")
    p.add_argument("--epochs", type=_positive, default=None,
                   help="epochs of the projected run; default the recipe's (240 CIFAR-100, 100 ImageNet)")
    p.add_argument("--n_data", type=_positive, default=None,
                   help=f"synthetic training images (default {CIFAR100_TRAIN_SIZE}); ImageNet: the generated "
                        f"set's, default enough batches that no timed window starts a pass")
    p.add_argument("--n_test", type=_positive, default=None,
                   help=f"synthetic test images (default {CIFAR100_TEST_SIZE}); ImageNet: the generated set's "
                        f"validation images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data_only", action="store_true", help="time only the data path (no model)")
    p.add_argument("--skip_data_path", action="store_true", help="do not time the data path alone")
    p.add_argument("--data_steps", type=_positive, default=None, help="batches per data-path timing (default --steps)")
    p.add_argument("--data_workers", type=_worker_list, default=[0, 2],
                   help="DataLoader worker counts compared with the device path (e.g. 0,2); ImageNet: also "
                        "DALI's thread counts (at least 1)")
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
    if args.dataset == IMAGENET:
        from .imagenet import check_loader
        check_loader(args, method.needs_for(opt))
    elif args.loader == "torch" and VIEWS in method.needs_for(opt):
        raise UsageError(f"--loader torch cannot build {opt.distill}'s extra views (it needs '{VIEWS}'); "
                         f"use --loader device")
    if args.levers and args.compile:
        raise UsageError("--levers times eager teacher variants against each other; run it without --compile")
    return args, opt


def training_options(args, extra=()):
    """The options train_student.py would build for the same flags (all its defaults, each
    method's flags included); --distill is checked and its alias resolved there. Fills the
    data set's defaults into `args`; opt.num_classes is what the models are built with."""
    import train_student
    if args.dataset == IMAGENET:
        from .imagenet import data_flags
    else:
        data_flags = cifar_data_flags
    flags, num_classes = data_flags(args)
    argv = ["--path_t", "(none: random teacher)", "--model_t", args.model_t, "--model_s", args.model_s,
            "--distill", args.distill, "--batch_size", str(args.batch_size), *flags, "--seed", str(args.seed),
            "--device", args.device, *extra]
    argv += [f"--{flag}" for flag in ("amp", "channels_last", "compile", "teacher_bf16") if getattr(args, flag)]
    opt = train_student.parse_args(argv)
    opt.n_data = args.n_data
    opt.num_classes = num_classes
    return opt


def cifar_data_flags(args):
    """-> (train_student.py's data flags, classes of the models) for the synthetic CIFAR-100 rows,
    with the benchmark's CIFAR defaults filled into `args`; UsageError for a flag only ImageNet
    has a use for."""
    from models import model_dict
    given = [f"--{name}" for name in IMAGENET_ONLY if getattr(args, name) not in (None, False)]
    if given or args.loader == "auto":
        flag = given[0] if given else "--loader auto"
        raise UsageError(f"{flag} is for --dataset imagenet; the {args.dataset} rows time synthetic noise "
                         f"(--loader device or torch)")
    for name, value in CIFAR_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.model_t not in model_dict:
        raise UsageError(f"unknown --model_t '{args.model_t}'; valid names: {', '.join(model_dict)}")
    dataset = ["--dataset", args.dataset] if args.dataset != "cifar100" else []
    return ([*dataset, "--loader", args.loader, "--num_workers", str(args.num_workers), "--epochs", str(args.epochs)],
            NUM_CLASSES)
