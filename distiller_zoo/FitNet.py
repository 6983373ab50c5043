"""FitNet (Romero et al., 2015): regress a student hint layer onto the teacher's."""
import torch.nn as nn
import torch.nn.functional as F

from util.errors import UsageError

from .base import feature_shapes
from .KD import KDDistiller


class HintLoss(nn.Module):
    """Mean squared error between the (regressed) student map and the teacher map."""

    def forward(self, f_s, f_t):
        return F.mse_loss(f_s, f_t)


class ConvReg(nn.Module):
    """Conv (+BN, optional ReLU) mapping a student map onto a teacher map's shape.

    Halves (stride-2 conv), doubles (transposed conv) or shrinks with a 'valid' conv,
    as RepDistiller's `models/util.ConvReg`.
    """

    def __init__(self, s_shape, t_shape, use_relu=True):
        super().__init__()
        self.use_relu = use_relu
        _, s_c, s_h, s_w = s_shape
        _, t_c, t_h, t_w = t_shape
        if s_h == 2 * t_h:
            self.conv = nn.Conv2d(s_c, t_c, kernel_size=3, stride=2, padding=1)
        elif s_h * 2 == t_h:
            self.conv = nn.ConvTranspose2d(s_c, t_c, kernel_size=4, stride=2, padding=1)
        elif s_h >= t_h:
            self.conv = nn.Conv2d(s_c, t_c, kernel_size=(1 + s_h - t_h, 1 + s_w - t_w))
        else:
            raise UsageError(f"ConvReg: student map {s_h}x{s_w} is smaller than the teacher's "
                             f"{t_h}x{t_w} and not half of it; pick another hint layer")
        self.bn = nn.BatchNorm2d(t_c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.bn(self.conv(x))
        return self.relu(x) if self.use_relu else x


class HintDistiller(KDDistiller):
    """beta * MSE(ConvReg(student feats[hint_layer]), teacher feats[hint_layer])."""
    name = "hint"
    display_name = "FitNet"
    table_order = 20
    default_weights = {"gamma": 1.0, "alpha": 0.0, "beta": 100.0}
    has_method_loss = True

    @classmethod
    def add_arguments(cls, parser):
        g = parser.add_argument_group("FitNet")
        g.add_argument("--hint_layer", type=int, default=2, choices=[0, 1, 2, 3, 4], help="feature used as hint")

    def __init__(self, student, teacher, opt):
        super().__init__(student, teacher, opt)
        s_shapes, t_shapes = feature_shapes(student), feature_shapes(teacher)
        self.hint_layer = opt.hint_layer
        if not -len(s_shapes) <= self.hint_layer < min(len(s_shapes), len(t_shapes)):
            raise UsageError(f"--hint_layer {self.hint_layer} is out of range for {len(s_shapes)} features; pick 0..{min(len(s_shapes), len(t_shapes)) - 1}")
        self.regressor = ConvReg(s_shapes[self.hint_layer], t_shapes[self.hint_layer])
        self.criterion_kd = HintLoss()

    def method_loss(self, feats_s, feats_t):
        layer = self.hint_layer
        return self.criterion_kd(self.regressor(feats_s[layer]), feats_t[layer])
