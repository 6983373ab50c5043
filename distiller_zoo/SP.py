"""Similarity-preserving KD (Tung & Mori, ICCV 2019)."""
import torch.nn as nn
import torch.nn.functional as F

from .KD import KDDistiller


class Similarity(nn.Module):
    """Per layer: squared distance of row-normalised batch Gram matrices, / batch^2."""

    def forward(self, g_s, g_t):
        return [self.similarity_loss(f_s, f_t) for f_s, f_t in zip(g_s, g_t)]

    def similarity_loss(self, f_s, f_t):
        bsz = f_s.shape[0]
        f_s = f_s.reshape(bsz, -1)
        f_t = f_t.reshape(bsz, -1)
        gram_s = F.normalize(f_s @ f_s.t())
        gram_t = F.normalize(f_t @ f_t.t())
        # reference returns shape (1,); a 0-dim scalar is the same value
        return (gram_t - gram_s).pow(2).sum() / (bsz * bsz)


class SimilarityDistiller(KDDistiller):
    """beta * similarity loss on the last stage output feats[-2] (one layer, as RepDistiller)."""
    name = "similarity"
    display_name = "SP"
    table_order = 40
    default_weights = {"gamma": 1.0, "alpha": 0.0, "beta": 3000.0}
    has_method_loss = True

    def __init__(self, student, teacher, opt):
        super().__init__(student, teacher, opt)
        self.criterion_kd = Similarity()

    def method_loss(self, feats_s, feats_t):
        return sum(self.criterion_kd([feats_s[-2]], [feats_t[-2]]))
