"""DKD (Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022), and DKD + LS.

KD's KL splits into a target-class part (TCKD: the binary distribution "target class vs the
rest") and a non-target part (NCKD: the distribution over the other classes); DKD weighs
them apart, alpha * TCKD + beta * NCKD, each KL at temperature T scaled by T^2 and summed
over the batch / batch size, following the authors' `mdistiller/distillers/DKD.py`
(megvii-research/mdistiller): the DKD term is warmed up linearly over the first epochs,
min(epoch / warmup, 1), with epoch 1-based as their trainer's.

Their CIFAR-100 recipe (`mdistiller/engine/cfg.py`: CE_WEIGHT 1, ALPHA 1, BETA 8, T 4,
WARMUP 20; per pair `configs/cifar100/dkd/<pair>.yaml` sets BETA, see `DKD_BETA`). Here:
`-r` is the CE weight, `-b` multiplies the whole DKD term (1 by default), `--dkd_alpha` /
`--dkd_beta` / `--dkd_T` / `--dkd_warmup` are ALPHA / BETA / T / WARMUP; `-a` adds a plain
KL_T (--kd_T) as in every RepDistiller method (0 by default, not in DKD).

With `--logit_stand` (KD.py's flag), logit standardization (sunshangquan/logit-standardization-KD)
z-scores both logit rows before the temperature, as their `dkd_loss`. Their `tools/train.py`
then runs DKD with T = --base-temp and ALPHA, BETA both multiplied by --kd-weight; here that
multiplier is `-b`, and the per-pair values come from their logs (`LS_DKD_RECIPE`).
"""
import math

import torch
import torch.nn.functional as F

from util.errors import UsageError

from .KD import (KD_T_DEFAULT, LS_DEFAULT, LS_SWEEP_VARIANTS, KDDistiller, at_least_float32, standardize_logits,
                 with_pair_recipe)

# mdistiller/engine/cfg.py (CFG.DKD).
DKD_ALPHA = 1.0
DKD_BETA_DEFAULT = 8.0
DKD_T = 4.0
DKD_WARMUP = 20
# mdistiller configs/cifar100/dkd/<file>.yaml: DKD.BETA per (teacher, student); the pairs whose
# file sets no BETA take the default 8. ResNet50 -> vgg8 has no file: the default 8.
DKD_BETA = {
    ("resnet56", "resnet20"): 2.0,       # res56_res20.yaml
    ("resnet110", "resnet32"): 2.0,      # res110_res32.yaml
    ("resnet32x4", "resnet8x4"): 8.0,    # res32x4_res8x4.yaml (default)
    ("wrn_40_2", "wrn_16_2"): 6.0,       # wrn40_2_wrn_16_2.yaml
    ("wrn_40_2", "wrn_40_1"): 6.0,       # wrn40_2_wrn_40_1.yaml
    ("vgg13", "vgg8"): 6.0,              # vgg13_vgg8.yaml
    ("vgg13", "MobileNetV2"): 6.0,       # vgg13_mv2.yaml
    ("ResNet50", "MobileNetV2"): 8.0,    # res50_mv2.yaml (default)
    ("resnet32x4", "ShuffleV1"): 8.0,    # res32x4_shuv1.yaml (default)
    ("resnet32x4", "ShuffleV2"): 8.0,    # res32x4_shuv2.yaml (default)
    ("wrn_40_2", "ShuffleV1"): 8.0,      # wrn40_2_shuv1.yaml (default)
}
# DKD + LS: (base temperature, KD weight, BETA before the weight) per pair, from the names of the
# LS authors' logs `logs/DKD/dkd,<teacher>,<student>,<base temp>,<kd weight>[,<BETA>].txt` (no
# third value: the mdistiller config's BETA). Their tools/train.py: ALPHA = 1 * kd weight,
# BETA = BETA * kd weight, T = base temp. resnet56 -> resnet20 has two logs, (3, 12) and (3, 18),
# best top-1 72.27 and 72.24 against 72.32 in their README: (3, 12) is taken. Pairs without a
# log take their README's command (--base-temp 2 --kd-weight 9) with the mdistiller BETA.
LS_DKD_RECIPE = {
    ("resnet56", "resnet20"): (3.0, 12.0, 2.0),
    ("resnet110", "resnet32"): (2.0, 15.0, 2.0),
    ("resnet32x4", "resnet8x4"): (2.0, 9.0, 8.0),
    ("wrn_40_2", "wrn_16_2"): (2.0, 12.0, 2.0),
    ("wrn_40_2", "wrn_40_1"): (2.0, 12.0, 2.0),
    ("vgg13", "vgg8"): (2.0, 15.0, 2.0),
    ("vgg13", "MobileNetV2"): (3.0, 9.0, 2.0),
    ("ResNet50", "MobileNetV2"): (2.0, 15.0, 2.0),
    ("resnet32x4", "ShuffleV2"): (2.0, 9.0, 8.0),
    # logged pairs beyond this repo's 12
    ("resnet110", "resnet20"): (2.0, 15.0, 2.0),
    ("resnet32x4", "wrn_16_2"): (2.0, 9.0, 2.0),
    ("resnet32x4", "wrn_40_2"): (2.0, 9.0, 8.0),
    ("wrn_40_2", "MobileNetV2"): (2.0, 15.0, 2.0),
    ("wrn_40_2", "resnet8x4"): (2.0, 18.0, 2.0),
}
# The authors' mask: the target logit (after the temperature) is lowered by this much so that
# its probability is 0 in the non-target distribution (a -inf would make 0 * log 0 a NaN).
GT_MASK_OFFSET = 1000.0
# Ends a help text whose default is told in words: prints nothing, but stops argparse's
# formatter from adding "(default: None)".
NO_DEFAULT = "%(default).0s"


