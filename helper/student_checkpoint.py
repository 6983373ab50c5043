"""Loading the frozen student a linear probe evaluates (eval_rep.py), in the layouts people have.

`--path_s` is a checkpoint file or a student run folder (its `<model>_best.pth` or `_last.pth`);
the weights may sit under 'model' (this project, RepDistiller), 'state_dict' or 'net' (the PACKD
authors' files), with 'module.' or 'backbone.' prefixes, or lack the classifier. The model name
comes from the checkpoint, else --model_s, else the folder name. Teachers have their own rules
(helper/teacher.py: other file names, only 'model' or bare weights, --path_t in the messages);
the folder-name rule and the weights' fingerprint are shared with it.
"""
import glob
import os

import torch

from helper.checkpoint import load_checkpoint
from helper.teacher import name_from_folder
from util.atomic import read_json_object
from util.errors import UsageError
from util.fingerprint import state_fingerprint


class Student:
    """The frozen backbone and where it came from."""

    def __init__(self, model, name, path, fingerprint, run_name, tag, run_info):
        self.model, self.name, self.path, self.fingerprint = model, name, path, fingerprint
        self.run_name, self.tag, self.run_info = run_name, tag, run_info


def resolve_student_path(path, which="best"):
    """The checkpoint file `--path_s` means: a file as is; a run folder its `<model>_<which>.pth`."""
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
    folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
    if folder.startswith("S:") and "_T:" in folder:
        return folder[2:folder.index("_T:")]
    return name_from_folder(path)


def _student_state_dict(ckpt, path):
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


def load_student(opt):
    """-> Student: the model in eval mode, frozen, on the CPU. One-line UsageError on any problem."""
    from models import model_dict
    path = resolve_student_path(opt.path_s, opt.checkpoint)
    ckpt = load_checkpoint(path, "student checkpoint --path_s", trust=opt.trust_checkpoint)
    state = _student_state_dict(ckpt, path)
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

