"""Self-supervised KD with SVD (Lee et al., ECCV 2018), RepDistiller's port."""
import torch
import torch.nn as nn
import torch.nn.functional as F


from .base import feature_shapes, width_refusal
from .KD import KDDistiller

# Width of the Gaussian (RBF) kernel between singular-vector pairs of consecutive layers.
RBF_DENOMINATOR = 8
# The student keeps this many more singular vectors than the teacher, to be aligned to it.
EXTRA_STUDENT_VECTORS = 3


def finite_or_zero(x):
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


def top_singular(feat, n):
    """Normalised top-n (U, S, V) of each sample's (HW, C) matrix."""
    b, c, h, w = feat.shape
    x = feat.reshape(b, c, h * w).transpose(-2, -1)
    u, s, vh = torch.linalg.svd(x, full_matrices=False)
    u, s, v = finite_or_zero(u), finite_or_zero(s), finite_or_zero(vh.transpose(-2, -1))
    if n > 0:
        u = F.normalize(u[:, :, :n], dim=1)
        s = F.normalize(s[:, :n], dim=1)
        v = F.normalize(v[:, :, :n], dim=1)
    return u, s, v


def align_to(a, b):
    """Pick and sign-flip the columns of a that best match (|cosine|) each column of b."""
    cosine = a.transpose(-2, -1) @ b
    max_abs_cosine, _ = torch.max(torch.abs(cosine), 1, keepdim=True)
    mask = torch.where(max_abs_cosine == torch.abs(cosine), torch.sign(cosine), torch.zeros_like(cosine))
    return a @ mask


class KDSVD(nn.Module):
    """For each pair of consecutive layers: squared difference of the RBF kernels between
    the (teacher-singular-value weighted) right singular vectors, summed, / batch.
    Returns len(g_s) - 1 losses."""

    def __init__(self, k=1):
        super().__init__()
        self.k = k

    def forward(self, g_s, g_t):
        losses = []
        v_s_prev = v_t_prev = None
        for i, (f_s, f_t) in enumerate(zip(g_s, g_t)):
            _, s_t, v_t = top_singular(f_t, self.k)
            _, _, v_s = top_singular(f_s, self.k + EXTRA_STUDENT_VECTORS)
            v_s = align_to(v_s, v_t)
            s_t = s_t.unsqueeze(1)
            v_t = v_t * s_t
            v_s = v_s * s_t
            if i > 0:
                s_rbf = torch.exp(-(v_s.unsqueeze(2) - v_s_prev.unsqueeze(1)).pow(2) / RBF_DENOMINATOR)
                t_rbf = torch.exp(-(v_t.unsqueeze(2) - v_t_prev.unsqueeze(1)).pow(2) / RBF_DENOMINATOR)
                l2loss = finite_or_zero((s_rbf - t_rbf.detach()).pow(2))
                losses.append(l2loss.sum())
            v_s_prev, v_t_prev = v_s, v_t
        bsz = g_s[0].shape[0]
        return [loss / bsz for loss in losses]


class KDSVDDistiller(KDDistiller):
    """beta * sum of KDSVD losses over the stage outputs feats[1:-1].

    Singular vectors are compared channel by channel, so student and teacher need the
    same channel numbers on those features (as in RepDistiller).
    """
    name = "kdsvd"
    display_name = "KDSVD"
    table_order = 130
    default_weights = {"gamma": 1.0, "alpha": 0.0, "beta": 1.0}
    has_method_loss = True

    @classmethod
    def pair_refusal(cls, student, teacher):
        return width_refusal("kdsvd", feature_shapes(student)[1:-1], feature_shapes(teacher)[1:-1])

    def __init__(self, student, teacher, opt):
        super().__init__(student, teacher, opt)
        self.criterion_kd = KDSVD()

    def method_loss(self, feats_s, feats_t):
        return sum(self.criterion_kd(feats_s[1:-1], feats_t[1:-1]))
