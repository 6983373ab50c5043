"""CIFAR ResNets (depth 6n+2, three stages of BasicBlocks), as in RepDistiller.

Features for distillation: f0 = stem output (after ReLU), f1..f3 = stage outputs,
f4 = pooled embedding. With `preact=True`, f1..f3 are the last block of each stage
before its final ReLU.
"""
import torch.nn as nn
import torch.nn.functional as F

from .util import init_kaiming_fan_out, run_stage


def conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward_with_preact(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        preact = out + shortcut
        return F.relu(preact), preact

    def forward(self, x):
        return self.forward_with_preact(x)[0]


class ResNet(nn.Module):
    """`num_filters` = [stem, stage1, stage2, stage3] widths."""

    def __init__(self, depth, num_filters, num_classes=100):
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (e.g. 20, 32, 56, 110), got {depth}")
        blocks_per_stage = (depth - 2) // 6
        self.in_planes = num_filters[0]
        self.conv1 = nn.Conv2d(3, num_filters[0], kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(num_filters[0])
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_stage(num_filters[1], blocks_per_stage, stride=1)
        self.layer2 = self._make_stage(num_filters[2], blocks_per_stage, stride=2)
        self.layer3 = self._make_stage(num_filters[3], blocks_per_stage, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(num_filters[3] * BasicBlock.expansion, num_classes)
        init_kaiming_fan_out(self)

    def _make_stage(self, planes, num_blocks, stride):
        out_planes = planes * BasicBlock.expansion
        downsample = None
        if stride != 1 or self.in_planes != out_planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.in_planes, out_planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_planes),
            )
        blocks = [BasicBlock(self.in_planes, planes, stride, downsample)]
        self.in_planes = out_planes
        blocks += [BasicBlock(self.in_planes, planes) for _ in range(1, num_blocks)]
        return nn.Sequential(*blocks)

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.bn1, self.relu, self.layer1, self.layer2, self.layer3])

    def get_bn_before_relu(self):
        return [self.layer1[-1].bn2, self.layer2[-1].bn2, self.layer3[-1].bn2]

    def forward(self, x, is_feat=False, preact=False):
        f0 = self.relu(self.bn1(self.conv1(x)))
        f1, f1_pre = run_stage(self.layer1, f0)
        f2, f2_pre = run_stage(self.layer2, f1)
        f3, f3_pre = run_stage(self.layer3, f2)
        f4 = self.avgpool(f3).flatten(1)
        logits = self.fc(f4)
        if not is_feat:
            return logits
        if preact:
            return [f0, f1_pre, f2_pre, f3_pre, f4], logits
        return [f0, f1, f2, f3, f4], logits


def resnet8(num_classes=100):
    return ResNet(8, [16, 16, 32, 64], num_classes)


def resnet14(num_classes=100):
    return ResNet(14, [16, 16, 32, 64], num_classes)


def resnet20(num_classes=100):
    return ResNet(20, [16, 16, 32, 64], num_classes)


def resnet32(num_classes=100):
    return ResNet(32, [16, 16, 32, 64], num_classes)


def resnet44(num_classes=100):
    return ResNet(44, [16, 16, 32, 64], num_classes)


def resnet56(num_classes=100):
    return ResNet(56, [16, 16, 32, 64], num_classes)


def resnet110(num_classes=100):
    return ResNet(110, [16, 16, 32, 64], num_classes)


def resnet8x4(num_classes=100):
    return ResNet(8, [32, 64, 128, 256], num_classes)


def resnet32x4(num_classes=100):
    return ResNet(32, [32, 64, 128, 256], num_classes)
