"""MobileNetV2 for CIFAR (stem stride 2), as in RepDistiller; `mobile_half` = expansion 6, width 0.5.

Features: f0 = stem output, f1/f2/f3/f4 = outputs of inverted-residual groups
1/2/4/6, f5 = pooled 1280-d embedding. The reference ignores `preact` here, so
`preact=True` returns the same features.
"""
import torch.nn as nn

from .util import init_conv_bn_linear

LINEAR_INIT_STD = 0.01  # the reference draws classifier weights from N(0, 0.01)
LAST_CHANNEL = 1280
STEM_CHANNELS = 32
# (expansion t, output channels c, repeats n, first stride s); t=None means "use T"
INVERTED_RESIDUAL_SETTING = [
    (1, 16, 1, 1),
    (None, 24, 2, 1),
    (None, 32, 3, 2),
    (None, 64, 4, 2),
    (None, 96, 3, 1),
    (None, 160, 3, 2),
    (None, 320, 1, 1),
]
FEATURE_GROUPS = (1, 2, 4, 6)  # groups whose outputs are f1..f4 (and whose last BN is "before ReLU")


def conv_bn_relu(in_channels, out_channels, kernel_size, stride):
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class InvertedResidual(nn.Module):
    """1x1 expand - 3x3 depthwise - 1x1 linear projection, residual when shapes match."""

    def __init__(self, in_channels, out_channels, stride, expand_ratio):
        super().__init__()
        hidden = in_channels * expand_ratio
        self.use_res_connect = stride == 1 and in_channels == out_channels
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1, 1, 0, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out_channels, 1, 1, 0, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x):
        out = self.conv(x)
        return x + out if self.use_res_connect else out


class MobileNetV2(nn.Module):
    def __init__(self, expansion, num_classes=100, width_mult=1.0):
        super().__init__()
        in_channels = int(STEM_CHANNELS * width_mult)
        self.conv1 = conv_bn_relu(3, in_channels, 3, stride=2)
        self.blocks = nn.ModuleList()
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            out_channels = int(c * width_mult)
            group = []
            for i in range(n):
                group.append(InvertedResidual(in_channels, out_channels, s if i == 0 else 1,
                                              expansion if t is None else t))
                in_channels = out_channels
            self.blocks.append(nn.Sequential(*group))
        self.last_channel = int(LAST_CHANNEL * width_mult) if width_mult > 1.0 else LAST_CHANNEL
        self.conv2 = conv_bn_relu(in_channels, self.last_channel, 1, stride=1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(self.last_channel, num_classes))
        init_conv_bn_linear(self, linear_std=LINEAR_INIT_STD)

    def get_bn_before_relu(self):
        return [self.blocks[i][-1].conv[-1] for i in FEATURE_GROUPS]

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.blocks])

    def forward(self, x, is_feat=False, preact=False):
        out = self.conv1(x)
        feats = [out]
        for i, group in enumerate(self.blocks):
            out = group(out)
            if i in FEATURE_GROUPS:
                feats.append(out)
        out = self.avgpool(self.conv2(out)).flatten(1)
        feats.append(out)
        logits = self.classifier(out)
        if is_feat:
            return feats, logits
        return logits


def mobilenetv2_T_w(expansion, width_mult, num_classes=100):
    return MobileNetV2(expansion, num_classes, width_mult)


def mobile_half(num_classes=100):
    return mobilenetv2_T_w(6, 0.5, num_classes)
