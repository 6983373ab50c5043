"""Neuron selectivity transfer (Huang & Wang, 2017): MMD with a squared polynomial kernel."""
import torch.nn as nn
import torch.nn.functional as F

from .AT import pool_to_same_size
from .KD import KDDistiller


def poly_kernel(a, b):
    """(B, C, C) squared dot products between the channels of a and b (B, C, HW)."""
    return (b @ a.transpose(1, 2)).pow(2)


class NSTLoss(nn.Module):
    """Per layer: MMD^2 between channel-normalised student and teacher activations
    (full form; the teacher-teacher term is detached)."""

    def forward(self, g_s, g_t):
        return [self.nst_loss(f_s, f_t) for f_s, f_t in zip(g_s, g_t)]

    def nst_loss(self, f_s, f_t):
        f_s, f_t = pool_to_same_size(f_s, f_t)
        f_s = F.normalize(f_s.reshape(f_s.shape[0], f_s.shape[1], -1), dim=2)
        f_t = F.normalize(f_t.reshape(f_t.shape[0], f_t.shape[1], -1), dim=2)
        return (poly_kernel(f_t, f_t).mean().detach() + poly_kernel(f_s, f_s).mean()
                - 2 * poly_kernel(f_s, f_t).mean())


class NSTDistiller(KDDistiller):
    """beta * sum of NST losses over the stage outputs feats[1:-1]."""
    name = "nst"
    display_name = "NST"
    table_order = 120
    default_weights = {"gamma": 1.0, "alpha": 0.0, "beta": 50.0}
    has_method_loss = True

    def __init__(self, student, teacher, opt):
        super().__init__(student, teacher, opt)
        self.criterion_kd = NSTLoss()

    def method_loss(self, feats_s, feats_t):
        return sum(self.criterion_kd(feats_s[1:-1], feats_t[1:-1]))
