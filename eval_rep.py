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
"""
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

from helper.options import Parser
from helper.trainer import run_guarded
from util.atomic import read_json_object
from util.errors import UsageError

# ------------------------------------------------------------------------------------------
# The recipe
# ------------------------------------------------------------------------------------------
RECIPE_SOURCE = ("smuelpeng/PACKD code/eval_rep_base.py (code/scripts/eval_rep_STL10.sh, "
                 "code/scripts/eval_rep_TinyImageNet200.sh)")
SIZE = 32                                   # the CIFAR models' input
CROP_SCALE = (0.08, 1.0)                    # torchvision RandomResizedCrop defaults
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
CROP_ATTEMPTS = 10
DATASETS = {
    "STL-10": {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
    "TinyImageNet200": {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
}
DATASET_ALIASES = {"stl-10": "STL-10", "stl10": "STL-10", "tinyimagenet200": "TinyImageNet200",
                   "tinyimagenet": "TinyImageNet200", "tiny-imagenet-200": "TinyImageNet200",
                   "tiny-imagenet": "TinyImageNet200"}
DATA_FOLDER = "./data"
GENERATED_DATA_FOLDER = "./data_generated"
# Settings that change only speed, logs or where files live (not part of a run's identity).
NOT_IDENTITY = frozenset({"data_folder", "generate_data", "save_dir", "device", "feature_batch_size",
                          "test_batch_size", "overwrite", "trust_checkpoint", "no_tensorboard", "deterministic",
                          "path_s", "model_s", "checkpoint", "dataset", "trial"})


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


# ------------------------------------------------------------------------------------------
# The student
# ------------------------------------------------------------------------------------------
class Student:
    """The frozen backbone and where it came from."""

    def __init__(self, model, name, path, fingerprint, run_name, tag, run_info):
        self.model, self.name, self.path, self.fingerprint = model, name, path, fingerprint
        self.run_name, self.tag, self.run_info = run_name, tag, run_info


def resolve_student_path(path, which="best"):
    """The checkpoint file `--path_s` means: a file as is; a run folder its `<model>_<which>.pth`."""
    import glob
    if not os.path.isdir(path):
        return path
    info = read_json_object(os.path.join(path, "run.json"))
    model = info.get("model_s") if info.get("kind") == "student" else info.get("model")
    if isinstance(model, str) and os.path.isfile(os.path.join(path, f"{model}_{which}.pth")):
        return os.path.join(path, f"{model}_{which}.pth")
    found = sorted(glob.glob(os.path.join(glob.escape(path), f"*_{which}.pth")))
    if len(found) == 1:
        return found[0]
    held = f"several *_{which}.pth and no run.json naming the model" if found else f"no *_{which}.pth"
    raise UsageError(f"--path_s '{path}' is a folder with {held}; pass a checkpoint file")


def student_name_from_folder(path):
    """`S:<model>_T:...` (a student run folder), else RepDistiller's rule on the folder name."""
    from helper.teacher import name_from_folder
    folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
    if folder.startswith("S:") and "_T:" in folder:
        return folder[2:folder.index("_T:")]
    return name_from_folder(path)


def _state_dict(ckpt, path):
    """The weights in a checkpoint ('model', 'state_dict' or 'net' entry, or a bare state_dict),
    without a 'module.' (DataParallel) or 'backbone.' prefix carried by every key."""
    state = None
    if isinstance(ckpt, dict):
        for key in ("model", "state_dict", "net"):
            if isinstance(ckpt.get(key), dict):
                state = ckpt[key]
                break
        if state is None and ckpt and all(torch.is_tensor(v) for v in ckpt.values()):
            state = ckpt
    if not state or not all(torch.is_tensor(v) for v in state.values()):
        raise UsageError(f"--path_s '{path}' is not a model checkpoint (expected a dict with a 'model' state_dict)")
    for prefix in ("module.", "backbone."):
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def classifier_name(model):
    """The model's own classifier: its last nn.Linear (fed by the last entry of is_feat's features)."""
    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)][-1]


def fresh_classifier(name, num_classes):
    """The classifier a freshly built `name` model for `num_classes` has (its own initialisation,
    e.g. VGG's N(0, 0.01) and WRN's zero bias), drawn from the seeded global RNG: the authors build
    the model for the new classes and train only that layer."""
    from models import model_dict
    model = model_dict[name](num_classes=num_classes)
    return model.get_submodule(classifier_name(model))


