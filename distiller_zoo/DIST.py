"""DIST (Huang et al., NeurIPS 2022, "Knowledge Distillation from A Stronger Teacher").

DIST replaces KD's exact match of probabilities (KL) by a match of *relations*: on
p = softmax(z / tau), one minus the Pearson correlation between student and teacher,
taken per sample across the classes (inter-class relation) and per class across the
batch (intra-class relation), each averaged and scaled by tau^2:

    DIST = tau^2 * (beta * (1 - mean_i rho(p_s[i, :], p_t[i, :]))
                    + gamma * (1 - mean_c rho(p_s[:, c], p_t[:, c])))

following the authors' `lib/models/losses/dist_kd.py` (hunto/image_classification_sota,
the `classification` submodule of hunto/DIST_KD): rho is the cosine similarity of the
mean-centred vectors, with eps = 1e-8 added to the product of the two norms.

Their CIFAR-100 recipe (`configs/strategies/distill/dist_cifar.yaml`): `kd: dist_t4`, i.e.
DIST(beta=1, gamma=1, tau=4) on the logits, total loss 1 * CE + 2 * DIST, no vanilla KD;
SGD lr 0.05 (0.01 for MobileNetV2/ShuffleV1/ShuffleV2), momentum 0.9 without Nesterov,
weight decay 5e-4, batch 64, 240 epochs with decays x0.1 at 150/180/210 — RepDistiller's
schedule, which is ours. Here: `-r 1 -a 0 -b 2` and `--dist_beta 1 --dist_gamma 1 --dist_tau 4`.
"""
import math

import torch.nn as nn
import torch.nn.functional as F

from util.errors import UsageError

from .base import Distiller
from .KD import DistillKL, at_least_float32, standardize_logits  # noqa: F401  (standardize_logits: public here too)

# Added to the product of the two norms in the authors' cosine similarity.
PEARSON_EPS = 1e-8
# Temperature of the optional vanilla KD term (-a) when --kd_T is not given: RepDistiller's.
KD_T_DEFAULT = 4.0


