"""ReviewKD (Chen et al., CVPR 2021): "Distilling Knowledge via Knowledge Review".

Follows megvii-research/mdistiller (`mdistiller/distillers/ReviewKD.py`, REVIEWKD defaults in
`mdistiller/engine/cfg.py`, `configs/cifar100/reviewkd.yaml`) and, for the per-student layouts
and per-pair weights that mdistiller leaves to the user, the authors' own code
(dvlab-research/ReviewKD, `CIFAR-100/model/reviewkd.py` `build_review_kd`,
`CIFAR-100/script/reviewKD.sh`).

The student's features are reviewed from the deepest to the shallowest: an attention-based
fusion (ABF) module turns each student feature into the shape of the teacher's feature at
that level, fusing in the residual carried up from the deeper levels; a hierarchical context
loss (HCL: MSE at full resolution plus MSE of 4x4 / 2x2 / 1x1 average-pooled maps, halving
weights) compares each output with the teacher's pre-activation feature.

Layout, as the authors' configs, derived here from the models' own feature lists
(`model(x, is_feat=True, preact=...)`, the pooled embedding last):

- teacher targets: the teacher's pre-activation features without the first (stem) one, the
  pooled embedding last as a 1x1 map (mdistiller's `preact_feats[1:] + [pooled_feat]`); their
  number N is the number of ABFs;
- student inputs: the last N of the student's features (post-activation unless
  `--reviewkd_stu_preact`; mdistiller's `feats + [pooled_feat]`, of which the chain uses the
  last N), the pooled one as a 1x1 map;
- IN_CHANNELS / OUT_CHANNELS: those features' channels, shallow to deep; SHAPES / OUT_SHAPES:
  their spatial sizes, deep to shallow (1 for the pooled feature); the ABFs' middle width is
  min(512, IN_CHANNELS[-1]) (mdistiller's MAX_MID_CHANNEL is 512 and hard-coded there).

For every benchmark pair this gives exactly the authors' values (tested in
`tests/distiller_zoo/test_reviewkd.py`).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from util.errors import UsageError

from .base import feature_shapes
from .KD import KDDistiller

# mdistiller `cfg.py`: REVIEWKD.MAX_MID_CHANNEL = 512 (its distiller hard-codes the same 512).
MAX_MID_CHANNEL = 512
# mdistiller `cfg.py`: REVIEWKD.WARMUP_EPOCHS = 20 (the authors' `--kd-warm-up 20.0`).
WARMUP_EPOCHS = 20.0
# HCL pyramid: average-pooled sizes, each compared when smaller than the map, weights 1/2, 1/4, 1/8.
HCL_LEVELS = (4, 2, 1)

# ReviewKD weight (-b) per (teacher, student) where the authors published one:
# dvlab-research/ReviewKD `CIFAR-100/script/reviewKD.sh` (--kd-loss-weight); mdistiller's
# `configs/cifar100/reviewkd.yaml` agrees for resnet32x4 -> resnet8x4 (REVIEWKD_WEIGHT 5.0).
# Pairs not listed (vgg13 -> vgg8 / MobileNetV2, ResNet50 -> MobileNetV2 / vgg8: no published
# weight) use mdistiller's default REVIEWKD_WEIGHT 1.0.
PAIR_BETA = {
    ("wrn_40_2", "wrn_16_2"): 5.0,
    ("wrn_40_2", "wrn_40_1"): 5.0,
    ("wrn_40_2", "ShuffleV1"): 5.0,
    ("resnet32x4", "resnet8x4"): 5.0,
    ("resnet32x4", "ShuffleV1"): 5.0,
    ("resnet32x4", "ShuffleV2"): 8.0,
    ("resnet56", "resnet20"): 0.6,
    ("resnet110", "resnet32"): 1.0,
}


def pair_beta(model_t, model_s):
    """The authors' ReviewKD weight for (teacher, student), or None when they published none."""
    return PAIR_BETA.get((model_t, model_s))


def hcl_loss(features_student, features_teacher):
    """Hierarchical context loss summed over levels (lists of (N, C, H, W) maps, same shapes).

    Per level: MSE of the maps, plus MSE of their 4x4, 2x2 and 1x1 adaptive average pools
    (only pools smaller than the map's height) with weights 1/2, 1/4, 1/8, divided by the
    sum of the weights used.
    """
    if len(features_student) != len(features_teacher):
        raise ValueError(f"hcl_loss: {len(features_student)} student vs {len(features_teacher)} teacher maps")
    total = 0.0
    for fs, ft in zip(features_student, features_teacher):
        height = fs.shape[2]
        loss = F.mse_loss(fs, ft)
        weight = weight_sum = 1.0
        for size in HCL_LEVELS:
            if size >= height:
                continue
            weight /= 2.0
            loss = loss + weight * F.mse_loss(F.adaptive_avg_pool2d(fs, size), F.adaptive_avg_pool2d(ft, size))
            weight_sum += weight
        total = total + loss / weight_sum
    return total