def load_student(opt):
    """-> Student: the model in eval mode, frozen, on the CPU. One-line UsageError on any problem."""
    from helper.checkpoint import load_checkpoint
    from models import model_dict
    from util.fingerprint import state_fingerprint
    path = resolve_student_path(opt.path_s, opt.checkpoint)
    ckpt = load_checkpoint(path, "student checkpoint --path_s", trust=opt.trust_checkpoint)
    state = _state_dict(ckpt, path)
    recorded = ckpt.get("model_name") if isinstance(ckpt, dict) else None
    recorded = recorded if isinstance(recorded, str) and recorded in model_dict else None
    if opt.model_s and recorded and opt.model_s != recorded:
        raise UsageError(f"--model_s {opt.model_s}, but '{path}' records model '{recorded}'; drop --model_s or "
                         f"pass another checkpoint")
    name = opt.model_s or recorded
    if name is None:
        guess = student_name_from_folder(path)
        if guess not in model_dict:
            raise UsageError(f"cannot tell the student model from '{path}' (no model_name in the checkpoint, its "
                             f"folder names no model); pass --model_s NAME")
        name = guess
    head = classifier_name(model_dict[name](num_classes=100))
    head_keys = (f"{head}.weight", f"{head}.bias")
    num_classes = state[head_keys[0]].shape[0] if head_keys[0] in state else 100
    model = model_dict[name](num_classes=num_classes)
    try:
        if head_keys[0] in state:
            model.load_state_dict(state)
        else:  # backbone-only weights: the classifier is not used; zeroed so the fingerprint is the weights'
            missing, unexpected = model.load_state_dict(state, strict=False)
            if unexpected or set(missing) - set(head_keys):
                raise RuntimeError(f"missing {sorted(set(missing) - set(head_keys))[:3]}, unexpected {unexpected[:3]}")
            for p in model.get_submodule(head).parameters():
                torch.nn.init.zeros_(p)
    except RuntimeError as e:
        first = " ".join(str(e).split())[:200]
        raise UsageError(f"student checkpoint '{path}' does not fit model '{name}' ({first}); pass the right "
                         f"--model_s or checkpoint") from None
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    run_dir = os.path.dirname(os.path.abspath(path))
    stem = os.path.splitext(os.path.basename(path))[0]
    tag = stem[len(name) + 1:] if stem.startswith(f"{name}_") else stem
    return Student(model, name, path, state_fingerprint(model), os.path.basename(run_dir),
                   "" if tag == "best" else tag, _student_run_info(run_dir))


def _student_run_info(run_dir):
    """What the student's own run.json says about it (method, teacher, trial ...), for summaries."""
    info = read_json_object(os.path.join(run_dir, "run.json"))
    keys = ("kind", "model_s", "model_t", "model", "distill", "trial", "gamma", "alpha", "beta", "few_ratio",
            "epochs", "dataset", "generated_data", "identity", "path_t")
    return {k: info[k] for k in keys if k in info}


# ------------------------------------------------------------------------------------------
# Images to 32 x 32 on the device: Pillow's bilinear resampling, batched
# ------------------------------------------------------------------------------------------
PRECISION_BITS = 22  # Pillow's fixed-point coefficients for 8-bit images (32 - 8 - 2)


def pil_bilinear_weights(in_size, out_size, start, length):
    """(N, out_size, in_size) float64: Pillow's fixed-point bilinear coefficients (integers,
    scaled by 2**22) that resample the span [start, start + length) of an axis of `in_size`
    pixels to `out_size` pixels, zero outside the span.

    As Pillow's `precompute_coeffs` for a crop then `resize` (what torchvision does for PIL
    images): scale = length / out, support = max(scale, 1), a triangle filter of that width
    centred at (i + 0.5) * scale, normalised, then rounded to 22-bit fixed point.
    """
    f64 = torch.float64
    length = length.to(f64).view(-1, 1, 1)
    scale = length / out_size
    filterscale = scale.clamp(min=1.0)
    center = (torch.arange(out_size, device=start.device, dtype=f64).view(1, -1, 1) + 0.5) * scale
    xmin = torch.floor(center - filterscale + 0.5).clamp(min=0)
    xmax = torch.minimum(torch.floor(center + filterscale + 0.5), length)
    x = torch.arange(in_size, device=start.device, dtype=f64).view(1, 1, -1) - start.to(f64).view(-1, 1, 1)
    weights = (1.0 - ((x - center + 0.5) * (1.0 / filterscale)).abs()).clamp(min=0.0)
    weights = weights * ((x >= xmin) & (x < xmax))
    weights = weights / weights.sum(-1, keepdim=True)
    return torch.floor(weights * 2.0 ** PRECISION_BITS + 0.5)


