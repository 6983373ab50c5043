"""Wide ResNets WRN-d-k for CIFAR (pre-activation blocks), as in RepDistiller.

Features: f0 = stem conv output, f1..f3 = stage outputs, f4 = pooled embedding.
The blocks are pre-activation, so a stage output has no ReLU of its own; with
`preact=True` the reference returns f1..f3 passed through the BatchNorm that the
next block (or the final BN) applies before its ReLU. That BN module is called
again for this, exactly as in the reference (in train mode it sees the batch twice).
"""
import torch.nn as nn
import torch.nn.functional as F

from .util import init_conv_bn_linear


class BasicBlock(nn.Module):
    """BN-ReLU-conv x2 with a 1x1 conv shortcut (fed the activated input) when widths differ."""

    def __init__(self, in_planes, out_planes, stride, drop_rate=0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.equal_in_out = in_planes == out_planes
        self.convShortcut = None if self.equal_in_out else nn.Conv2d(
            in_planes, out_planes, kernel_size=1, stride=stride, padding=0, bias=False)

    def forward(self, x):
        activated = F.relu(self.bn1(x))
        out = F.relu(self.bn2(self.conv1(activated)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        out = self.conv2(out)
        shortcut = x if self.equal_in_out else self.convShortcut(activated)
        return shortcut + out


class NetworkBlock(nn.Module):
    """One stage; the `layer` attribute keeps the reference's `blockN.layer.i.*` key names."""

    def __init__(self, num_layers, in_planes, out_planes, stride, drop_rate=0.0):
        super().__init__()
        self.layer = nn.Sequential(*[
            BasicBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, drop_rate)
            for i in range(num_layers)
        ])

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth, num_classes=100, widen_factor=1, drop_rate=0.0):
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WRN depth must be 6n+4 (e.g. 16, 40), got {depth}")
        n = (depth - 4) // 6
        channels = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(3, channels[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(n, channels[0], channels[1], 1, drop_rate)
        self.block2 = NetworkBlock(n, channels[1], channels[2], 2, drop_rate)
        self.block3 = NetworkBlock(n, channels[2], channels[3], 2, drop_rate)
        self.bn1 = nn.BatchNorm2d(channels[3])
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(channels[3], num_classes)
        self.nChannels = channels[3]
        init_conv_bn_linear(self)

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.block1, self.block2, self.block3])

    def get_bn_before_relu(self):
        return [self.block2.layer[0].bn1, self.block3.layer[0].bn1, self.bn1]

    def forward(self, x, is_feat=False, preact=False):
        f0 = self.conv1(x)
        f1 = self.block1(f0)
        f2 = self.block2(f1)
        f3 = self.block3(f2)
        f4 = F.adaptive_avg_pool2d(self.relu(self.bn1(f3)), 1).flatten(1)
        logits = self.fc(f4)
        if not is_feat:
            return logits
        if preact:
            f1, f2, f3 = (bn(f) for bn, f in zip(self.get_bn_before_relu(), (f1, f2, f3)))
        return [f0, f1, f2, f3, f4], logits


def wrn_40_2(num_classes=100):
    return WideResNet(40, num_classes, widen_factor=2)


def wrn_40_1(num_classes=100):
    return WideResNet(40, num_classes, widen_factor=1)


def wrn_16_2(num_classes=100):
    return WideResNet(16, num_classes, widen_factor=2)


def wrn_16_1(num_classes=100):
    return WideResNet(16, num_classes, widen_factor=1)
