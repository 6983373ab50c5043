"""Flow of solution procedure (Yim et al., CVPR 2017).

As in RepDistiller, FSP matrices are matched in an init stage (`pretrain`) that trains
the student's feature layers; the main stage is plain classification (plus KD when
alpha != 0). Student and teacher must have the same channel numbers per feature.
"""
import torch.nn as nn

from util.errors import UsageError

from .AT import pool_to_same_size
from .base import feature_shapes, width_refusal
from .KD import KDDistiller


def fsp_matrices(g):
    """For consecutive maps (bottom, top): (B, C_top, C_bottom) spatial mean of products."""
    matrices = []
    for bottom, top in zip(g[:-1], g[1:]):
        bottom, top = pool_to_same_size(bottom, top)
        bottom = bottom.reshape(bottom.shape[0], bottom.shape[1], -1)
        top = top.reshape(top.shape[0], top.shape[1], -1)
        matrices.append(top @ bottom.transpose(1, 2) / bottom.shape[2])
    return matrices


class FSP(nn.Module):
    """Per consecutive layer pair: mean squared difference of student and teacher FSP matrices."""

    def __init__(self, s_shapes, t_shapes):
        super().__init__()
        refusal = width_refusal("FSP", s_shapes, t_shapes)
        if refusal:
            raise UsageError(refusal)

    def forward(self, g_s, g_t):
        return [(s - t).pow(2).mean() for s, t in zip(fsp_matrices(g_s), fsp_matrices(g_t))]


class FSPDistiller(KDDistiller):
    """Init stage: FSP(student feats[:-1], teacher feats[:-1]) trains `student.get_feat_modules()`."""
    name = "fsp"
    display_name = "FSP"
    table_order = 110
    default_weights = {"gamma": 1.0, "alpha": 0.0, "beta": 50.0}
    has_method_loss = False

    @classmethod
    def pair_refusal(cls, student, teacher):
        return width_refusal("FSP", feature_shapes(student)[:-1], feature_shapes(teacher)[:-1])

    def __init__(self, student, teacher, opt):
        super().__init__(student, teacher, opt)
        self.criterion_kd = FSP(feature_shapes(student)[:-1], feature_shapes(teacher)[:-1])

    def pretrain(self, loader, opt, device, log=print):
        """`opt.init_epochs` epochs training the student's feature layers on the FSP loss."""
        def step_loss(images):
            feats_s, _ = self.student(images, is_feat=True)
            feats_t, _ = self.teacher_forward(images, is_feat=True)
            return sum(self.criterion_kd(feats_s[:-1], feats_t[:-1]))

        self.run_init_stage([self.student.get_feat_modules()], step_loss, loader, opt, device, log)
