"""Representation transfer: a linear probe on a frozen CIFAR-100 student, on STL-10 or Tiny-ImageNet.

    python eval_rep.py --dataset STL-10 --path_s save/student_model/S:resnet8x4_T:resnet32x4_..._0
    python eval_rep.py --dataset TinyImageNet200 --data_folder ./data --path_s <checkpoint.pth>

The PACKD authors' recipe (smuelpeng/PACKD, `code/eval_rep_base.py`, run by
`code/scripts/eval_rep_STL10.sh` and `code/scripts/eval_rep_TinyImageNet200.sh`): the student's
backbone is frozen in eval mode (BatchNorm uses its CIFAR-100 running statistics); a fresh
linear classifier on its pooled feature (the input of the student's own classifier, i.e. the
last entry of `model(x, is_feat=True)[0]`; initialised as the model class initialises its
classifier, since they build the model for the new classes and train only its `fc`) is trained
for 100 epochs with cross-entropy, SGD lr 0.1, momentum 0.9, Nesterov, weight decay 0, batch 64,
the rate x0.1 after epochs 30, 60 and 90, seed 0. Images are brought to 32 x 32: training
RandomResizedCrop(32) (scale 0.08-1, ratio 3/4-4/3, bilinear) + horizontal flip, test Resize(32);
normalised with mean = std = 0.5 (STL-10) or the ImageNet statistics (Tiny-ImageNet). Their
script trains `net.fc` (`net.linear` for ShuffleV1), so it runs for the ResNets and WRNs only;
here the classifier is found for every model of `models.model_dict`.

Here the whole data set lives on the device as uint8. Every epoch the training images are
cropped, resized (Pillow's bilinear resampling, reproduced pixel for pixel with batched
matrix products) and flipped there, passed once through the frozen backbone in large batches,
and the probe then trains on those features in shuffled batches of 64: the same numbers of
steps and the same distribution of inputs as the authors' per-sample DataLoader, without the
backbone's forward in every step (it cannot change: frozen, eval mode).

Writes `save/transfer/<dataset>_<student run>[_<checkpoint>]_<trial>/` with run.json,
metrics.jsonl, summary.json (last and best top-1) and the probe's weights.

This file holds the options and the run's steps; the parts live where they belong:
dataset/resized_crop.py (Pillow's resampling, batched; the 32 x 32 transforms),
dataset/transfer_sets.py (the two data sets), helper/student_checkpoint.py (the frozen student),
helper/probe_folder.py (run folder, identity, run.json) and helper/linear_probe.py (the probe).
"""
import math
import os
import sys

from dataset.resized_crop import SIZE
from dataset.transfer_sets import data_is_generated, data_reader, load_data
from helper.linear_probe import train_probe
from helper.options import DATA_FOLDER, GENERATED_DATA_FOLDER, Parser
from helper.probe_folder import (check_transfer_folder, start_transfer_folder, transfer_folder, transfer_identity,
                                 transfer_run_info)
from helper.run_folder import SUMMARY
from helper.student_checkpoint import load_student
from helper.trainer import run_guarded
from util.errors import UsageError

DATASET_ALIASES = {"stl-10": "STL-10", "stl10": "STL-10", "tinyimagenet200": "TinyImageNet200",
                   "tinyimagenet": "TinyImageNet200", "tiny-imagenet-200": "TinyImageNet200",
                   "tiny-imagenet": "TinyImageNet200"}


def dataset_name(text):
    name = DATASET_ALIASES.get(str(text).lower())
    if name is None:
        raise UsageError(f"unknown --dataset '{text}'; use STL-10 or TinyImageNet200")
    return name


