"""ShuffleNet V2 (1x) for CIFAR, as in RepDistiller's `ShuffleV2`.

Features: f0 = stem output, f1..f3 = stage outputs, f4 = pooled embedding of the
final 1x1 conv. With `preact=True`, f1..f3 are the last unit of each stage taken
the reference's way: [untouched half, branch before its ReLU] concatenated but
NOT channel-shuffled (the returned non-preact output is shuffled).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .util import channel_shuffle, run_stage

STEM_CHANNELS = 24
SHUFFLE_GROUPS = 2
FINAL_POOL = 4  # 32x32 input -> 4x4 after three stride-2 stages
CONFIGS = {
    # net size: (stage output channels + final conv channels, units per stage)
    0.5: ((48, 96, 192, 1024), (3, 7, 3)),
    1: ((116, 232, 464, 1024), (3, 7, 3)),
    1.5: ((176, 352, 704, 1024), (3, 7, 3)),
    2: ((224, 488, 976, 2048), (3, 7, 3)),
}


class BasicBlock(nn.Module):
    """Stride-1 unit: split channels in half, transform the second half, concat, shuffle."""

    def __init__(self, channels):
        super().__init__()
        half = channels // SHUFFLE_GROUPS
        self.conv1 = nn.Conv2d(half, half, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, half, kernel_size=3, stride=1, padding=1, groups=half, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv3 = nn.Conv2d(half, half, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(half)

    def forward_with_preact(self, x):
        half = x.shape[1] // SHUFFLE_GROUPS
        kept, transformed = x[:, :half], x[:, half:]
        branch = F.relu(self.bn1(self.conv1(transformed)))
        branch = self.bn2(self.conv2(branch))
        branch_preact = self.bn3(self.conv3(branch))
        out = torch.cat([kept, F.relu(branch_preact)], 1)
        preact = torch.cat([kept, branch_preact], 1)
        return channel_shuffle(out, SHUFFLE_GROUPS), preact

    def forward(self, x):
        return self.forward_with_preact(x)[0]


class DownBlock(nn.Module):
    """Stride-2 unit: two branches on the full input, each producing half the output channels."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        mid = out_channels // 2
        # left branch: depthwise 3x3 (stride 2) - 1x1
        self.conv1 = nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=2, padding=1,
                               groups=in_channels, bias=False)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv2 = nn.Conv2d(in_channels, mid, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        # right branch: 1x1 - depthwise 3x3 (stride 2) - 1x1
        self.conv3 = nn.Conv2d(in_channels, mid, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv4 = nn.Conv2d(mid, mid, kernel_size=3, stride=2, padding=1, groups=mid, bias=False)
        self.bn4 = nn.BatchNorm2d(mid)
        self.conv5 = nn.Conv2d(mid, mid, kernel_size=1, bias=False)
        self.bn5 = nn.BatchNorm2d(mid)

    def forward(self, x):
        left = F.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        right = F.relu(self.bn3(self.conv3(x)))
        right = F.relu(self.bn5(self.conv5(self.bn4(self.conv4(right)))))
        return channel_shuffle(torch.cat([left, right], 1), SHUFFLE_GROUPS)


class ShuffleNetV2(nn.Module):
    def __init__(self, net_size=1, num_classes=100):
        super().__init__()
        if net_size not in CONFIGS:
            raise ValueError(f"ShuffleNetV2 net_size must be one of {sorted(CONFIGS)}, got {net_size}")
        out_channels, num_blocks = CONFIGS[net_size]
        self.conv1 = nn.Conv2d(3, STEM_CHANNELS, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM_CHANNELS)
        self.in_channels = STEM_CHANNELS
        self.layer1 = self._make_stage(out_channels[0], num_blocks[0])
        self.layer2 = self._make_stage(out_channels[1], num_blocks[1])
        self.layer3 = self._make_stage(out_channels[2], num_blocks[2])
        self.conv2 = nn.Conv2d(out_channels[2], out_channels[3], kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels[3])
        self.linear = nn.Linear(out_channels[3], num_classes)

    def _make_stage(self, out_channels, num_blocks):
        units = [DownBlock(self.in_channels, out_channels)]
        units += [BasicBlock(out_channels) for _ in range(num_blocks)]
        self.in_channels = out_channels
        return nn.Sequential(*units)

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.bn1, self.layer1, self.layer2, self.layer3])

    def get_bn_before_relu(self):
        raise NotImplementedError("ShuffleV2 has no BN-before-ReLU list (the reference does not "
                                  "support it as an 'Overhaul'/AB teacher); pick another teacher")

    def forward(self, x, is_feat=False, preact=False):
        f0 = F.relu(self.bn1(self.conv1(x)))
        f1, f1_pre = run_stage(self.layer1, f0)
        f2, f2_pre = run_stage(self.layer2, f1)
        f3, f3_pre = run_stage(self.layer3, f2)
        out = F.relu(self.bn2(self.conv2(f3)))
        f4 = F.avg_pool2d(out, FINAL_POOL).flatten(1)
        logits = self.linear(f4)
        if not is_feat:
            return logits
        if preact:
            return [f0, f1_pre, f2_pre, f3_pre, f4], logits
        return [f0, f1, f2, f3, f4], logits


def ShuffleV2(num_classes=100):
    return ShuffleNetV2(net_size=1, num_classes=num_classes)
