"""Correlation congruence (Peng et al., ICCV 2019), RepDistiller's version."""
import torch
import torch.nn as nn

from .base import feature_shapes
from .KD import KDDistiller


class Correlation(nn.Module):
    """Mean over consecutive sample pairs of <|f_s - f_t|_i, |f_s - f_t|_{i+1}>."""

    def forward(self, f_s, f_t):
        delta = torch.abs(f_s - f_t)
        return torch.mean((delta[:-1] * delta[1:]).sum(1))


class LinearEmbed(nn.Module):
    """Flatten + Linear (no normalisation), as RepDistiller's `models/util.LinearEmbed`."""

    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, x):
        return self.linear(x.reshape(x.shape[0], -1))


class CorrelationDistiller(KDDistiller):
    """beta * Correlation(embed_s(pooled student), embed_t(pooled teacher)), both embeds trained."""
    name = "correlation"
    display_name = "CC"
    table_order = 50
    default_weights = {"gamma": 1.0, "alpha": 0.0, "beta": 0.02}
    has_method_loss = True

    def __init__(self, student, teacher, opt):
        super().__init__(student, teacher, opt)
        s_dim = feature_shapes(student)[-1][1]
        t_dim = feature_shapes(teacher)[-1][1]
        self.embed_s = LinearEmbed(s_dim, opt.feat_dim)
        self.embed_t = LinearEmbed(t_dim, opt.feat_dim)
        self.criterion_kd = Correlation()

    def method_loss(self, feats_s, feats_t):
        return self.criterion_kd(self.embed_s(feats_s[-1]), self.embed_t(feats_t[-1]))
