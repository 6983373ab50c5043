"""Command-line flags shared by train_teacher.py and train_student.py.

Names and defaults follow RepDistiller (and the PACKD authors' copies of its scripts),
so commands pasted from their READMEs work unchanged.
"""
import argparse
import os
import sys
import zlib

from util.errors import UsageError

SMALL_LR_MODELS = ("MobileNetV2", "ShuffleV1", "ShuffleV2")
# The reference scripts force this rate for SMALL_LR_MODELS, whatever --learning_rate says.
SMALL_LR = 0.01
DEFAULT_LR = 0.05
DATA_FOLDER = "./data"                      # where real CIFAR-100 is looked for (and downloaded)
GENERATED_DATA_FOLDER = "./data_generated"  # where --generate_data writes unless told otherwise


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (exit code 2) instead of usage + error, and defaults in --help."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def add_training_arguments(p, compile_help="torch.compile the model"):
    g = p.add_argument_group("training (RepDistiller defaults)")
    g.add_argument("--print_freq", type=int, default=100, help="steps between progress updates (metric read-backs)")
    g.add_argument("--tb_freq", type=int, default=500, help="accepted for compatibility; TensorBoard logs per epoch")
    g.add_argument("--save_freq", type=int, default=40, help="write ckpt_epoch_N.pth every N epochs")
    g.add_argument("--batch_size", type=int, default=None, help="global batch: 64 (CIFAR-100), 256 (ImageNet)")
    g.add_argument("--test_batch_size", type=int, default=None,
                   help="test batches: default --batch_size on the CPU, 500 on CUDA (fewer kernel launches; "
                        "BatchNorm is in eval mode, so the results are the same up to float rounding)")
    g.add_argument("--num_workers", type=int, default=8, help="DataLoader workers (--loader torch only)")
    g.add_argument("--epochs", type=int, default=None, help="240 (CIFAR-100), 100 (ImageNet)")
    g.add_argument("--learning_rate", type=float, default=None,
                   help=f"default {DEFAULT_LR}; {SMALL_LR} for {'/'.join(SMALL_LR_MODELS)} (as the reference scripts)")
    g.add_argument("--lr_decay_epochs", type=str, default=None,
                   help="comma-separated milestones: 150,180,210 (CIFAR-100), 30,60,90 (ImageNet)")
    g.add_argument("--lr_decay_rate", type=float, default=0.1)
    g.add_argument("--weight_decay", type=float, default=None, help="5e-4 (CIFAR-100), 1e-4 (ImageNet)")
    g.add_argument("--momentum", type=float, default=0.9)
    g.add_argument("--dataset", type=str, default="cifar100", choices=["cifar100", "cifar100_aug", "imagenet"],
                   help="cifar100_aug: crop/flip + the PACKD authors' CIFAR10Policy (fill 128) + Cutout 16, batched on the "
                        "device (their train_teacher.py option); imagenet: --data_folder holds train/<wnid>/*.JPEG and "
                        "val/<wnid>/*.JPEG, the authors' ImageNet recipe")
    g = p.add_argument_group("this project")
    g.add_argument("--data_folder", type=str, default=None,
                   help=f"holds cifar-100-python/ (downloaded if absent); default {DATA_FOLDER}, or "
                        f"{GENERATED_DATA_FOLDER} with --generate_data")
    g.add_argument("--generate_data", action="store_true",
                   help="offline quickstart: write a small generated data set in the CIFAR-100 format to "
                        "--data_folder when it holds none (marked as generated; never real results)")
    g.add_argument("--save_dir", type=str, default="save", help="root of the run folders")
    g.add_argument("--seed", type=int, default=None, help="default: derived from --trial")
    g.add_argument("--device", type=str, default="auto", help="cuda when available, else cpu")
    g.add_argument("--loader", choices=["device", "torch", "dali"], default=None,
                   help="device: data set on the device, batched augmentation; torch: DataLoader workers")
    g.add_argument("--amp", action="store_true", help="bf16 autocast (changes numerics)")
    g.add_argument("--channels_last", action="store_true", help="channels_last memory format")
    g.add_argument("--compile", action="store_true", help=compile_help)
    g.add_argument("--compile_mode", type=str, default="default",
                   choices=["default", "reduce-overhead", "max-autotune"],
                   help="torch.compile mode; reduce-overhead uses CUDA graphs (GPU)")
    g.add_argument("--deterministic", action="store_true", help="deterministic algorithms (bit-exact resume)")
    g.add_argument("--sync_bn", action="store_true",
                   help="under torchrun: SyncBatchNorm for the student and the method's modules (BatchNorm "
                        "statistics over the global batch instead of each process's slice)")
    g.add_argument("--dist_timeout", type=int, default=180,
                   help="under torchrun: minutes a collective may wait (ranks wait while rank 0 runs a "
                        "pre-training stage such as PACKD's head)")
    g.add_argument("--resume", type=str, default=None, help="checkpoint path, or 'auto' = latest of this run")
    g.add_argument("--overwrite", action="store_true", help="train again in a folder that holds a finished run")
    g.add_argument("--trust_checkpoint", action="store_true",
                   help="allow checkpoints with pickled Python objects (weights_only=False)")
    g.add_argument("--no_progress", action="store_true", help="no tqdm bars")
    g.add_argument("--no_tensorboard", action="store_true", help="no TensorBoard event files")
    return p


def _finite(value):
    return value == value and value not in (float("inf"), float("-inf"))