def dkd_loss(logits_student, logits_teacher, target, alpha, beta, temperature, logit_stand=False):
    """alpha * TCKD + beta * NCKD (without the warm-up factor), as the authors' `dkd_loss`.

    TCKD: KL between the binary distributions [p_target, 1 - p_target] of teacher and
    student; NCKD: KL between the distributions over the non-target classes (softmax with
    the target logit masked out). Each at `temperature`, x T^2, summed over the batch and
    divided by its size. `logit_stand`: both logit rows z-scored first (LS authors' version).
    The binary log-probabilities are taken in log space (log-sum-exp) where the authors take
    the log of summed probabilities: the same value, finite also when a softmax saturates.
    """
    z_s = at_least_float32(logits_student)  # bf16/fp16 (--amp, --teacher_bf16): scored in float32
    z_t = at_least_float32(logits_teacher)
    if logit_stand:
        z_s, z_t = standardize_logits(z_s), standardize_logits(z_t)
    z_s, z_t = z_s / temperature, z_t / temperature
    target = target.reshape(-1, 1)
    gt = torch.zeros_like(z_s, dtype=torch.bool).scatter_(1, target, True)
    scale = temperature ** 2 / target.shape[0]

    def binary_log_probs(z):
        # log [p_target, p_rest] = [z_target, logsumexp(z_rest)] - logsumexp(z)
        rest = z.masked_fill(gt, float("-inf")).logsumexp(dim=1, keepdim=True)
        return torch.cat([z.gather(1, target), rest], dim=1) - z.logsumexp(dim=1, keepdim=True)

    tckd = F.kl_div(binary_log_probs(z_s), binary_log_probs(z_t).exp(), reduction="sum") * scale
    masked = GT_MASK_OFFSET * gt
    nckd = F.kl_div(F.log_softmax(z_s - masked, dim=1), F.softmax(z_t - masked, dim=1), reduction="sum") * scale
    return alpha * tckd + beta * nckd


def dkd_pair_recipe(model_t, model_s, logit_stand=False):
    """{dkd_alpha, dkd_beta, dkd_T, beta (the DKD weight -b)} the authors set for a pair.

    DKD: ALPHA 1, BETA `DKD_BETA` (else 8), T 4, weight 1. DKD + LS: T the base temperature,
    weight the KD weight, BETA from `LS_DKD_RECIPE` (else the DKD BETA, with T 2 and weight 9)."""
    beta = DKD_BETA.get((model_t, model_s), DKD_BETA_DEFAULT)
    if not logit_stand:
        return {"dkd_alpha": DKD_ALPHA, "dkd_beta": beta, "dkd_T": DKD_T, "beta": 1.0}
    T, weight, beta = LS_DKD_RECIPE.get((model_t, model_s), (*LS_DEFAULT, beta))
    return {"dkd_alpha": DKD_ALPHA, "dkd_beta": beta, "dkd_T": T, "beta": weight}


