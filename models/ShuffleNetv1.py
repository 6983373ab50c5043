"""ShuffleNet V1 (groups=3) for CIFAR, as in RepDistiller's `ShuffleV1`.

Features: f0 = stem output, f1..f3 = stage outputs, f4 = pooled embedding; with
`preact=True` f1..f3 are the last unit of each stage before its final ReLU.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .util import channel_shuffle, run_stage

STEM_CHANNELS = 24  # the first grouped 1x1 conv of a unit fed by the stem uses groups=1
FINAL_POOL = 4  # 32x32 input -> 4x4 after three stride-2 stages


class Bottleneck(nn.Module):
    """ShuffleNet unit: grouped 1x1 - shuffle - depthwise 3x3 - grouped 1x1.

    Stride 2 concatenates an avg-pooled shortcut (so `out_planes` here excludes
    the shortcut's channels); stride 1 adds the identity.
    """

    def __init__(self, in_planes, out_planes, stride, groups):
        super().__init__()
        self.stride = stride
        mid_planes = out_planes // 4
        self.first_groups = 1 if in_planes == STEM_CHANNELS else groups
        self.conv1 = nn.Conv2d(in_planes, mid_planes, kernel_size=1, groups=self.first_groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_planes)
        self.conv2 = nn.Conv2d(mid_planes, mid_planes, kernel_size=3, stride=stride, padding=1,
                               groups=mid_planes, bias=False)
        self.bn2 = nn.BatchNorm2d(mid_planes)
        self.conv3 = nn.Conv2d(mid_planes, out_planes, kernel_size=1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()

    def forward_with_preact(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = channel_shuffle(out, self.first_groups)
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = self.shortcut(x)
        preact = torch.cat([out, shortcut], 1) if self.stride == 2 else out + shortcut
        return F.relu(preact), preact

    def forward(self, x):
        return self.forward_with_preact(x)[0]


class ShuffleNet(nn.Module):
    def __init__(self, out_planes, num_blocks, groups, num_classes=100):
        super().__init__()
        self.conv1 = nn.Conv2d(3, STEM_CHANNELS, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM_CHANNELS)
        self.in_planes = STEM_CHANNELS
        self.layer1 = self._make_stage(out_planes[0], num_blocks[0], groups)
        self.layer2 = self._make_stage(out_planes[1], num_blocks[1], groups)
        self.layer3 = self._make_stage(out_planes[2], num_blocks[2], groups)
        self.linear = nn.Linear(out_planes[2], num_classes)

    def _make_stage(self, out_planes, num_blocks, groups):
        units = []
        for i in range(num_blocks):
            concat_planes = self.in_planes if i == 0 else 0
            units.append(Bottleneck(self.in_planes, out_planes - concat_planes,
                                    stride=2 if i == 0 else 1, groups=groups))
            self.in_planes = out_planes
        return nn.Sequential(*units)

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.bn1, self.layer1, self.layer2, self.layer3])

    def get_bn_before_relu(self):
        raise NotImplementedError("ShuffleV1 has no BN-before-ReLU list (the reference does not "
                                  "support it as an 'Overhaul'/AB teacher); pick another teacher")

    def forward(self, x, is_feat=False, preact=False):
        f0 = F.relu(self.bn1(self.conv1(x)))
        f1, f1_pre = run_stage(self.layer1, f0)
        f2, f2_pre = run_stage(self.layer2, f1)
        f3, f3_pre = run_stage(self.layer3, f2)
        f4 = F.avg_pool2d(f3, FINAL_POOL).flatten(1)
        logits = self.linear(f4)
        if not is_feat:
            return logits
        if preact:
            return [f0, f1_pre, f2_pre, f3_pre, f4], logits
        return [f0, f1, f2, f3, f4], logits


def ShuffleV1(num_classes=100):
    return ShuffleNet(out_planes=[240, 480, 960], num_blocks=[4, 8, 4], groups=3, num_classes=num_classes)
