"""KD (Hinton et al., 2015) and the loss layout every RepDistiller method shares.

RepDistiller trains every student on gamma * CE + alpha * KL_T(student, teacher)
+ beta * method loss. `KDDistiller` implements the first two terms and the common
step; the other methods subclass it and only add their own term (`method_loss`),
their extra modules and, for AB / FT / FSP, an init stage (`run_init_stage`).

`--logit_stand` (defined here, once, for every method): logit standardization (Sun et al.,
"Logit Standardization in Knowledge Distillation", CVPR 2024; sunshangquan/logit-standardization-KD),
each logit row z -> (z - mean(z)) / (1e-7 + std(z)) for student and teacher before the
temperature. Only logit methods take it (those that declare `logit_method = True` in their
own class: kd, dkd); the others refuse it. With it, kd's temperature and KD weight default to
the LS authors' per-pair values (`LS_KD_RECIPE`).
"""
import math
from types import SimpleNamespace

import torch
import torch.nn as nn
import torch.nn.functional as F

from util.errors import UsageError, check_stage_loss

from .base import Distiller

# RepDistiller's KD temperature (--kd_T when not given, except kd with --logit_stand).
KD_T_DEFAULT = 4
# Logit standardization's guard against a zero std (the LS authors' `normalize`).
LOGIT_STAND_EPS = 1e-7
# The LS authors' tools/train.py defaults (--base-temp 2 --kd-weight 9), the command of their
# README for every method; used for the pairs they publish no log of.
LS_DEFAULT = (2.0, 9.0)
# kd + LS: (base temperature, KD weight) per (teacher, student), from the names of their
# training logs `logs/KD/kd,<teacher>,<student>,<base temp>,<kd weight>.txt`, the runs their
# README's table links (CE weight stays 0.1: their mdistiller/engine/cfg.py, KD.LOSS.CE_WEIGHT).
LS_KD_RECIPE = {
    ("resnet56", "resnet20"): (2.0, 9.0),
    ("resnet110", "resnet32"): (2.0, 9.0),
    ("resnet32x4", "resnet8x4"): (2.0, 9.0),
    ("wrn_40_2", "wrn_16_2"): (2.0, 9.0),
    ("wrn_40_2", "wrn_40_1"): (2.0, 9.0),
    ("vgg13", "vgg8"): (3.0, 9.0),
    ("vgg13", "MobileNetV2"): (3.0, 9.0),
    ("ResNet50", "MobileNetV2"): (3.0, 1.0),
    ("resnet32x4", "ShuffleV2"): (2.0, 9.0),
    # logged pairs beyond this repo's 12
    ("resnet110", "resnet20"): (4.0, 12.0),
    ("resnet32x4", "wrn_16_2"): (3.0, 9.0),
    ("resnet32x4", "wrn_40_2"): (3.0, 9.0),
    ("wrn_40_2", "resnet8x4"): (2.0, 9.0),
    ("wrn_40_2", "MobileNetV2"): (3.0, 9.0),
}


def at_least_float32(t):
    """bf16/fp16 logits (--amp, --teacher_bf16) are scored in float32; float64 stays."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def standardize_logits(z):
    """Logit standardization: each row (z - mean) / (1e-7 + std), unbiased std over the classes,
    in float32 at least."""
    z = at_least_float32(z)
    return (z - z.mean(dim=1, keepdim=True)) / (LOGIT_STAND_EPS + z.std(dim=1, keepdim=True))


class DistillKL(nn.Module):
    """KL(p_t || p_s) on temperature-softened logits, scaled by T^2, averaged over the batch.

    With `logit_stand`, both logit rows are standardised (`standardize_logits`) before the
    temperature, as the LS authors' `kd_loss`."""

    def __init__(self, T, logit_stand=False):
        super().__init__()
        self.T = T
        self.logit_stand = bool(logit_stand)

    def forward(self, y_s, y_t):
        if self.logit_stand:
            y_s, y_t = standardize_logits(y_s), standardize_logits(y_t)
        log_p_s = F.log_softmax(y_s / self.T, dim=1)
        p_t = F.softmax(y_t / self.T, dim=1)
        # T^2 keeps the gradient scale independent of the temperature (Hinton et al.)
        return F.kl_div(log_p_s, p_t, reduction="sum") * (self.T ** 2) / y_s.shape[0]


def ls_kd_recipe(model_t, model_s):
    """(base temperature, KD weight) of kd + LS for a pair: `LS_KD_RECIPE`, else `LS_DEFAULT`."""
    return LS_KD_RECIPE.get((model_t, model_s), LS_DEFAULT)


# The PACKD authors' ImageNet script distils at T=3 (train_student_imagenet.py --kd_T).
IMAGENET_KD_T = 3


def default_temperature(opt):
    """RepDistiller's T=4, or the PACKD authors' T=3 on ImageNet."""
    return IMAGENET_KD_T if getattr(opt, "dataset", None) == "imagenet" else KD_T_DEFAULT


