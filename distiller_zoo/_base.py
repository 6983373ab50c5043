"""The contract every distillation method follows.

A method is an `nn.Module` that holds the student and the (frozen) teacher, owns its
extra trainable modules and criterion, declares which data a batch must carry, and
returns the student logits plus its loss terms by name, already weighted. The training
loop sums the terms and steps; it never needs to know which method it runs.
"""
from dataclasses import dataclass, fields
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from helper.loops import autocast_context

# What a method may ask the data path for, beyond images and labels.
INDEX = "index"                    # batch.index: (B,) positions in the training set
CONTRAST_INDEX = "contrast_index"  # batch.contrast_index: (B, 1 + nce_k), column 0 the positive
VIEWS = "views"                    # batch.views: (B, V, 3, 32, 32), view 0 the plain augmentation


@dataclass
class Batch:
    """One training (or test) batch, all tensors on the training device."""
    images: torch.Tensor                          # (B, 3, 32, 32) normalised float
    labels: torch.Tensor                          # (B,) int64
    index: Optional[torch.Tensor] = None
    contrast_index: Optional[torch.Tensor] = None
    views: Optional[torch.Tensor] = None

    def to(self, device, non_blocking=False):
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        return Batch(**{k: (v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v) for k, v in kw.items()})

    def __len__(self):
        return self.labels.shape[0]


class Distiller(nn.Module):
    """Base class: plain cross-entropy training of `student` (also used for teachers).

    Subclasses set `needs`, `default_weights`, add modules in `__init__` (anything
    assigned as an attribute other than `student`/`teacher` is trained with the student
    when it has parameters) and override `forward_train`.
    """
    name = "vanilla"
    needs = frozenset()
    # Loss weights used when the user gives none: gamma (CE), alpha (KD), beta (method).
    default_weights = {"gamma": 1.0, "alpha": 0.0, "beta": 0.0}
    # PACKD: a forward-only pass over the data before training (memory + BN statistics).
    forward_only_first_epoch = False

    def __init__(self, student, teacher=None, opt=None):
        super().__init__()
        self.student = student
        self.teacher = teacher
        if teacher is not None:
            for p in teacher.parameters():
                p.requires_grad_(False)
        w = resolve_weights(type(self), opt)
        self.gamma, self.alpha, self.beta = w["gamma"], w["alpha"], w["beta"]
        self.teacher_bf16 = bool(getattr(opt, "teacher_bf16", False))

    # -- modules -------------------------------------------------------------------
    def train(self, mode=True):
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # the teacher is frozen, BatchNorm statistics included
        return self

    def extra_weights(self):
        """Loss weights beyond gamma/alpha/beta, by term name (for the start-up message)."""
        return {}

    def extra_modules(self):
        """Modules, other than the student, whose parameters are trained with it."""
        return [m for name, m in self.named_children() if name not in ("student", "teacher")]

    def trainable_parameters(self):
        params = list(self.student.parameters())
        for m in self.extra_modules():
            params += [p for p in m.parameters() if p.requires_grad]
        return params

    # -- steps ---------------------------------------------------------------------
    @torch.no_grad()
    def teacher_forward(self, images, is_feat=False, preact=False):
        """Teacher output without autograd (frozen, eval mode).

        With `--teacher_bf16` the teacher runs under bf16 autocast and its outputs come back
        as float32: the teacher is the larger network and needs no gradient, so it gains the
        most from low precision while the student keeps training in float32.
        """
        with self.teacher_precision(images.device):
            out = self.teacher(images, is_feat=True, preact=preact) if is_feat else self.teacher(images)
        if is_feat:
            feats, logits = out
            return [self._teacher_output(f) for f in feats], self._teacher_output(logits)
        return self._teacher_output(out)

    def teacher_precision(self, device):
        """bf16 autocast for the teacher with --teacher_bf16; otherwise whatever is active (e.g. --amp:
        `autocast_context` gives a null context, not autocast(enabled=False), which would switch it off)."""
        return autocast_context(device, self.teacher_bf16)

    def _teacher_output(self, t):
        t = t.detach()
        return t.float() if self.teacher_bf16 else t

    def forward_train(self, batch):
        """-> (student logits for batch.images, {term name: weighted loss})."""
        logits = self.student(batch.images)
        return logits, {"cls": self.gamma * F.cross_entropy(logits, batch.labels)}

    def forward(self, x):
        """Evaluation: the student's logits."""
        return self.student(x)

    def pretrain(self, loader, opt, device, log=print):
        """Optional stage before the main loop (AB, FT, FSP, PACKD's teacher head)."""
        return None


def resolve_weights(cls, opt):
    """gamma/alpha/beta from `opt` where given (not None), else the method's defaults."""
    out = dict(cls.default_weights)
    for key in ("gamma", "alpha", "beta"):
        v = getattr(opt, key, None) if opt is not None else None
        if v is not None:
            out[key] = float(v)
    return out


def feature_shapes(model, preact=False):
    """Shapes of `model(x, is_feat=True)` features on one dummy CIFAR batch of 2.

    Runs on the model's own device, in eval mode without gradients, so BatchNorm
    statistics are untouched.
    """
    was_training = model.training
    model.eval()
    with torch.no_grad():
        x = torch.zeros(2, 3, 32, 32, device=next(model.parameters()).device)
        feats, _ = model(x, is_feat=True, preact=preact)
    model.train(was_training)
    return [f.shape for f in feats]