def parse_args(argv=None):
    from helper.options import parse_milestones
    from models import model_dict
    p = Parser(description="Linear-probe transfer of a frozen CIFAR-100 student to STL-10 or Tiny-ImageNet "
                           "(the PACKD authors' eval_rep_base.py recipe).")
    g = p.add_argument_group("what to evaluate (the authors' spellings --data, --arch, --s-path also work)")
    g.add_argument("--dataset", default="STL-10", help="STL-10 or TinyImageNet200 (also: TinyImageNet)")
    g.add_argument("--data_folder", "--data", default=None,
                   help=f"STL-10: holds stl10_binary/; Tiny-ImageNet: the set's folder (wnids.txt, train/, val/) or "
                        f"one holding tiny-imagenet-200/; downloaded when absent; default {DATA_FOLDER} "
                        f"({GENERATED_DATA_FOLDER} with --generate_data)")
    g.add_argument("--generate_data", action="store_true",
                   help="offline: write a small generated set in the data set's format to --data_folder when it "
                        "holds none (marked as generated; never real results)")
    g.add_argument("--path_s", "--s-path", dest="path_s", required=True,
                   help="student checkpoint, or a student run folder (its <model>_<--checkpoint>.pth)")
    g.add_argument("--model_s", "--arch", dest="model_s", default=None,
                   help="student model; default: the checkpoint's model_name, else its run folder's name")
    g.add_argument("--checkpoint", choices=["best", "last"], default="best",
                   help="which checkpoint of a run folder --path_s names (the authors probe <model>_best.pth)")
    g = p.add_argument_group("the linear probe (the authors' defaults)")
    g.add_argument("--epochs", type=int, default=100)
    g.add_argument("--learning_rate", "--init-lr", dest="learning_rate", type=float, default=0.1)
    g.add_argument("--lr_decay_epochs", "--milestones", dest="lr_decay_epochs", default="30,60,90",
                   help="comma-separated epochs after which the rate is multiplied by --lr_decay_rate")
    g.add_argument("--lr_decay_rate", type=float, default=0.1)
    g.add_argument("--weight_decay", "--weight-decay", dest="weight_decay", type=float, default=0.0)
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (Nesterov)")
    g.add_argument("--warmup_epoch", "--warmup-epoch", dest="warmup_epoch", type=int, default=0,
                   help="epochs of per-step linear warm-up (the authors' option, off in their runs)")
    g.add_argument("--batch_size", "--batch-size", dest="batch_size", type=int, default=64)
    g.add_argument("--trial", type=str, default="0", help="experiment id (part of the run folder; default seed)")
    g.add_argument("--seed", "--manual_seed", dest="seed", type=int, default=None,
                   help="default: derived from --trial (the authors' --manual_seed 0 is trial 0)")
    g = p.add_argument_group("this project")
    g.add_argument("--save_dir", default="save", help="run folders go to <save_dir>/transfer/")
    g.add_argument("--device", default="auto", help="cuda when available, else cpu")
    g.add_argument("--feature_batch_size", type=int, default=1000,
                   help="images augmented and passed through the frozen backbone at once (speed only)")
    g.add_argument("--deterministic", action="store_true", help="deterministic algorithms")
    g.add_argument("--overwrite", action="store_true", help="evaluate again in a folder that holds a finished run")
    g.add_argument("--trust_checkpoint", action="store_true",
                   help="allow checkpoints with pickled Python objects (weights_only=False)")
    g.add_argument("--no_tensorboard", action="store_true", help="no TensorBoard event files")
    opt = p.parse_args(argv)
    opt.dataset = dataset_name(opt.dataset)
    if opt.model_s is not None and opt.model_s not in model_dict:
        raise UsageError(f"unknown --model_s '{opt.model_s}'; valid names: {', '.join(model_dict)}")
    opt.lr_decay_epochs = parse_milestones(opt.lr_decay_epochs)
    for flag in ("epochs", "batch_size", "feature_batch_size"):
        if getattr(opt, flag) <= 0:
            raise UsageError(f"--{flag} must be positive, got {getattr(opt, flag)}")
    if not 0 <= opt.warmup_epoch < opt.epochs:
        raise UsageError(f"--warmup_epoch must lie in [0, --epochs), got {opt.warmup_epoch}")
    if not (math.isfinite(opt.learning_rate) and opt.learning_rate > 0):
        raise UsageError(f"--learning_rate must be a positive number, got {opt.learning_rate}")
    if not (math.isfinite(opt.lr_decay_rate) and opt.lr_decay_rate > 0):
        raise UsageError(f"--lr_decay_rate must be a positive number, got {opt.lr_decay_rate}")
    if not (math.isfinite(opt.weight_decay) and opt.weight_decay >= 0):
        raise UsageError(f"--weight_decay must be 0 or more, got {opt.weight_decay}")
    if not (math.isfinite(opt.momentum) and 0 < opt.momentum < 1):
        raise UsageError(f"--momentum must lie in (0, 1) (Nesterov needs momentum), got {opt.momentum}")
    if not opt.path_s.strip():
        raise UsageError("--path_s needs a student checkpoint or run folder")
    if opt.data_folder is None:
        opt.data_folder = GENERATED_DATA_FOLDER if opt.generate_data else DATA_FOLDER
    if opt.seed is None:
        import zlib
        t = str(opt.trial)
        opt.seed = int(t) if t.isdigit() else zlib.crc32(t.encode()) % 2 ** 31
    opt.nesterov = True  # fixed in the authors' optimizer
    return opt