def fill_unset(opt, values):
    """Set each flag of `values` that `opt` leaves at None (or lacks); the user's values stay."""
    for key, value in values.items():
        if getattr(opt, key, None) is None:
            setattr(opt, key, value)
    return opt


def with_pair_recipe(cls, opt):
    """`opt`, or a copy of it with the flags `cls.pair_recipe` sets that are still None filled in.

    train_student.py fills them in `opt` itself (`resolve_pair_settings`); a method built from
    options that skipped that step (the benchmark, tests) gets the same values here."""
    recipe = {k: v for k, v in cls.pair_recipe(opt).items() if getattr(opt, k, None) is None}
    return fill_unset(SimpleNamespace(**vars(opt)), recipe) if recipe else opt


def logit_method_names():
    """The --distill names that take --logit_stand."""
    from distiller_zoo import METHODS
    return [name for name, c in METHODS.items() if getattr(c, "logit_method", False)]


# The sweep's `METHODS="kd kd+ls"`: the LS authors' variant of a logit method.
LS_SWEEP_VARIANTS = {"ls": ("--logit_stand",)}


class KDDistiller(Distiller):
    """gamma * CE + alpha * KL_T; subclasses add beta * `method_loss(feats_s, feats_t)`.

    The teacher and the intermediate features are only computed when a term with a
    non-zero weight needs them, so e.g. kd with alpha=0 costs one student forward.
    With --logit_stand (kd only) the KL is taken on standardised logits.
    """
    name = "kd"
    display_name = "KD"
    table_order = 10
    # RepDistiller README: -r 0.1 -a 0.9 -b 0
    default_weights = {"gamma": 0.1, "alpha": 0.9, "beta": 0.0}
    # Whether the main stage has a feature term (AB and FSP only distil in their init stage).
    has_method_loss = False
    # Features taken before the block's final ReLU (AB only).
    preact = False
    # Takes --logit_stand: its loss is on the logits only. Not inherited (see __init_subclass__):
    # crd, hint, ... are built on this class but refuse it.
    logit_method = True
    sweep_variants = LS_SWEEP_VARIANTS

    def __init_subclass__(cls, **kwargs):
        """A method built on this class is a logit method only when its own class says so;
        otherwise it refuses --logit_stand and has no `ls` sweep variant."""
        super().__init_subclass__(**kwargs)
        own = vars(cls)
        if "logit_method" not in own:
            cls.logit_method = False
        if "sweep_variants" not in own:
            cls.sweep_variants = LS_SWEEP_VARIANTS if cls.logit_method else {}

    def __init__(self, student, teacher, opt):
        if teacher is None:
            raise ValueError(f"method '{self.name}' distils from a teacher: pass one")
        if opt is None:
            raise ValueError(f"method '{self.name}' reads kd_T and its settings from opt: pass the options")
        opt = with_pair_recipe(type(self), opt)
        super().__init__(student, teacher, opt)
        self.logit_stand = bool(getattr(opt, "logit_stand", False))
        if self.logit_stand and not self.logit_method:
            raise ValueError(f"method '{self.name}' is not a logit method: it cannot take logit_stand")
        self.criterion_div = DistillKL(opt.kd_T, logit_stand=self.logit_stand)

    @classmethod
    def add_arguments(cls, parser):
        """RepDistiller's flags shared by every method built on this class, and --logit_stand."""
        g = parser.add_argument_group("KD and the RepDistiller methods")
        # "%(default).0s" prints nothing: it only stops argparse from adding "(default: None)".
        g.add_argument("--kd_T", type=float, default=None,
                       help=f"KD temperature (default: {KD_T_DEFAULT}); with --logit_stand, kd's default is the LS "
                            f"authors' base temperature for the pair (2, or 3 for some pairs)%(default).0s")
        g.add_argument("--init_epochs", type=int, default=30, help="pre-training epochs (abound, factor, fsp)")
        g.add_argument("--init_lr", type=float, default=None,
                       help="pre-training learning rate (abound, factor, fsp); default RepDistiller's: "
                            "0.01 for factor with the CIFAR ResNets/WRNs, else --learning_rate")
        g.add_argument("--logit_stand", action="store_true",
                       help="logit standardization (Sun et al., CVPR 2024): z-score each logit row of student and "
                            "teacher before the temperature; logit methods only (kd, dkd, ...). Unless given, "
                            "the temperature and KD weight become the LS authors' for the pair (kd: --kd_T and "
                            "-a; dkd: --dkd_T, --dkd_beta and -b)")

    @classmethod
    def finalize_options(cls, opt):
        super().finalize_options(opt)
        if opt.init_epochs < 0:
            raise UsageError(f"--init_epochs must be 0 or more, got {opt.init_epochs}")
        if opt.init_lr is not None and not opt.init_lr > 0:
            raise UsageError(f"--init_lr must be positive, got {opt.init_lr}")
        if opt.kd_T is not None and not (math.isfinite(opt.kd_T) and opt.kd_T > 0):
            raise UsageError(f"--kd_T must be a positive number, got {opt.kd_T}")
        logit_stand = getattr(opt, "logit_stand", False)
        if logit_stand and not cls.logit_method:
            raise UsageError(f"--logit_stand standardises the logits of a logit method "
                             f"({', '.join(logit_method_names())}); {cls.name} is not one: drop --logit_stand")
        if not logit_stand:
            fill_unset(opt, {"kd_T": default_temperature(opt)})  # with --logit_stand: per pair, resolve_pair_settings

    @classmethod
    def pair_recipe(cls, opt):
        """{flag: value} the authors set for opt's (teacher, student) pair, for the flags left at None.

        kd: RepDistiller's T=4 for every pair; kd + LS: `ls_kd_recipe` (--kd_T and -a)."""
        if cls.logit_method and getattr(opt, "logit_stand", False):
            T, weight = ls_kd_recipe(getattr(opt, "model_t", None), getattr(opt, "model_s", None))
            return {"kd_T": T, "alpha": weight}
        return {"kd_T": default_temperature(opt)}

    @classmethod
    def resolve_pair_settings(cls, opt):
        super().resolve_pair_settings(opt)
        fill_unset(opt, cls.pair_recipe(opt))

    @classmethod
    def folder_tags(cls, opt):
        """`ls` with --logit_stand (kd + LS is the LS authors' variant of kd)."""
        return ["ls"] if getattr(opt, "logit_stand", False) else []

    def loss_terms(self):
        terms = {"cls": f"{self.gamma:g}*CE"}
        if self.alpha != 0:
            ls = ", logit-standardised" if self.logit_stand else ""
            terms["div"] = f"{self.alpha:g}*KL(T={self.criterion_div.T:g}{ls})"
        if self.has_method_loss and self.beta != 0:
            terms["kd"] = f"{self.beta:g}*{self.title()}"
        return terms

    def method_loss(self, feats_s, feats_t):
        """The method's own (unweighted) loss on student / teacher features."""
        raise NotImplementedError

    def features(self, images):
        """(feats_s, logits_s, feats_t, logits_t) for the feature term: both sides with `preact`."""
        feats_s, logits_s = self.student(images, is_feat=True, preact=self.preact)
        feats_t, logits_t = self.teacher_forward(images, is_feat=True, preact=self.preact)
        return feats_s, logits_s, feats_t, logits_t

    def forward_train(self, batch):
        use_features = self.has_method_loss and self.beta != 0
        if use_features:
            feats_s, logits_s, feats_t, logits_t = self.features(batch.images)
            terms = {"cls": self.gamma * F.cross_entropy(logits_s, batch.labels)}
        else:
            logits_s, logits_t, terms = self.logits_and_ce(batch, self.alpha != 0)
        if self.alpha != 0:
            terms["div"] = self.alpha * self.criterion_div(logits_s, logits_t)
        if use_features:
            terms["kd"] = self.beta * self.method_loss(feats_s, feats_t)
        return logits_s, terms

    def run_init_stage(self, modules, step_loss, loader, opt, device, log, lr=None):
        """RepDistiller's `helper/pretrain.init`: train `modules` alone on `step_loss(images)`.

        The student and teacher stay in eval mode except for the modules listed (which
        are switched to train mode), for `opt.init_epochs` epochs of SGD with the main
        run's momentum and weight decay, at `--init_lr` when given, else `lr` (the
        method's RepDistiller rate), else `opt.learning_rate`. Modules
        frozen for the main stage are unfrozen here and frozen again afterwards.
        The average loss is logged once per epoch (the only host sync).
        """
        was_training = self.training
        modules = nn.ModuleList(modules)
        params = list(modules.parameters())
        frozen = [p for p in params if not p.requires_grad]
        for p in frozen:
            p.requires_grad_(True)
        self.eval()
        modules.train()
        given = getattr(opt, "init_lr", None)
        lr = given if given is not None else (opt.learning_rate if lr is None else lr)
        optimizer = torch.optim.SGD(params, lr=lr, momentum=opt.momentum, weight_decay=opt.weight_decay)
        try:
            for epoch in range(1, opt.init_epochs + 1):
                loss_sum = torch.zeros((), device=device)
                seen = 0
                for batch in loader:
                    images = batch.images.to(device, non_blocking=True)
                    loss = step_loss(images)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    loss_sum += loss.detach() * images.shape[0]
                    seen += images.shape[0]
                average = loss_sum.item() / max(seen, 1)
                log(f"{self.name} init epoch [{epoch}/{opt.init_epochs}] loss {average:.4f}")
                check_stage_loss(average, f"the {self.name} pre-training stage (lr {lr:g})", epoch,
                                 hint="try a lower --init_lr")
        finally:
            optimizer.zero_grad(set_to_none=True)
            for p in frozen:
                p.requires_grad_(False)
            self.train(was_training)
