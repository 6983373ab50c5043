"""Probabilistic knowledge transfer (Passalis & Tefas, ECCV 2018)."""
import torch
import torch.nn as nn

from .KD import KDDistiller


def cosine_affinity(x, eps):
    """Row-stochastic matrix of (cosine similarity + 1) / 2 between the batch's samples."""
    x = x / (torch.sqrt(torch.sum(x ** 2, dim=1, keepdim=True)) + eps)
    x = torch.where(torch.isnan(x), torch.zeros_like(x), x)
    similarity = (x @ x.t() + 1.0) / 2.0
    return similarity / torch.sum(similarity, dim=1, keepdim=True)


class PKT(nn.Module):
    """Mean KL divergence between the teacher's and the student's cosine-affinity distributions."""

    def __init__(self, eps=1e-7):
        super().__init__()
        self.eps = eps

    def forward(self, f_s, f_t):
        p_s = cosine_affinity(f_s, self.eps)
        p_t = cosine_affinity(f_t, self.eps)
        return torch.mean(p_t * torch.log((p_t + self.eps) / (p_s + self.eps)))


class PKTDistiller(KDDistiller):
    """beta * PKT(pooled student embedding, pooled teacher embedding)."""
    name = "pkt"
    display_name = "PKT"
    table_order = 80
    default_weights = {"gamma": 1.0, "alpha": 0.0, "beta": 30000.0}
    has_method_loss = True

    def __init__(self, student, teacher, opt):
        super().__init__(student, teacher, opt)
        self.criterion_kd = PKT()

    def method_loss(self, feats_s, feats_t):
        return self.criterion_kd(feats_s[-1], feats_t[-1])
