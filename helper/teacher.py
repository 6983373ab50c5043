"""Finding and loading a teacher checkpoint in any of the layouts people have.

Layouts: RepDistiller/mdistiller releases (`save/models/<model>_vanilla/ckpt_epoch_240.pth`),
this project's and PACKD's `save_t/` (`<model>_cifar100_lr_0.05_decay_0.0005_trial_0/...`).
The model name comes from the checkpoint when it records one, else from the folder
name, else from --model_t. `--path_t` may also name a run folder (`resolve_teacher_path`);
the sweep finds a teacher by model name with `find_teacher`.
"""
import glob
import math
import os

import torch

from helper.checkpoint import load_checkpoint
from util.atomic import read_json_object
from util.errors import UsageError
from util.fingerprint import state_fingerprint

SUMMARY = "summary.json"
EPOCH_240 = "ckpt_epoch_240.pth"
# Which released layout wins when both exist: PACKD's save_t (the authors' numbers were
# produced with those teachers) or RepDistiller's archive.
TEACHER_LAYOUTS = ("packd", "repdistiller")


def name_from_folder(path):
    """RepDistiller's rule: the parent folder's first '_' segment, three for 'wrn_*'."""
    folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
    if folder.startswith("mobile_half"):  # RepDistiller's name for the CIFAR MobileNetV2
        return "MobileNetV2"
    segments = folder.split("_")
    return "_".join(segments[:3]) if segments[0] == "wrn" else segments[0]


def state_dict_of(ckpt, path):
    if isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict):
        return ckpt["model"]
    if isinstance(ckpt, dict) and ckpt and all(torch.is_tensor(v) for v in ckpt.values()):
        return ckpt  # a bare state_dict
    raise UsageError(f"--path_t '{path}' is not a model checkpoint (expected a dict with a 'model' state_dict)")


def _known_models():
    """Every model name a teacher may have: the CIFAR zoo and the ImageNet networks."""
    from models import imagenet_model_dict, model_dict
    return {**model_dict, **imagenet_model_dict}


def teacher_name(ckpt, path, model_t=None):
    model_dict = _known_models()
    recorded = ckpt.get("model_name") if isinstance(ckpt, dict) else None
    if isinstance(recorded, str) and recorded in model_dict:
        return recorded
    from_folder = name_from_folder(path)
    if from_folder in model_dict:
        return from_folder
    if model_t:
        if model_t not in model_dict:
            raise UsageError(f"unknown --model_t '{model_t}'; valid names: {', '.join(model_dict)}")
        return model_t
    raise UsageError(f"cannot tell the teacher model from '{path}' (no model_name in the checkpoint, folder "
                     f"'{os.path.basename(os.path.dirname(os.path.abspath(path)))}' names no model); pass --model_t NAME")


def load_teacher(path, model_t=None, num_classes=100, trust=False):
    """-> (model in eval mode on the CPU, its name). One-line UsageError on any problem.

    `path` is a checkpoint file or a run folder (see `resolve_teacher_path`).
    """
    path = resolve_teacher_path(path)
    ckpt = load_checkpoint(path, "teacher checkpoint --path_t", trust=trust)
    state = state_dict_of(ckpt, path)
    name = teacher_name(ckpt, path, model_t)
    model = _known_models()[name](num_classes=num_classes)
    theirs = classes_of(state, model)
    if theirs is not None and theirs != num_classes:
        raise UsageError(f"teacher checkpoint '{path}' classifies {theirs} classes, the data set has {num_classes}; "
                         f"pass a teacher trained on this data set")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = " ".join(str(e).split())[:200]
        raise UsageError(f"teacher checkpoint '{path}' does not fit model '{name}' ({first}); "
                         f"pass the right --model_t or checkpoint") from None
    model.eval()
    return model, name


def classes_of(state, model):
    """The class count a checkpoint's classifier was trained for: the rows of the tensor that
    holds `num_classes` rows in `model` (its last layer's weight); None when it cannot tell."""
    mine = model.state_dict()
    classifier = [k for k, t in mine.items() if k.endswith("weight") and t.dim() == 2][-1:]
    for key in classifier:
        if key in state and torch.is_tensor(state[key]) and state[key].dim() == 2:
            return int(state[key].shape[0])
    return None


def weights_fingerprint(model):
    """SHA-256 (first 16 hex digits) of a model's state_dict (`util.fingerprint`).

    It identifies the teacher a student run was started with, whatever the file is called
    or where it lives, so a resume with different teacher weights is refused.
    """
    return state_fingerprint(model)


# ---------------------------------------------------------------------------------------
# --path_t as a run folder
# ---------------------------------------------------------------------------------------
def resolve_teacher_path(path):
    """The checkpoint file `--path_t` means: the README lets it name a run folder too.

    A file (or a path that does not exist: loading it says so) is returned as is. A folder
    of a finished run (summary.json) gives its `<model>_last.pth`, the weights its summary
    reports; any other folder its `ckpt_epoch_240.pth`, the file RepDistiller and PACKD
    releases hold. Anything else is a one-line UsageError saying what was expected.
    """
    path = str(path)
    if not os.path.isdir(path):
        return path
    problem = ""
    if os.path.isfile(os.path.join(path, SUMMARY)):
        last, problem = _finished_run_checkpoint(path)
        if last is not None:
            return last
    epoch_240 = os.path.join(path, EPOCH_240)
    if os.path.isfile(epoch_240):
        return epoch_240
    raise UsageError(f"--path_t '{path}' is a folder without a teacher checkpoint{problem}: expected a finished "
                     f"run ({SUMMARY} and <model>_last.pth) or {EPOCH_240}; pass a checkpoint file")


