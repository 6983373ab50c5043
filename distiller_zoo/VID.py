"""Variational information distillation (Ahn et al., CVPR 2019)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .AT import pool_to_same_size
from .base import feature_shapes
from .KD import KDDistiller


def conv1x1(in_channels, out_channels):
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)


class VIDLoss(nn.Module):
    """Gaussian negative log-likelihood of the teacher map under a regressed student mean
    and a learned per-channel variance softplus(log_scale) + eps."""

    def __init__(self, num_input_channels, num_mid_channel, num_target_channels,
                 init_pred_var=5.0, eps=1e-5):
        super().__init__()
        self.regressor = nn.Sequential(
            conv1x1(num_input_channels, num_mid_channel),
            nn.ReLU(),
            conv1x1(num_mid_channel, num_mid_channel),
            nn.ReLU(),
            conv1x1(num_mid_channel, num_target_channels),
        )
        # inverse softplus, so that the initial variance is init_pred_var
        init_log_scale = math.log(math.expm1(init_pred_var - eps))
        self.log_scale = nn.Parameter(torch.full((num_target_channels,), init_log_scale))
        self.eps = eps

    def forward(self, input, target):
        input, target = pool_to_same_size(input, target)
        pred_mean = self.regressor(input)
        pred_var = (F.softplus(self.log_scale) + self.eps).view(1, -1, 1, 1)
        neg_log_prob = 0.5 * ((pred_mean - target) ** 2 / pred_var + torch.log(pred_var))
        return torch.mean(neg_log_prob)


class VIDDistiller(KDDistiller):
    """beta * sum over stage outputs feats[1:-1] of VIDLoss(c_s, c_t, c_t) (one per layer, trained)."""
    name = "vid"
    display_name = "VID"
    table_order = 60
    default_weights = {"gamma": 1.0, "alpha": 0.0, "beta": 1.0}
    has_method_loss = True

    def __init__(self, student, teacher, opt):
        super().__init__(student, teacher, opt)
        s_channels = [s[1] for s in feature_shapes(student)[1:-1]]
        t_channels = [t[1] for t in feature_shapes(teacher)[1:-1]]
        self.vid_losses = nn.ModuleList(VIDLoss(s, t, t) for s, t in zip(s_channels, t_channels))

    def method_loss(self, feats_s, feats_t):
        return sum(vid(f_s, f_t) for vid, f_s, f_t in zip(self.vid_losses, feats_s[1:-1], feats_t[1:-1]))
