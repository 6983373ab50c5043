"""Relational KD (Park et al., CVPR 2019): distance and angle relations in the batch."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .KD import KDDistiller


def pairwise_distance(e, squared=False, eps=1e-12):
    """(N, N) Euclidean distances, clamped at eps before the root, zero diagonal."""
    e_square = e.pow(2).sum(dim=1)
    dist = (e_square.unsqueeze(1) + e_square.unsqueeze(0) - 2 * (e @ e.t())).clamp(min=eps)
    if not squared:
        dist = dist.sqrt()
    diagonal = torch.eye(len(e), dtype=torch.bool, device=e.device)
    return dist.masked_fill(diagonal, 0)


def mean_of_positive(x):
    """Mean of the entries > 0 (without boolean indexing, which would sync with the host)."""
    positive = (x > 0).to(x.dtype)
    return (x * positive).sum() / positive.sum()


def angles(e):
    """(N*N*N,) cosines of the angles at each anchor between differences to all other samples."""
    diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)
    return torch.bmm(diff, diff.transpose(1, 2)).view(-1)


class RKDLoss(nn.Module):
    """w_d * smooth-L1 of mean-normalised distances + w_a * smooth-L1 of angles.

    The teacher side is computed without autograd, as in the reference.
    """

    def __init__(self, w_d=25, w_a=50):
        super().__init__()
        self.w_d = w_d
        self.w_a = w_a

    def forward(self, f_s, f_t):
        student = f_s.reshape(f_s.shape[0], -1)
        teacher = f_t.reshape(f_t.shape[0], -1)
        with torch.no_grad():
            t_d = pairwise_distance(teacher)
            t_d = t_d / mean_of_positive(t_d)
            t_angle = angles(teacher)
        d = pairwise_distance(student)
        d = d / mean_of_positive(d)
        loss_d = F.smooth_l1_loss(d, t_d)
        loss_a = F.smooth_l1_loss(angles(student), t_angle)
        return self.w_d * loss_d + self.w_a * loss_a


class RKDDistiller(KDDistiller):
    """beta * RKD(pooled student embedding, pooled teacher embedding)."""
    name = "rkd"
    display_name = "RKD"
    table_order = 70
    default_weights = {"gamma": 1.0, "alpha": 0.0, "beta": 1.0}
    has_method_loss = True

    def __init__(self, student, teacher, opt):
        super().__init__(student, teacher, opt)
        self.criterion_kd = RKDLoss()

    def method_loss(self, feats_s, feats_t):
        return self.criterion_kd(feats_s[-1], feats_t[-1])
