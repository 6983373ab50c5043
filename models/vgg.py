"""VGG-BN for CIFAR (no FC stack, one Linear classifier), as in RepDistiller's `vggN_bn`.

Each of the five blocks is conv-BN-ReLU repeated, minus the last ReLU, so the
block output is its pre-activation. Features: f0 = block0 output after ReLU,
f1..f4 = block outputs after ReLU (before ReLU with `preact=True`), f5 = pooled
embedding. For 32x32 inputs the fourth max-pool is skipped (block3 and block4
both run at 4x4), as in the reference.
"""
import torch.nn as nn
import torch.nn.functional as F

from .util import init_conv_bn_linear

LINEAR_INIT_STD = 0.01  # the reference draws classifier weights from N(0, 0.01)
POOL3_INPUT_SIZE = 64  # the reference applies pool3 only for 64x64 inputs

CONFIGS = {
    "S": [[64], [128], [256], [512], [512]],
    "A": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "B": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "D": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    "E": [[64, 64], [128, 128], [256, 256, 256, 256], [512, 512, 512, 512], [512, 512, 512, 512]],
}


def make_block(widths, in_channels):
    """conv3x3(bias)-BN-ReLU per width, with the final ReLU dropped."""
    layers = []
    for width in widths:
        layers += [nn.Conv2d(in_channels, width, kernel_size=3, padding=1),
                   nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        in_channels = width
    return nn.Sequential(*layers[:-1])


class VGG(nn.Module):
    def __init__(self, cfg, num_classes=100):
        super().__init__()
        in_channels = [3] + [widths[-1] for widths in cfg[:-1]]
        self.block0 = make_block(cfg[0], in_channels[0])
        self.block1 = make_block(cfg[1], in_channels[1])
        self.block2 = make_block(cfg[2], in_channels[2])
        self.block3 = make_block(cfg[3], in_channels[3])
        self.block4 = make_block(cfg[4], in_channels[4])
        self.pool0 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.pool1 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.pool2 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.pool3 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.pool4 = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cfg[4][-1], num_classes)
        init_conv_bn_linear(self, linear_std=LINEAR_INIT_STD)

    def get_feat_modules(self):
        return nn.ModuleList([self.block0, self.pool0, self.block1, self.pool1, self.block2,
                              self.pool2, self.block3, self.pool3, self.block4, self.pool4])

    def get_bn_before_relu(self):
        return [self.block1[-1], self.block2[-1], self.block3[-1], self.block4[-1]]

    def forward(self, x, is_feat=False, preact=False):
        input_size = x.shape[2]
        f0 = F.relu(self.block0(x))
        f1_pre = self.block1(self.pool0(f0))
        f1 = F.relu(f1_pre)
        f2_pre = self.block2(self.pool1(f1))
        f2 = F.relu(f2_pre)
        f3_pre = self.block3(self.pool2(f2))
        f3 = F.relu(f3_pre)
        out = self.pool3(f3) if input_size == POOL3_INPUT_SIZE else f3
        f4_pre = self.block4(out)
        f4 = F.relu(f4_pre)
        f5 = self.pool4(f4).flatten(1)
        logits = self.classifier(f5)
        if not is_feat:
            return logits
        if preact:
            return [f0, f1_pre, f2_pre, f3_pre, f4_pre, f5], logits
        return [f0, f1, f2, f3, f4, f5], logits


def vgg8(num_classes=100):
    return VGG(CONFIGS["S"], num_classes)


def vgg11(num_classes=100):
    return VGG(CONFIGS["A"], num_classes)


def vgg13(num_classes=100):
    return VGG(CONFIGS["B"], num_classes)


def vgg16(num_classes=100):
    return VGG(CONFIGS["D"], num_classes)


def vgg19(num_classes=100):
    return VGG(CONFIGS["E"], num_classes)