class ABF(nn.Module):
    """Attention-based fusion: 1x1 conv-BN to `mid_channel`; with `fuse`, a per-pixel
    two-way sigmoid attention mixes in the deeper level's residual `y` (nearest-resized to
    `shape` x `shape`); the result, nearest-resized to `out_shape` when it differs, is the
    residual handed to the next (shallower) ABF, and a 3x3 conv-BN of it is the output
    compared with the teacher."""

    def __init__(self, in_channel, mid_channel, out_channel, fuse):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_channel, mid_channel, kernel_size=1, bias=False),
                                   nn.BatchNorm2d(mid_channel))
        self.conv2 = nn.Sequential(nn.Conv2d(mid_channel, out_channel, kernel_size=3, stride=1, padding=1,
                                             bias=False),
                                   nn.BatchNorm2d(out_channel))
        if fuse:
            self.att_conv = nn.Sequential(nn.Conv2d(2 * mid_channel, 2, kernel_size=1), nn.Sigmoid())
        else:
            self.att_conv = None
        # the authors' initialisation of the two convolutions (the attention conv keeps PyTorch's)
        nn.init.kaiming_uniform_(self.conv1[0].weight, a=1)
        nn.init.kaiming_uniform_(self.conv2[0].weight, a=1)

    def forward(self, x, y=None, shape=None, out_shape=None):
        """-> (out, res): `out` = conv2(res) for the loss, `res` the fused map for the next ABF."""
        x = self.conv1(x)
        if self.att_conv is not None:
            if y is None:
                raise ValueError("ABF(fuse=True) needs the residual y of the deeper level")
            size = tuple(x.shape[-2:]) if shape is None else (shape, shape)
            y = F.interpolate(y, size, mode="nearest")
            attention = self.att_conv(torch.cat([x, y], dim=1))
            x = x * attention[:, 0:1] + y * attention[:, 1:2]
        if out_shape is not None and x.shape[-1] != out_shape:
            x = F.interpolate(x, (out_shape, out_shape), mode="nearest")
        return self.conv2(x), x


def _spatial(shape):
    """Spatial size of a feature shape: the map's width, 1 for a pooled (N, C) embedding."""
    return 1 if len(shape) == 2 else int(shape[-1])


def _as_map(f):
    return f if f.dim() == 4 else f[:, :, None, None]


def review_layout(student, teacher, stu_preact=False):
    """The authors' REVIEWKD config for these two models, from their feature lists.

    -> dict with `in_channels`, `out_channels` (shallow to deep), `shapes`, `out_shapes`
    (deep to shallow, as mdistiller indexes them), `mid_channel`.
    """
    t_shapes = feature_shapes(teacher, preact=True)[1:]
    s_shapes = feature_shapes(student, preact=stu_preact)
    n = len(t_shapes)
    if n == 0 or len(s_shapes) < n:
        raise UsageError(f"reviewkd: the student gives {len(s_shapes)} features, the teacher {n} to distil; "
                         f"the student needs at least as many")
    s_shapes = s_shapes[-n:]
    in_channels = [int(s[1]) for s in s_shapes]
    return {
        "in_channels": in_channels,
        "out_channels": [int(t[1]) for t in t_shapes],
        "shapes": [_spatial(s) for s in reversed(s_shapes)],
        "out_shapes": [_spatial(t) for t in reversed(t_shapes)],
        "mid_channel": min(MAX_MID_CHANNEL, in_channels[-1]),
    }