class DKDDistiller(KDDistiller):
    """gamma * CE (+ alpha * KL_T) + beta * min(epoch / warmup, 1) * DKD(dkd_alpha, dkd_beta, dkd_T).

    The warm-up reads `self.epoch` (set by the loop through `set_epoch`, 1-based): a Python
    number, so no host sync; a resumed run gets the right factor from its epoch.
    """
    name = "dkd"
    display_name = "DKD"
    table_order = 150
    # mdistiller cfg.py: CE_WEIGHT 1, no vanilla KD; -b multiplies DKD (LS: their --kd-weight).
    default_weights = {"gamma": 1.0, "alpha": 0.0, "beta": 1.0}
    logit_method = True
    sweep_variants = LS_SWEEP_VARIANTS
    # Run-folder tags of the DKD settings, added when they differ from the pair's recipe.
    _tag_names = {"dkd_alpha": "tckd", "dkd_beta": "nckd", "dkd_T": "temp"}

    def __init__(self, student, teacher, opt):
        super().__init__(student, teacher, opt)
        opt = with_pair_recipe(type(self), opt)  # as train_student.py's resolve_pair_settings
        self.dkd_alpha = float(opt.dkd_alpha)
        self.dkd_beta = float(opt.dkd_beta)
        self.temperature = float(opt.dkd_T)
        self.warmup = int(getattr(opt, "dkd_warmup", DKD_WARMUP))

    # -- description ------------------------------------------------------------------
    @classmethod
    def add_arguments(cls, parser):
        g = parser.add_argument_group("DKD (Zhao et al., CVPR 2022; mdistiller)")
        g.add_argument("--dkd_alpha", type=float, default=None,
                       help=f"DKD: weight of TCKD (target vs non-target); default the authors' "
                            f"{DKD_ALPHA:g}{NO_DEFAULT}")
        g.add_argument("--dkd_beta", type=float, default=None,
                       help=f"DKD: weight of NCKD (among the non-target classes); default the authors' value "
                            f"for the pair (2, 6 or 8; {DKD_BETA_DEFAULT:g} for other pairs; with --logit_stand the "
                            f"LS authors'){NO_DEFAULT}")
        g.add_argument("--dkd_T", type=float, default=None,
                       help=f"DKD temperature; default the authors' {DKD_T:g} (with --logit_stand the LS authors' "
                            f"base temperature for the pair, 2 or 3){NO_DEFAULT}")
        g.add_argument("--dkd_warmup", type=int, default=DKD_WARMUP,
                       help="DKD: epochs of linear warm-up, factor min(epoch / warmup, 1) with epoch 1-based "
                            "(0: none)")

    @classmethod
    def finalize_options(cls, opt):
        super().finalize_options(opt)
        for flag in ("dkd_alpha", "dkd_beta"):
            v = getattr(opt, flag)
            if v is not None and not (math.isfinite(v) and v >= 0):
                raise UsageError(f"--{flag} must be 0 or more, got {v}")
        if opt.dkd_T is not None and not (math.isfinite(opt.dkd_T) and opt.dkd_T > 0):
            raise UsageError(f"--dkd_T must be a positive number, got {opt.dkd_T}")
        if opt.dkd_warmup < 0:
            raise UsageError(f"--dkd_warmup must be 0 or more, got {opt.dkd_warmup}")

    @classmethod
    def pair_recipe(cls, opt):
        """mdistiller's DKD settings for the pair (LS authors' with --logit_stand); kd_T 4 for -a."""
        recipe = dkd_pair_recipe(getattr(opt, "model_t", None), getattr(opt, "model_s", None),
                                 bool(getattr(opt, "logit_stand", False)))
        return {**recipe, "kd_T": KD_T_DEFAULT}

    @classmethod
    def folder_tags(cls, opt):
        """`tckd:`/`nckd:`/`temp:` when they differ from the pair's recipe, `warmup:` when not 20, `ls`."""
        recipe = cls.pair_recipe(opt)
        tags = [f"{tag}:{float(getattr(opt, flag))}" for flag, tag in cls._tag_names.items()
                if getattr(opt, flag, None) is not None and float(getattr(opt, flag)) != recipe[flag]]
        if getattr(opt, "dkd_warmup", DKD_WARMUP) != DKD_WARMUP:
            tags.append(f"warmup:{opt.dkd_warmup}")
        return tags + super().folder_tags(opt)

    def loss_terms(self):
        terms = super().loss_terms()  # cls (+ div)
        if self.beta != 0:
            ls = ", logit-standardised" if self.logit_stand else ""
            warm = f"min(epoch/{self.warmup},1)*" if self.warmup > 0 else ""
            terms["kd"] = (f"{self.beta:g}*{warm}DKD(alpha={self.dkd_alpha:g}*TCKD + beta={self.dkd_beta:g}*NCKD, "
                           f"T={self.temperature:g}{ls})")
        return terms

    # -- schedule ---------------------------------------------------------------------
    def warmup_factor(self):
        """min(epoch / warmup, 1) for the current epoch (1-based), as mdistiller; 1 without warm-up."""
        return 1.0 if self.warmup <= 0 else min(self.epoch / self.warmup, 1.0)

    # -- steps ------------------------------------------------------------------------
    def forward_train(self, batch):
        logits_s, logits_t, terms = self.logits_and_ce(batch, self.alpha != 0 or self.beta != 0)
        if self.alpha != 0:
            terms["div"] = self.alpha * self.criterion_div(logits_s, logits_t)
        if self.beta != 0:
            terms["kd"] = (self.beta * self.warmup_factor()) * dkd_loss(
                logits_s, logits_t, batch.labels, self.dkd_alpha, self.dkd_beta, self.temperature,
                logit_stand=self.logit_stand)
        return logits_s, terms
