"""Small pieces shared by the training scripts: LR rule, accuracy, seeding, devices."""
import os
import random

import numpy as np
import torch


def learning_rate_at(epoch, base_lr, decay_epochs, decay_rate):
    """The reference rule: at the start of epoch `epoch` the rate is
    base * rate ** (number of milestones strictly below `epoch`)."""
    steps = sum(1 for m in decay_epochs if epoch > m)
    return base_lr * decay_rate ** steps


def set_lr(optimizer, lr):
    for group in optimizer.param_groups:
        group["lr"] = lr


def topk_correct(logits, labels, ks=(1,)):
    """Number of samples whose label is in the top-k logits, as device tensors (no sync)."""
    maxk = min(max(ks), logits.shape[1])  # top-5 of a data set with fewer classes: every class
    top = logits.topk(maxk, dim=1).indices
    hit = top.eq(labels.view(-1, 1))
    return [hit[:, :k].any(dim=1).sum() for k in ks]


def seed_everything(seed, deterministic=False):
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True


def resolve_device(name):
    from util.errors import UsageError
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown --device '{name}'; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    return device
