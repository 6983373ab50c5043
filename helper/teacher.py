"""Loading a teacher checkpoint from any of the layouts people have.

Layouts: RepDistiller/mdistiller releases (`save/models/<model>_vanilla/ckpt_epoch_240.pth`),
this project's and PACKD's `save_t/` (`<model>_cifar100_lr_0.05_decay_0.0005_trial_0/...`).
The model name comes from the checkpoint when it records one, else from the folder
name, else from --model_t.
"""
import hashlib
import os

import torch

from helper.checkpoint import load_checkpoint
from helper.errors import UsageError


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


def teacher_name(ckpt, path, model_t=None):
    from models import model_dict
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
    """-> (model in eval mode on the CPU, its name). One-line UsageError on any problem."""
    from models import model_dict
    ckpt = load_checkpoint(path, "teacher checkpoint --path_t", trust=trust)
    state = state_dict_of(ckpt, path)
    name = teacher_name(ckpt, path, model_t)
    model = model_dict[name](num_classes=num_classes)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = " ".join(str(e).split())[:200]
        raise UsageError(f"teacher checkpoint '{path}' does not fit model '{name}' ({first}); "
                         f"pass the right --model_t or checkpoint") from None
    model.eval()
    return model, name


def weights_fingerprint(model):
    """SHA-256 (first 16 hex digits) of a model's state_dict: names, dtypes, shapes and values.

    It identifies the teacher a student run was started with, whatever the file is called
    or where it lives, so a resume with different teacher weights is refused.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