_WEIGHT_TABLES = {}


def placed_weights(in_size, out_size, start, length):
    """`pil_bilinear_weights` for many spans, from a table of every span length computed once per
    axis size and device: the weights of a span of length L starting at 0, shifted to `start`."""
    key = (in_size, out_size, str(start.device))
    if key not in _WEIGHT_TABLES:
        lengths = torch.arange(in_size + 1, device=start.device).clamp(min=1)
        _WEIGHT_TABLES[key] = pil_bilinear_weights(in_size, out_size, torch.zeros_like(lengths), lengths)
    table = _WEIGHT_TABLES[key].index_select(0, length)                        # (N, out, in), span at 0
    shift = torch.arange(in_size, device=start.device).view(1, -1) - start.view(-1, 1)  # (N, in)
    placed = table.gather(2, shift.clamp(min=0).unsqueeze(1).expand(-1, out_size, -1))
    return placed.mul_((shift >= 0).unsqueeze(1))


def _apply_pass(products):
    """Fixed-point sums -> uint8 values (as float64), Pillow's rounding and clipping, in place."""
    return products.add_(2.0 ** (PRECISION_BITS - 1)).div_(2.0 ** PRECISION_BITS).floor_().clamp_(0, 255)


def resized_crop(images, top, left, height, width, out_h=SIZE, out_w=SIZE, vertical_first=None):
    """Crop box (top, left, height, width) of each uint8 image (N, C, H, W), resized to out_h x out_w
    with Pillow's bilinear filter: one pass along each axis, the first rounded to 8 bits, as
    Pillow's `ImagingResample`. Float64 products of integers are exact, so each image is Pillow's
    pixel for pixel. Returns uint8 (N, C, out_h, out_w).

    Pillow up to 12 (the PACKD authors' time) always resamples horizontally first, which is the
    default here. Pillow 13 (python-pillow/Pillow#9549) takes the vertical pass first when the
    height shrinks much more than the width, which moves some pixels by one level;
    `vertical_first` (bool (N,)) selects that order per image (tests/test_eval_rep.py checks both
    orders against the installed Pillow).
    """
    n, c, h, w = images.shape
    wx = placed_weights(w, out_w, left, width).transpose(1, 2)   # (N, W, out_w)
    wy = placed_weights(h, out_h, top, height)                   # (N, out_h, H)
    x = images.to(torch.float64)
    rows = _apply_pass(torch.bmm(x.view(n, c * h, w), wx))      # (N, C * H, out_w)
    rows = rows.view(n, c, h, out_w).transpose(1, 2).reshape(n, h, c * out_w)
    out = _apply_pass(torch.bmm(wy, rows)).view(n, out_h, c, out_w).transpose(1, 2)  # (N, C, out_h, out_w)
    if vertical_first is not None and bool(vertical_first.any()):
        v = vertical_first.nonzero().squeeze(1)
        cols = _apply_pass(torch.matmul(wy[v].unsqueeze(1), x[v]))                  # (V, C, out_h, W)
        out[v] = _apply_pass(torch.bmm(cols.view(len(v), c * out_h, w), wx[v]).view(len(v), c, out_h, out_w))
    return out.to(torch.uint8).contiguous()


def random_resized_crop_params(n, height, width, generator, device, scale=CROP_SCALE, ratio=CROP_RATIO,
                               attempts=CROP_ATTEMPTS):
    """torchvision's RandomResizedCrop.get_params for n images at once -> (top, left, h, w) int64 (n,).

    Per image: up to `attempts` draws of an area fraction in `scale` and a log-uniform aspect
    ratio in `ratio`; the first whose rounded box fits is used, at a uniform position; when
    none fits, the central crop (the whole image for square images)."""
    f64 = torch.float64
    area = height * width
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    target = area * (scale[0] + (scale[1] - scale[0]) * torch.rand(n, attempts, generator=generator, device=device,
                                                                     dtype=f64))
    aspect = torch.exp(lo + (hi - lo) * torch.rand(n, attempts, generator=generator, device=device, dtype=f64))
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)
    found = fits.any(dim=1)
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = int(round(height * max(ratio))), height
    else:
        fw, fh = width, height
    w = torch.where(found, w.gather(1, first).squeeze(1), torch.full_like(w[:, 0], fw))
    h = torch.where(found, h.gather(1, first).squeeze(1), torch.full_like(h[:, 0], fh))
    u = torch.rand(n, 2, generator=generator, device=device, dtype=f64)
    top = torch.where(found, torch.floor(u[:, 0] * (height - h + 1)), torch.floor((height - h) / 2))
    left = torch.where(found, torch.floor(u[:, 1] * (width - w + 1)), torch.floor((width - w) / 2))
    return top.long(), left.long(), h.long(), w.long()