def _finished_run_checkpoint(run_dir):
    """-> (`<model>_last.pth` of a finished run folder or None, why not as ' (...)' or '').

    The model comes from run.json (`model`, what train_teacher.py records); without it the
    folder's single `*_last.pth` is taken. Several and no run.json would be a guess.
    """
    model = read_json_object(os.path.join(run_dir, "run.json")).get("model")
    if isinstance(model, str) and model:
        last = os.path.join(run_dir, f"{model}_last.pth")
        if os.path.isfile(last):
            return last, ""
    found = sorted(glob.glob(os.path.join(glob.escape(run_dir), "*_last.pth")))
    if len(found) == 1:
        return found[0], ""
    if len(found) > 1:
        names = ", ".join(os.path.basename(f) for f in found)
        return None, f" (it holds several *_last.pth: {names}, and no run.json naming the model)"
    return None, ""


# ---------------------------------------------------------------------------------------
# Finding a teacher by model name (scripts/sweep.py)
# ---------------------------------------------------------------------------------------
def check_layout(layout):
    """TEACHER_LAYOUT must be one of `TEACHER_LAYOUTS`; a one-line UsageError otherwise."""
    if layout not in TEACHER_LAYOUTS:
        raise UsageError(f"TEACHER_LAYOUT must be {' or '.join(TEACHER_LAYOUTS)}, got '{layout}'")
    return layout


def released_checkpoints(model, save_t, layout="packd"):
    """The two released layouts under `save_t`, the preferred one first."""
    packd = os.path.join(save_t, f"{model}_cifar100_lr_0.05_decay_0.0005_trial_0", EPOCH_240)
    repdistiller = os.path.join(save_t, f"{model}_vanilla", EPOCH_240)
    return [packd, repdistiller] if check_layout(layout) == "packd" else [repdistiller, packd]


def run_folder_pattern(model, base):
    """Where train_teacher.py (scripts/run_vanilla.sh) puts trial 0 of `model` under `base`."""
    return os.path.join(base, "models", f"{model}_cifar100_lr_*_decay_*_trial_0")


def teacher_candidates(model, save_t, save_dir, layout="packd"):
    """Checkpoints of teacher `model` that may exist, in order of preference.

    The released layouts first (ordered by `layout`), then this project's run folders
    under `{save_t,save_dir}/models/`: a finished run (summary.json) offers its
    `<model>_last.pth`, and any run its `ckpt_epoch_240.pth`. An unfinished run's
    `<model>_last.pth` is never offered: it may be a stopped run's weights.
    """
    paths = released_checkpoints(model, save_t, layout)
    for base in (save_t, save_dir):
        pattern = run_folder_pattern(glob.escape(model), glob.escape(base))
        for run_dir in sorted(glob.glob(pattern)):
            if not os.path.isdir(run_dir):
                continue
            if os.path.isfile(os.path.join(run_dir, SUMMARY)):
                paths.append(os.path.join(run_dir, f"{model}_last.pth"))
            paths.append(os.path.join(run_dir, EPOCH_240))
    return paths


def find_teacher(model, save_t, save_dir, layout="packd"):
    """The first of `teacher_candidates` that is a file, or None."""
    return next((p for p in teacher_candidates(model, save_t, save_dir, layout) if os.path.isfile(p)), None)


def teacher_search_places(model, save_t, save_dir, layout="packd"):
    """What `teacher_candidates` looks at, as lines for a 'no teacher found' message."""
    places = released_checkpoints(model, save_t, layout)
    for base in (save_t, save_dir):
        places.append(run_folder_pattern(model, base) + f"/{{{model}_last.pth (finished runs), {EPOCH_240}}}")
    return places


def recorded_accuracy(path):
    """-> (test top-1 recorded for the checkpoint at `path`, where it was read) or (None, None).

    Read from the checkpoint's `accuracy` (RepDistiller, PACKD and this project record the
    last test accuracy there) or `best_acc`, else from the run folder's summary.json
    `last_acc`. Only reported to the user, so an unreadable file is simply 'not recorded'.
    """
    ckpt = _load_quietly(path)
    if isinstance(ckpt, dict):
        for key in ("accuracy", "best_acc"):
            value = _as_number(ckpt.get(key))
            if value is not None:
                return value, f"the checkpoint's '{key}'"
    value = _as_number(read_json_object(os.path.join(os.path.dirname(path), SUMMARY)).get("last_acc"))
    if value is not None:
        return value, f"{SUMMARY} 'last_acc'"
    return None, None


def _load_quietly(path):
    """The checkpoint (memory-mapped when possible: only two numbers are wanted), or None."""
    for kwargs in ({"mmap": True}, {}):
        try:
            return torch.load(path, map_location="cpu", weights_only=True, **kwargs)
        except Exception:  # noqa: BLE001 - a legacy, pickled or broken file: nothing recorded
            continue
    return None


def _as_number(value):
    """A finite float from a number or a one-element tensor (RepDistiller stores a tensor), else None."""
    if torch.is_tensor(value) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
