"""Factor transfer (Kim et al., NeurIPS 2018).

Init stage: a paraphraser auto-encodes the teacher's last feature map. Main stage: a
translator maps the student's last map to "factors" matched (L1 of normalised factor
attention) to the frozen paraphraser's teacher factors.
"""
import torch.nn as nn
import torch.nn.functional as F

from .AT import pool_to_same_size
from .FitNet import HintLoss
from .base import feature_shapes
from .KD import KDDistiller

# Share of the teacher's channels kept as factors (paraphrase rate k).
FACTOR_RATE = 0.5
LEAKY_SLOPE = 0.1
# helper/pretrain.py: the paraphraser of these students is pre-trained at this lr.
FACTOR_INIT_LR = 0.01
FACTOR_INIT_LR_STUDENTS = ('resnet8', 'resnet14', 'resnet20', 'resnet32', 'resnet44', 'resnet56', 'resnet110',
                           'resnet8x4', 'resnet32x4', 'wrn_16_1', 'wrn_16_2', 'wrn_40_1', 'wrn_40_2')


class FactorTransfer(nn.Module):
    """Mean |.|^p2 difference of L2-normalised factor maps mean_c(f^p1)."""

    def __init__(self, p1=2, p2=1):
        super().__init__()
        self.p1 = p1
        self.p2 = p2

    def forward(self, f_s, f_t):
        return self.factor_loss(f_s, f_t)

    def factor_loss(self, f_s, f_t):
        f_s, f_t = pool_to_same_size(f_s, f_t)
        diff = self.factor(f_s) - self.factor(f_t)
        if self.p2 == 1:
            return diff.abs().mean()
        return diff.pow(self.p2).mean()

    def factor(self, f):
        return F.normalize(f.pow(self.p1).mean(1).view(f.size(0), -1))


def conv_stage(layer, in_channels, out_channels, use_bn):
    """3x3 (transposed) conv, optional BN, LeakyReLU(0.1)."""
    return [layer(in_channels, out_channels, 3, 1, 1),
            nn.BatchNorm2d(out_channels) if use_bn else nn.Identity(),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True)]


class Paraphraser(nn.Module):
    """Conv auto-encoder of the teacher map: C -> C -> kC -> kC, and back."""

    def __init__(self, t_shape, k=FACTOR_RATE, use_bn=False):
        super().__init__()
        c, factor_c = t_shape[1], int(t_shape[1] * k)
        self.encoder = nn.Sequential(*conv_stage(nn.Conv2d, c, c, use_bn),
                                     *conv_stage(nn.Conv2d, c, factor_c, use_bn),
                                     *conv_stage(nn.Conv2d, factor_c, factor_c, use_bn))
        self.decoder = nn.Sequential(*conv_stage(nn.ConvTranspose2d, factor_c, factor_c, use_bn),
                                     *conv_stage(nn.ConvTranspose2d, factor_c, c, use_bn),
                                     *conv_stage(nn.ConvTranspose2d, c, c, use_bn))

    def forward(self, f, is_factor=False):
        factor = self.encoder(f)
        if is_factor:
            return factor
        return factor, self.decoder(factor)


class Translator(nn.Module):
    """Conv encoder of the student map into the teacher's factor space (kC_t channels)."""

    def __init__(self, s_shape, t_shape, k=FACTOR_RATE, use_bn=True):
        super().__init__()
        c, factor_c = s_shape[1], int(t_shape[1] * k)
        self.encoder = nn.Sequential(*conv_stage(nn.Conv2d, c, c, use_bn),
                                     *conv_stage(nn.Conv2d, c, factor_c, use_bn),
                                     *conv_stage(nn.Conv2d, factor_c, factor_c, use_bn))

    def forward(self, f):
        return self.encoder(f)


class FactorDistiller(KDDistiller):
    """beta * FT(translator(student feats[-2]), paraphraser(teacher feats[-2]) factors).

    The paraphraser is trained only in `pretrain` (then frozen, eval mode); the
    translator is trained with the student.
    """
    name = "factor"
    display_name = "FT"
    table_order = 100
    default_weights = {"gamma": 1.0, "alpha": 0.0, "beta": 200.0}
    has_method_loss = True

    def __init__(self, student, teacher, opt):
        super().__init__(student, teacher, opt)
        s_shape = feature_shapes(student)[-2]
        t_shape = feature_shapes(teacher)[-2]
        self.paraphraser = Paraphraser(t_shape)
        self.paraphraser.requires_grad_(False)   # trained in the init stage only
        self.translator = Translator(s_shape, t_shape)
        self.criterion_kd = FactorTransfer()
        self.criterion_init = HintLoss()           # reconstruction MSE

    def train(self, mode=True):
        super().train(mode)
        self.paraphraser.eval()
        return self

    def method_loss(self, feats_s, feats_t):
        factor_t = self.paraphraser(feats_t[-2], is_factor=True)
        return self.criterion_kd(self.translator(feats_s[-2]), factor_t)

    def pretrain(self, loader, opt, device, log=print):
        """`opt.init_epochs` epochs training the paraphraser to reconstruct teacher feats[-2]."""
        def step_loss(images):
            feats_t, _ = self.teacher_forward(images, is_feat=True)
            _, reconstruction = self.paraphraser(feats_t[-2])
            return self.criterion_init(reconstruction, feats_t[-2])

        lr = FACTOR_INIT_LR if opt.model_s in FACTOR_INIT_LR_STUDENTS else opt.learning_rate
        self.run_init_stage([self.paraphraser], step_loss, loader, opt, device, log, lr=lr)
