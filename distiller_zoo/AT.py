"""Attention transfer (Zagoruyko & Komodakis, 2017)."""
import torch.nn as nn
import torch.nn.functional as F

from .KD import KDDistiller


def pool_to_same_size(f_s, f_t):
    """Average-pool the larger of two maps down to the other's size (compared by height)."""
    s_h, t_h = f_s.shape[2], f_t.shape[2]
    if s_h > t_h:
        f_s = F.adaptive_avg_pool2d(f_s, f_t.shape[2:])
    elif s_h < t_h:
        f_t = F.adaptive_avg_pool2d(f_t, f_s.shape[2:])
    return f_s, f_t


class Attention(nn.Module):
    """Per layer: mean squared difference of L2-normalised attention maps mean_c(f^p)."""

    def __init__(self, p=2):
        super().__init__()
        self.p = p

    def forward(self, g_s, g_t):
        return [self.at_loss(f_s, f_t) for f_s, f_t in zip(g_s, g_t)]

    def at_loss(self, f_s, f_t):
        f_s, f_t = pool_to_same_size(f_s, f_t)
        return (self.at(f_s) - self.at(f_t)).pow(2).mean()

    def at(self, f):
        return F.normalize(f.pow(self.p).mean(1).view(f.size(0), -1))


class AttentionDistiller(KDDistiller):
    """beta * sum of attention losses over the stage outputs feats[1:-1]."""
    name = "attention"
    display_name = "AT"
    table_order = 30
    default_weights = {"gamma": 1.0, "alpha": 0.0, "beta": 1000.0}
    has_method_loss = True

    def __init__(self, student, teacher, opt):
        super().__init__(student, teacher, opt)
        self.criterion_kd = Attention()

    def method_loss(self, feats_s, feats_t):
        return sum(self.criterion_kd(feats_s[1:-1], feats_t[1:-1]))