def resize_output_size(height, width, size=SIZE):
    """torchvision's Resize(size) for an int size: the shorter side becomes `size`."""
    short, long = min(height, width), max(height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if height <= width else (new_long, new_short)


class Transfer32:
    """The authors' transforms on uint8 batches on the device, normalised with the data set's statistics."""

    def __init__(self, mean, std, device):
        self.mean = torch.tensor(mean, device=device, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device, dtype=torch.float32).view(1, 3, 1, 1)

    def normalize(self, images):
        """ToTensor + Normalize: uint8 -> [0, 1] -> (x - mean) / std."""
        return (images.to(torch.float32).div_(255.0) - self.mean) / self.std

    def train(self, images, generator):
        """RandomResizedCrop(32) + RandomHorizontalFlip + normalise."""
        n, _, h, w = images.shape
        top, left, ch, cw = random_resized_crop_params(n, h, w, generator, images.device)
        out = resized_crop(images, top, left, ch, cw)
        flip = torch.rand(n, generator=generator, device=images.device) < 0.5
        out = torch.where(flip.view(n, 1, 1, 1), out.flip(-1), out)
        return self.normalize(out)

    def test(self, images):
        """Resize(32) + normalise."""
        n, _, h, w = images.shape
        oh, ow = resize_output_size(h, w)
        zeros = torch.zeros(n, dtype=torch.long, device=images.device)
        out = resized_crop(images, zeros, zeros, torch.full_like(zeros, h), torch.full_like(zeros, w), oh, ow)
        return self.normalize(out)


@torch.no_grad()
def extract_features(backbone, images, transform, batch_size):
    """Pooled features (N, D) float32 of the frozen backbone for all `images` (uint8 on the device),
    `transform(chunk)` applied chunk by chunk. no_grad, not inference_mode: the probe's autograd
    saves these features for its backward."""
    out = []
    for start in range(0, len(images), batch_size):
        feats, _ = backbone(transform(images[start:start + batch_size]), is_feat=True)
        out.append(feats[-1].float())
    return torch.cat(out)


# ------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------
def data_reader(dataset):
    """-> (load(folder, download_if_missing), is_generated(folder), make_generated(folder), present(folder))."""
    if dataset == "STL-10":
        from dataset import stl10
        return stl10.load_stl10, stl10.is_generated, stl10.make_synthetic_stl10, stl10.has_stl10
    from dataset import tiny_imagenet
    return (tiny_imagenet.load_tiny_imagenet, tiny_imagenet.is_generated,
            tiny_imagenet.make_synthetic_tiny_imagenet, tiny_imagenet.has_tiny_imagenet)


def check_generate_target(opt):
    _, _, _, present = data_reader(opt.dataset)
    if opt.generate_data and os.path.abspath(opt.data_folder) == os.path.abspath(DATA_FOLDER) \
            and not present(opt.data_folder):
        raise UsageError(f"--generate_data would write into '{DATA_FOLDER}', where real data is looked for by "
                         f"default; drop --data_folder (generated sets go to {GENERATED_DATA_FOLDER}) or name "
                         f"another folder")


def data_is_generated(opt):
    _, is_generated, _, present = data_reader(opt.dataset)
    return is_generated(opt.data_folder) or (opt.generate_data and not present(opt.data_folder))


def load_data(opt, log=print):
    load, _, make, present = data_reader(opt.dataset)
    if opt.generate_data and not present(opt.data_folder):
        make(opt.data_folder)
        log(f"wrote a generated {opt.dataset}-format data set to '{opt.data_folder}' (for trying the code, "
            f"not for results)")
    return load(opt.data_folder)


# ------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------
def transfer_folder(opt, student):
    """<save_dir>/transfer/<dataset>_<student run folder>[_<checkpoint>]_<trial>; the checkpoint's
    tag ('last', 'ckpt_epoch_240', ...) is left out for <model>_best.pth, the authors' choice."""
    parts = [opt.dataset, student.run_name] + ([student.tag] if student.tag else []) + [str(opt.trial)]
    return os.path.join(opt.save_dir, "transfer", "_".join(parts))


def transfer_identity(opt, student, generated):
    from helper.checkpoint import plain
    settings = {k: plain(v) for k, v in sorted(vars(opt).items()) if k not in NOT_IDENTITY}
    return {"kind": "transfer", "dataset": opt.dataset, "model_s": student.name,
            "student_weights": student.fingerprint, "generated_data": bool(generated), "settings": settings}


def check_transfer_folder(run_dir, identity, overwrite, log=print):
    """-> the finished run's summary when this experiment already ran there (nothing is redone), else None.

    A finished run of other settings is refused in one line unless --overwrite."""
    from helper.run_folder import describe_differences, identity_differences
    summary_path = os.path.join(run_dir, "summary.json")
    if overwrite or not os.path.isfile(summary_path):
        return None
    theirs = read_json_object(os.path.join(run_dir, "run.json")).get("identity") or {}
    differences = identity_differences(theirs, identity)
    if differences:
        raise UsageError(f"'{run_dir}' holds a finished probe of other settings ({describe_differences(differences)}); "
                         f"use --overwrite to evaluate this folder again, or another --trial")
    summary = read_json_object(summary_path)
    log(f"already finished: this probe of the same settings ended with test top-1 {summary.get('last_acc')} "
        f"(best {summary.get('best_acc')}); run folder '{run_dir}' (nothing rewritten; --overwrite evaluates again)")
    return summary


def lr_at(opt, epoch, step=0, steps=1):
    """The authors' rule (1-based epochs): warm-up per step for `--warmup_epoch` epochs, then
    base x rate^(number of milestones < epoch - warmup)."""
    from helper.util import learning_rate_at
    if epoch <= opt.warmup_epoch:
        return opt.learning_rate * (1 + step + (epoch - 1) * steps) / (opt.warmup_epoch * steps)
    return learning_rate_at(epoch - opt.warmup_epoch, opt.learning_rate, opt.lr_decay_epochs, opt.lr_decay_rate)


def evaluate_probe(probe, feats, labels, batch_size=4096):
    """Test loss, top-1 and top-5 (percent) of the probe on precomputed features; one host read."""
    from helper.util import topk_correct
    loss = torch.zeros((), device=feats.device, dtype=torch.float64)
    c1, c5 = torch.zeros_like(loss), torch.zeros_like(loss)
    with torch.no_grad():
        for start in range(0, len(labels), batch_size):
            logits = probe(feats[start:start + batch_size])
            y = labels[start:start + batch_size]
            loss += F.cross_entropy(logits, y, reduction="sum").double()
            a1, a5 = topk_correct(logits, y, (1, min(5, logits.shape[1])))
            c1 += a1
            c5 += a5
    n = len(labels)
    loss, c1, c5 = torch.stack([loss, c1, c5]).tolist()
    return {"test_loss": loss / n, "test_acc": 100.0 * c1 / n, "test_acc_top5": 100.0 * c5 / n}


def train_probe(opt, student, data, device, run_log, log=print):
    """The probe's epochs; returns the summary."""
    from helper.util import set_lr
    from util.atomic import atomic_save
    backbone = student.model.to(device)
    spec = DATASETS[opt.dataset]
    transform = Transfer32(spec["mean"], spec["std"], device)
    train_x, train_y = (t.to(device) for t in data["train"])
    test_x, test_y = (t.to(device) for t in data["test"])
    num_classes = len(data["classes"])
    generator = torch.Generator(device=device)
    generator.manual_seed(opt.seed)
    with torch.no_grad():
        feat_dim = backbone(torch.zeros(1, 3, SIZE, SIZE, device=device), is_feat=True)[0][-1].shape[1]
    probe = fresh_classifier(student.name, num_classes).to(device)
    if probe.in_features != feat_dim:
        raise RuntimeError(f"{student.name}: its classifier takes {probe.in_features} features, its pooled feature "
                           f"has {feat_dim}")
    kwargs = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.SGD(probe.parameters(), lr=opt.learning_rate, momentum=opt.momentum,
                                weight_decay=opt.weight_decay, nesterov=True, **kwargs)
    test_feats = extract_features(backbone, test_x, transform.test, opt.feature_batch_size)
    n = len(train_y)
    steps = math.ceil(n / opt.batch_size)  # the last partial batch is kept, as a DataLoader's
    best_acc, best_epoch, last = -1.0, 0, None
    for epoch in range(1, opt.epochs + 1):
        t0 = time.time()
        feats = extract_features(backbone, train_x, lambda x: transform.train(x, generator), opt.feature_batch_size)
        order = torch.randperm(n, generator=generator, device=device)
        probe.train()
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.float64)
        lr = lr_at(opt, epoch)
        set_lr(optimizer, lr)
        for step in range(steps):
            if epoch <= opt.warmup_epoch:
                lr = lr_at(opt, epoch, step, steps)
                set_lr(optimizer, lr)
            index = order[step * opt.batch_size:(step + 1) * opt.batch_size]
            y = train_y.index_select(0, index)
            logits = probe(feats.index_select(0, index))
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach().double() * len(index)
            correct += (logits.detach().argmax(1) == y).sum()
        train_loss, train_acc = (torch.stack([loss_sum, correct]) / n).tolist()
        if not math.isfinite(train_loss):
            from util.errors import NonFiniteLoss
            raise NonFiniteLoss(epoch, steps, {"cls": train_loss}, hint="try a lower --learning_rate")
        test = evaluate_probe(probe, test_feats, test_y)
        row = {"epoch": epoch, "lr": lr, "train_loss": train_loss, "train_acc": 100.0 * train_acc, **test,
               "seconds": round(time.time() - t0, 3)}
        run_log.record(row)
        last = test["test_acc"]
        if last > best_acc:
            best_acc, best_epoch = last, epoch
        log(f"epoch {epoch}/{opt.epochs} lr {lr:.4g} | train loss {train_loss:.4f} acc {100 * train_acc:.2f} | "
            f"test loss {test['test_loss']:.4f} acc {last:.2f} top5 {test['test_acc_top5']:.2f} | "
            f"{row['seconds']:.1f}s")
    atomic_save({"model": probe.state_dict(), "epoch": opt.epochs, "accuracy": last, "best_acc": best_acc,
                 "feat_dim": feat_dim, "num_classes": num_classes, "model_s": student.name},
                os.path.join(run_log.run_dir, "linear_last.pth"))
    return {"last_acc": last, "best_acc": best_acc, "best_epoch": best_epoch, "epochs": opt.epochs,
            "last_acc_top5": test["test_acc_top5"], "dataset": opt.dataset, "model_s": student.name,
            "student_run": student.run_name, "student_checkpoint": student.path,
            "student_weights": student.fingerprint, "feat_dim": feat_dim, "num_classes": num_classes}