class ReviewKDDistiller(KDDistiller):
    """gamma * CE (+ alpha * KL_T when -a is given, the authors' --use-kl)
    + beta * min(epoch / warmup, 1) * HCL(ABF chain(student features), teacher pre-activations)."""
    name = "reviewkd"
    display_name = "ReviewKD"
    table_order = 170
    # mdistiller cfg.py: REVIEWKD.CE_WEIGHT 1.0, REVIEWKD_WEIGHT 1.0; per pair: PAIR_BETA
    default_weights = {"gamma": 1.0, "alpha": 0.0, "beta": 1.0}
    has_method_loss = True

    @classmethod
    def add_arguments(cls, parser):
        g = parser.add_argument_group("ReviewKD")
        g.add_argument("--reviewkd_warmup", type=float, default=WARMUP_EPOCHS,
                       help="epochs of the linear warm-up of the ReviewKD term: weight x min(epoch / N, 1), "
                            "epochs counted from 1 (mdistiller's WARMUP_EPOCHS; 0: none)")
        g.add_argument("--reviewkd_stu_preact", action="store_true",
                       help="review the student's pre-activation features (mdistiller's STU_PREACT; "
                            "default off: post-activation)")

    @classmethod
    def finalize_options(cls, opt):
        super().finalize_options(opt)
        if not opt.reviewkd_warmup >= 0:
            raise UsageError(f"--reviewkd_warmup must be 0 or more, got {opt.reviewkd_warmup}")

    @classmethod
    def pair_recipe(cls, opt):
        """The base class's settings (kd_T for -a) and the authors' ReviewKD weight (-b) for the pair;
        applied to the flags left at None (also when a method is built without train_student.py)."""
        base = getattr(super(), "pair_recipe", None)
        recipe = dict(base(opt)) if base is not None else {}
        beta = pair_beta(getattr(opt, "model_t", None), getattr(opt, "model_s", None))
        if beta is not None:
            recipe["beta"] = beta
        return recipe

    @classmethod
    def resolve_pair_settings(cls, opt):
        """The authors' ReviewKD weight for a benchmark pair (`PAIR_BETA`), when -b was not given."""
        super().resolve_pair_settings(opt)
        if getattr(opt, "beta", None) is None:
            opt.beta = pair_beta(getattr(opt, "model_t", None), getattr(opt, "model_s", None))

    @classmethod
    def folder_tags(cls, opt):
        """`wu:<N>` for another warm-up, `spre` for the student's pre-activation features."""
        tags = []
        warmup = getattr(opt, "reviewkd_warmup", WARMUP_EPOCHS)
        if warmup != WARMUP_EPOCHS:
            tags.append(f"wu:{warmup:g}")
        if getattr(opt, "reviewkd_stu_preact", False):
            tags.append("spre")
        return tags + super().folder_tags(opt)

    def __init__(self, student, teacher, opt):
        super().__init__(student, teacher, opt)
        self.warmup = float(getattr(opt, "reviewkd_warmup", WARMUP_EPOCHS))
        self.stu_preact = bool(getattr(opt, "reviewkd_stu_preact", False))
        layout = review_layout(student, teacher, self.stu_preact)
        self.in_channels, self.out_channels = layout["in_channels"], layout["out_channels"]
        self.shapes, self.out_shapes = layout["shapes"], layout["out_shapes"]
        self.mid_channel = layout["mid_channel"]
        last = len(self.in_channels) - 1
        # built shallow to deep (the authors' order of initialisation), used deep to shallow
        abfs = [ABF(c, self.mid_channel, self.out_channels[i], fuse=i < last) for i, c in enumerate(self.in_channels)]
        self.abfs = nn.ModuleList(abfs[::-1])

    def loss_terms(self):
        terms = super().loss_terms()
        if "kd" in terms:
            warm = f"min(epoch/{self.warmup:g},1)*" if self.warmup > 0 else ""
            terms["kd"] = f"{self.beta:g}*{warm}ReviewKD(HCL)"
        return terms

    def warmup_factor(self):
        """min(epoch / warmup, 1) with the loop's 1-based epochs, as mdistiller's trainer (epoch 1: 1/20;
        the authors' own train.py counts from 0, so their first epoch has no ReviewKD term)."""
        return min(self.epoch / self.warmup, 1.0) if self.warmup > 0 else 1.0

    def review(self, feats_s):
        """ABF chain over the student's last N features, deepest first -> outputs shallow to deep."""
        xs = [_as_map(f) for f in feats_s[-len(self.abfs):]][::-1]
        out, res = self.abfs[0](xs[0], out_shape=self.out_shapes[0])
        outs = [out]
        for x, abf, shape, out_shape in zip(xs[1:], self.abfs[1:], self.shapes[1:], self.out_shapes[1:]):
            out, res = abf(x, res, shape, out_shape)
            outs.append(out)
        return outs[::-1]

    def features(self, images):
        """The student's features post-activation (unless --reviewkd_stu_preact), the teacher's
        pre-activation, as mdistiller's ReviewKD."""
        feats_s, logits_s = self.student(images, is_feat=True, preact=self.stu_preact)
        feats_t, logits_t = self.teacher_forward(images, is_feat=True, preact=True)
        return feats_s, logits_s, feats_t, logits_t

    def method_loss(self, feats_s, feats_t):
        """Warm-up x HCL between the chain's outputs and the teacher's features after the stem."""
        targets = [_as_map(f) for f in feats_t[1:]]
        return self.warmup_factor() * hcl_loss(self.review(feats_s), targets)
