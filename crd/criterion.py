"""CRD loss (Tian et al., "Contrastive Representation Distillation", ICLR 2020).

Student and teacher pooled features are embedded into a shared unit sphere; each
side is the anchor for an NCE problem whose positive and negatives are read from the
other side's memory bank (`ContrastMemory`). The loss is the sum of both directions.
"""
import torch
import torch.nn as nn

from .memory import ContrastMemory

# Added to the NCE denominators so a score of exactly zero cannot produce log(0).
NCE_EPS = 1e-7


class Embed(nn.Module):
    """Linear projection followed by L2 normalisation onto the unit sphere."""

    def __init__(self, dim_in=1024, dim_out=128):
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, x):
        x = self.linear(x.reshape(x.shape[0], -1))
        return x / x.pow(2).sum(1, keepdim=True).sqrt()


class ContrastLoss(nn.Module):
    """NCE loss on scores P (B, K+1), column 0 the positive, against a uniform noise
    distribution 1/n_data: -mean_i [log D(pos) + sum_j log(1 - D(neg_j))]."""

    def __init__(self, n_data):
        super().__init__()
        self.n_data = int(n_data)

    def forward(self, scores):
        batch, num_neg = scores.shape[0], scores.shape[1] - 1
        noise = num_neg / self.n_data  # K * P_noise
        positive = scores[:, 0]
        negatives = scores[:, 1:]
        log_d1 = torch.log(positive / (positive + noise + NCE_EPS))
        log_d0 = torch.log(noise / (negatives + noise + NCE_EPS))
        return -(log_d1.sum() + log_d0.sum()) / batch


class CRDLoss(nn.Module):
    """CRD criterion; `opt` needs s_dim, t_dim, feat_dim, nce_k, nce_t, nce_m, n_data.

    `embed_s` and `embed_t` are trainable (they train with the student); the memory
    banks and the normalisation constants are buffers.
    """

    def __init__(self, opt):
        super().__init__()
        self.embed_s = Embed(opt.s_dim, opt.feat_dim)
        self.embed_t = Embed(opt.t_dim, opt.feat_dim)
        self.contrast = ContrastMemory(opt.feat_dim, opt.n_data, opt.nce_k, opt.nce_t, opt.nce_m)
        self.criterion_s = ContrastLoss(opt.n_data)
        self.criterion_t = ContrastLoss(opt.n_data)

    def forward(self, f_s, f_t, idx, contrast_idx=None):
        """f_s (B, s_dim), f_t (B, t_dim), idx (B,) dataset positions, contrast_idx
        (B, 1+nce_k) with column 0 the positive (uniform negatives when None) -> scalar."""
        v_s = self.embed_s(f_s)
        v_t = self.embed_t(f_t)
        out_s, out_t = self.contrast(v_s, v_t, idx, contrast_idx)
        return self.criterion_s(out_s) + self.criterion_t(out_t)