def check_generate_target(opt):
    """--generate_data never writes into the default folder where real data is looked for (as
    helper/options.py guards it for CIFAR-100)."""
    _, _, _, present = data_reader(opt.dataset)
    if opt.generate_data and os.path.abspath(opt.data_folder) == os.path.abspath(DATA_FOLDER) \
            and not present(opt.data_folder):
        raise UsageError(f"--generate_data would write into '{DATA_FOLDER}', where real data is looked for by "
                         f"default; drop --data_folder (generated sets go to {GENERATED_DATA_FOLDER}) or name "
                         f"another folder")


def main(argv=None):
    from helper.util import resolve_device, seed_everything
    from util.atomic import atomic_write_json

    opt = parse_args(argv)
    device = resolve_device(opt.device)
    check_generate_target(opt)
    student = load_student(opt)
    generated = data_is_generated(opt)
    run_dir = transfer_folder(opt, student)
    identity = transfer_identity(opt, student, generated)
    print(f"student {student.name} from '{student.path}' (weights {student.fingerprint}); linear probe on "
          f"{opt.dataset}; run folder '{run_dir}'")
    finished = check_transfer_folder(run_dir, identity, opt.overwrite)
    if finished is not None:
        return finished
    seed_everything(opt.seed, opt.deterministic)
    data = load_data(opt)  # before anything is written: missing or broken data changes nothing
    if generated:
        print(f"WARNING: '{opt.data_folder}' holds a GENERATED data set, not {opt.dataset}: for trying the code "
              f"only; the run records generated_data=true")
    print(f"{opt.dataset}: {len(data['train'][1])} training and {len(data['test'][1])} test images, "
          f"{len(data['classes'])} classes, resized to {SIZE}x{SIZE}; {opt.epochs} epochs on {device}")
    run_log = start_transfer_folder(run_dir, transfer_run_info(opt, student, data, device, generated, identity),
                                    tensorboard=not opt.no_tensorboard)
    try:
        summary = train_probe(opt, student, data, device, run_log)
    except KeyboardInterrupt:
        print(f"interrupted; '{run_dir}' holds no finished probe: run the same command again (it starts over)",
              file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        run_log.close()
    summary["generated_data"] = bool(generated)
    atomic_write_json(summary, os.path.join(run_dir, SUMMARY))
    print(f"finished: last-epoch test top-1 {summary['last_acc']:.2f}, best {summary['best_acc']:.2f} at epoch "
          f"{summary['best_epoch']}; run folder '{run_dir}'")
    return summary


if __name__ == "__main__":
    run_guarded(main)