def parse_milestones(text):
    """'150,180,210' -> [150, 180, 210]; UsageError unless positive, increasing integers."""
    parts = [v.strip() for v in str(text).split(",") if v.strip() != ""]
    try:
        milestones = [int(v) for v in parts]
    except ValueError:
        raise UsageError(f"--lr_decay_epochs must be comma-separated epoch numbers like 150,180,210, "
                         f"got '{text}'") from None
    if any(m <= 0 for m in milestones):
        raise UsageError(f"--lr_decay_epochs must be positive epoch numbers, got '{text}'")
    if any(b <= a for a, b in zip(milestones, milestones[1:])):
        raise UsageError(f"--lr_decay_epochs must be increasing, got '{text}'")
    return milestones


# Recipe defaults per data set: RepDistiller's for CIFAR-100; the PACKD authors' (and
# torchvision's) for ImageNet: SGD 0.1 decayed x0.1 at 30/60/90 over 100 epochs, global batch 256.
RECIPES = {
    "cifar100": {"epochs": 240, "lr_decay_epochs": "150,180,210", "weight_decay": 5e-4, "batch_size": 64},
    "imagenet": {"epochs": 100, "lr_decay_epochs": "30,60,90", "weight_decay": 1e-4, "batch_size": 256},
}
IMAGENET_LR = 0.1


def recipe_of(dataset):
    return RECIPES["imagenet" if dataset == "imagenet" else "cifar100"]


def check_model_name(opt, dest, cifar_default):
    """Fill `opt.<dest>` with the data set's default model when not given (ImageNet: resnet18_imagenet)
    and refuse a name that is not a model of that data set."""
    from models import imagenet_model_dict, model_dict
    imagenet = opt.dataset == "imagenet"
    models_here = imagenet_model_dict if imagenet else model_dict
    if getattr(opt, dest) is None:
        setattr(opt, dest, "resnet18_imagenet" if imagenet else cifar_default)
    if getattr(opt, dest) not in models_here:
        raise UsageError(f"unknown --{dest} '{getattr(opt, dest)}' for --dataset {opt.dataset}; valid names: "
                         f"{', '.join(models_here)}")


def finalize_training_arguments(opt, model_for_lr):
    """Validate and derive; raises UsageError before anything is written."""
    for name, value in recipe_of(opt.dataset).items():
        if getattr(opt, name) is None:
            setattr(opt, name, value)
    if opt.loader is None:
        opt.loader = "auto" if opt.dataset == "imagenet" else "device"
    elif opt.dataset != "imagenet" and opt.loader == "dali":
        raise UsageError("--loader dali reads JPEG folders (--dataset imagenet); CIFAR-100 uses --loader device or torch")
    opt.lr_decay_epochs = parse_milestones(opt.lr_decay_epochs)
    if opt.batch_size <= 0:
        raise UsageError(f"--batch_size must be positive, got {opt.batch_size}")
    if opt.test_batch_size is not None and opt.test_batch_size <= 0:
        raise UsageError(f"--test_batch_size must be positive, got {opt.test_batch_size}")
    if opt.epochs <= 0:
        raise UsageError(f"--epochs must be positive, got {opt.epochs}")
    if opt.print_freq <= 0:
        raise UsageError(f"--print_freq must be positive, got {opt.print_freq}")
    if opt.save_freq < 0:
        raise UsageError(f"--save_freq must be 0 (off) or positive, got {opt.save_freq}")
    if opt.num_workers < 0:
        raise UsageError(f"--num_workers must be 0 or more, got {opt.num_workers}")
    if opt.data_folder is None:
        opt.data_folder = GENERATED_DATA_FOLDER if opt.generate_data else DATA_FOLDER
    if opt.generate_data and os.path.abspath(opt.data_folder) == os.path.abspath(DATA_FOLDER):
        from dataset.cifar import has_cifar100
        if not has_cifar100(opt.data_folder):
            raise UsageError(f"--generate_data would write into '{DATA_FOLDER}', where real CIFAR-100 is looked "
                             f"for by default; drop --data_folder (generated sets go to {GENERATED_DATA_FOLDER}) "
                             f"or name another folder")
    if opt.learning_rate is None and opt.dataset == "imagenet":
        opt.learning_rate = IMAGENET_LR
    elif opt.learning_rate is None:
        opt.learning_rate = SMALL_LR if model_for_lr in SMALL_LR_MODELS else DEFAULT_LR
    elif model_for_lr in SMALL_LR_MODELS and opt.learning_rate != SMALL_LR:
        print(f"note: --learning_rate {opt.learning_rate:g} is used as given; RepDistiller's and the PACKD "
              f"authors' scripts force {SMALL_LR:g} for {model_for_lr} whatever the flag says")
    if not (_finite(opt.learning_rate) and opt.learning_rate > 0):
        raise UsageError(f"--learning_rate must be a positive number, got {opt.learning_rate}")
    if not (_finite(opt.lr_decay_rate) and opt.lr_decay_rate > 0):
        raise UsageError(f"--lr_decay_rate must be a positive number, got {opt.lr_decay_rate}")
    if not (_finite(opt.weight_decay) and opt.weight_decay >= 0):
        raise UsageError(f"--weight_decay must be 0 or more, got {opt.weight_decay}")
    if not (_finite(opt.momentum) and 0 <= opt.momentum < 1):
        raise UsageError(f"--momentum must lie in [0, 1), got {opt.momentum}")
    if opt.resume is not None and not opt.resume.strip():
        raise UsageError("--resume needs a checkpoint path or 'auto'")
    if opt.seed is None:
        t = str(opt.trial)
        opt.seed = int(t) if t.isdigit() else zlib.crc32(t.encode()) % 2 ** 31
    return opt
