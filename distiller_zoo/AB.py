"""Activation-boundary distillation (Heo et al., AAAI 2019).

As in RepDistiller, the whole AB transfer happens in an init stage (`pretrain`) that
trains the connectors and the student's feature layers on pre-ReLU features; the
main stage is then plain classification (plus KD when alpha != 0).
"""
import torch
import torch.nn as nn

from util.errors import UsageError

from .FitNet import ConvReg
from .base import feature_shapes
from .KD import KDDistiller

# RepDistiller scales the summed per-layer losses by 3 / 1000 (after dividing by the batch).
LOSS_SCALE = 3 / 1000


class ABLoss(nn.Module):
    """Per layer: alternative L2 hinge on the student's pre-activations, pushing them beyond
    +-margin on the side of the teacher's activation boundary, weighted 2^(i - feat_num + 1)."""

    def __init__(self, feat_num, margin=1.0):
        super().__init__()
        self.w = [2 ** (i - feat_num + 1) for i in range(feat_num)]
        self.margin = margin

    def forward(self, g_s, g_t):
        bsz = g_s[0].shape[0]
        losses = [self.criterion_alternative_l2(s, t) for s, t in zip(g_s, g_t)]
        return [w * loss / bsz * LOSS_SCALE for w, loss in zip(self.w, losses)]

    def criterion_alternative_l2(self, source, target):
        m = self.margin
        teacher_off = (source > -m) & (target <= 0)
        teacher_on = (source <= m) & (target > 0)
        loss = (source + m) ** 2 * teacher_off.to(source.dtype) + (source - m) ** 2 * teacher_on.to(source.dtype)
        return torch.abs(loss).sum()


class Connector(nn.Module):
    """Per layer: identity when channels and height already match, else ConvReg without ReLU."""

    def __init__(self, s_shapes, t_shapes):
        super().__init__()
        if len(s_shapes) != len(t_shapes):
            raise UsageError(f"Connector: {len(s_shapes)} student vs {len(t_shapes)} teacher features")
        self.connectors = nn.ModuleList(
            nn.Identity() if (s[1] == t[1] and s[2] == t[2]) else ConvReg(s, t, use_relu=False)
            for s, t in zip(s_shapes, t_shapes))

    def forward(self, g_s):
        return [connector(f) for connector, f in zip(self.connectors, g_s)]


class ABDistiller(KDDistiller):
    """Init stage: ABLoss(connector(student preact feats[1:-1]), teacher preact feats[1:-1]).

    Main stage: no feature term (the connector is kept frozen and in eval mode).
    """
    name = "abound"
    display_name = "AB"
    table_order = 90
    default_weights = {"gamma": 1.0, "alpha": 0.0, "beta": 1.0}
    has_method_loss = False
    preact = True

    def __init__(self, student, teacher, opt):
        super().__init__(student, teacher, opt)
        s_shapes = feature_shapes(student)[1:-1]
        t_shapes = feature_shapes(teacher)[1:-1]
        self.connector = Connector(s_shapes, t_shapes)
        self.connector.requires_grad_(False)   # trained in the init stage only
        self.criterion_kd = ABLoss(len(s_shapes))

    def train(self, mode=True):
        super().train(mode)
        self.connector.eval()
        return self

    def pretrain(self, loader, opt, device, log=print):
        """`opt.init_epochs` epochs training the connector and `student.get_feat_modules()`."""
        def step_loss(images):
            feats_s, _ = self.student(images, is_feat=True, preact=True)
            feats_t, _ = self.teacher_forward(images, is_feat=True, preact=True)
            return sum(self.criterion_kd(self.connector(feats_s[1:-1]), feats_t[1:-1]))

        self.run_init_stage([self.connector, self.student.get_feat_modules()],
                            step_loss, loader, opt, device, log)