def main(argv=None):
    from helper.checkpoint import plain
    from helper.run_log import RunLog
    from helper.util import resolve_device, seed_everything
    from util.atomic import atomic_write_json, remove_stale_temp_files

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
    run_info = {**vars(opt), "kind": "transfer", "recipe": RECIPE_SOURCE, "model_s": student.name,
                "student_checkpoint": student.path, "student_weights": student.fingerprint,
                "student_run": student.run_name, "student_checkpoint_tag": student.tag or "best",
                "student": student.run_info, "num_classes": len(data["classes"]),
                "n_train": len(data["train"][1]), "n_test": len(data["test"][1]), "device": str(device),
                "generated_data": bool(generated), "identity": identity,
                "resampling": "Pillow bilinear, horizontal pass first (Pillow <= 12, the authors' time)"}
    os.makedirs(run_dir, exist_ok=True)
    remove_stale_temp_files(run_dir)
    for stale in ("summary.json", "linear_last.pth"):
        if os.path.exists(os.path.join(run_dir, stale)):
            os.unlink(os.path.join(run_dir, stale))
    run_log = RunLog(run_dir, tensorboard=not opt.no_tensorboard)
    run_log.forget_metrics()
    run_log.open(plain(run_info))
    try:
        summary = train_probe(opt, student, data, device, run_log)
    except KeyboardInterrupt:
        print(f"interrupted; '{run_dir}' holds no finished probe: run the same command again (it starts over)",
              file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        run_log.close()
    summary["generated_data"] = bool(generated)
    atomic_write_json(summary, os.path.join(run_dir, "summary.json"))
    print(f"finished: last-epoch test top-1 {summary['last_acc']:.2f}, best {summary['best_acc']:.2f} at epoch "
          f"{summary['best_epoch']}; run folder '{run_dir}'")
    return summary


if __name__ == "__main__":
    run_guarded(main)