def pearson_relation_loss(a, b, eps=PEARSON_EPS):
    """1 - the mean over rows of the Pearson correlation between rows a[i] and b[i].

    As the authors: centre each row on its mean, then <a, b> / (|a| |b| + eps)."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    rho = (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)
    return 1 - rho.mean()


class DISTLoss(nn.Module):
    """tau^2 * (beta * inter-class + gamma * intra-class relation loss) on softmax(z / tau).

    Called as `DISTLoss(beta, gamma, tau)(logits_s, logits_t)` on (batch, classes) logits;
    returns a scalar. inter: per sample, across the classes; intra: per class, across the
    batch (a batch of one sample has no intra-class relation: that part is constant 1).
    """

    def __init__(self, beta=1.0, gamma=1.0, tau=1.0):
        super().__init__()
        self.beta = float(beta)
        self.gamma = float(gamma)
        self.tau = float(tau)

    def forward(self, logits_s, logits_t):
        p_s = F.softmax(at_least_float32(logits_s) / self.tau, dim=1)
        p_t = F.softmax(at_least_float32(logits_t) / self.tau, dim=1)
        inter = pearson_relation_loss(p_s, p_t)
        intra = pearson_relation_loss(p_s.t(), p_t.t())
        return self.tau ** 2 * (self.beta * inter + self.gamma * intra)

    def extra_repr(self):
        return f"beta={self.beta:g}, gamma={self.gamma:g}, tau={self.tau:g}"


class DISTDistiller(Distiller):
    """gamma * CE + beta * DIST on the logits (+ alpha * KL_T when -a is given).

    With `--logit_stand` (KD.py's flag) both logit rows are standardised before the
    temperature, in the DIST term and in the KL term alike. The logit standardization
    authors apply it to KD, DKD, MLKD and CTKD only, never to DIST: this combination has
    no published number, so it is offered as a variant and not swept.
    """
    name = "dist"
    display_name = "DIST"
    table_order = 160
    # Takes --logit_stand (KD.py's flag): its loss is on the logits only. No `ls` sweep variant:
    # the LS authors publish no DIST + LS run, so there is no recipe to sweep.
    logit_method = True
    # The authors' CIFAR-100 recipe (dist_cifar.yaml): ori_loss_weight 1, kd_loss_weight 2, no vanilla KD.
    default_weights = {"gamma": 1.0, "alpha": 0.0, "beta": 2.0}
    # The authors' `kd: dist_t4` -> DIST(beta=1, gamma=1, tau=4).
    recipe = {"dist_beta": 1.0, "dist_gamma": 1.0, "dist_tau": 4.0}
    # Run-folder tags of the DIST settings, added when they differ from the recipe.
    _tag_names = {"dist_tau": "tau", "dist_beta": "inter", "dist_gamma": "intra"}

    def __init__(self, student, teacher, opt):
        if teacher is None:
            raise ValueError("method 'dist' distils from a teacher: pass one")
        if opt is None:
            raise ValueError("method 'dist' reads its settings from opt: pass the options")
        super().__init__(student, teacher, opt)
        settings = {k: float(getattr(opt, k, v)) for k, v in self.recipe.items()}
        self.criterion_dist = DISTLoss(beta=settings["dist_beta"], gamma=settings["dist_gamma"],
                                       tau=settings["dist_tau"])
        kd_T = getattr(opt, "kd_T", None)
        self.criterion_div = DistillKL(float(KD_T_DEFAULT if kd_T is None else kd_T))
        self.logit_stand = bool(getattr(opt, "logit_stand", False))

    # -- description ------------------------------------------------------------------
    @classmethod
    def add_arguments(cls, parser):
        g = parser.add_argument_group("DIST (Huang et al., NeurIPS 2022)")
        g.add_argument("--dist_beta", type=float, default=cls.recipe["dist_beta"],
                       help="DIST: weight of the inter-class relation (per sample, across classes); "
                            "the authors' CIFAR-100 recipe: 1")
        g.add_argument("--dist_gamma", type=float, default=cls.recipe["dist_gamma"],
                       help="DIST: weight of the intra-class relation (per class, across the batch); "
                            "the authors' CIFAR-100 recipe: 1")
        g.add_argument("--dist_tau", type=float, default=cls.recipe["dist_tau"],
                       help="DIST: softmax temperature (the loss is scaled by tau^2); "
                            "the authors' CIFAR-100 recipe: 4 (their `dist_t4`)")

    @classmethod
    def finalize_options(cls, opt):
        super().finalize_options(opt)
        tau = opt.dist_tau
        if not (math.isfinite(tau) and tau > 0):
            raise UsageError(f"--dist_tau must be a positive number, got {tau}")
        for flag in ("dist_beta", "dist_gamma"):
            v = getattr(opt, flag)
            if not (math.isfinite(v) and v >= 0):
                raise UsageError(f"--{flag} must be 0 or more, got {v}")
        kd_T = getattr(opt, "kd_T", None)  # only read with -a > 0 (a vanilla KD term)
        if kd_T is not None and not (math.isfinite(kd_T) and kd_T > 0):
            raise UsageError(f"--kd_T must be a positive number, got {kd_T}")
        from .KD import default_temperature, fill_unset
        fill_unset(opt, {"kd_T": default_temperature(opt)})  # recorded as a number, as every method does

    @classmethod
    def folder_tags(cls, opt):
        """`tau:`/`inter:`/`intra:` when they differ from the authors' recipe, `ls` with --logit_stand."""
        tags = [f"{tag}:{float(getattr(opt, flag))}" for flag, tag in cls._tag_names.items()
                if float(getattr(opt, flag, cls.recipe[flag])) != cls.recipe[flag]]
        if getattr(opt, "logit_stand", False):
            tags.append("ls")
        return tags

    def loss_terms(self):
        c = self.criterion_dist
        ls = ", logit-standardised" if self.logit_stand else ""
        terms = {"cls": f"{self.gamma:g}*CE"}
        if self.alpha != 0:
            terms["div"] = f"{self.alpha:g}*KL(T={self.criterion_div.T:g}{ls})"
        if self.beta != 0:
            terms["kd"] = f"{self.beta:g}*DIST(beta={c.beta:g}, gamma={c.gamma:g}, tau={c.tau:g}{ls})"
        return terms

    # -- steps ------------------------------------------------------------------------
    def forward_train(self, batch):
        logits_s, logits_t, terms = self.logits_and_ce(batch, self.alpha != 0 or self.beta != 0)
        if logits_t is None:
            return logits_s, terms
        z_s, z_t = at_least_float32(logits_s), at_least_float32(logits_t)
        if self.logit_stand:
            z_s, z_t = standardize_logits(z_s), standardize_logits(z_t)
        if self.alpha != 0:
            terms["div"] = self.alpha * self.criterion_div(z_s, z_t)
        if self.beta != 0:
            terms["kd"] = self.beta * self.criterion_dist(z_s, z_t)
        return logits_s, terms
