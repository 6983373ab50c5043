"""ImageNet MobileNetV1 (width 1.0, 224 px, 1024-d pooled feature), as in mdistiller/CRD's ImageNet code.

The student of the standard ImageNet ResNet-50 -> MobileNetV1 pair. The layout is the one
those ImageNet KD codes use (and whose checkpoints therefore load): `model` = an
`nn.Sequential` of a stride-2 3x3 conv-BN-ReLU stem (index 0) and 13 depthwise-separable
blocks (indices 1..13: 3x3 depthwise conv, BN, ReLU, 1x1 conv, BN, ReLU), then `fc`. State
dict keys: `model.0.0.weight`, `model.0.1.*`, `model.<i>.0.weight` (depthwise),
`model.<i>.1.*`, `model.<i>.3.weight` (pointwise), `model.<i>.4.*`, `fc.*`; 4,231,976
parameters with 1000 classes. PyTorch's default initialisation, as the reference.
The reference pools with `AvgPool2d(7)` (224 px only); `AdaptiveAvgPool2d(1)` is the same
average there and also accepts other sizes.

Features (`model(x, is_feat=True, preact=False)` -> (feats, logits)): f0 = stem output
(32 x 112 x 112 at 224 px), f1..f4 = outputs of blocks 3, 5, 11, 13 (the last block of each
resolution: 128 x 56, 256 x 28, 512 x 14, 1024 x 7, the reference's four features), f5 = the
pooled 1024-d embedding. Resolutions pair with the ImageNet ResNets' f0..f5. With
`preact=True`, f1..f4 are taken before those blocks' final ReLU (f0, f5 unchanged).
"""
import torch.nn as nn
import torch.nn.functional as F

STEM_CHANNELS = 32
# (output channels, stride) of the 13 depthwise-separable blocks
BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
          (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]
FEATURE_BLOCKS = (3, 5, 11, 13)  # indices in `model` whose outputs are f1..f4
FEATURE_DIM = 1024


def conv_bn(in_channels, out_channels, stride):
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def conv_dw(in_channels, out_channels, stride):
    """3x3 depthwise conv-BN-ReLU, then 1x1 pointwise conv-BN-ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False),
        nn.BatchNorm2d(in_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class MobileNetV1(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        layers = [conv_bn(3, STEM_CHANNELS, 2)]
        in_channels = STEM_CHANNELS
        for out_channels, stride in BLOCKS:
            layers.append(conv_dw(in_channels, out_channels, stride))
            in_channels = out_channels
        self.model = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(FEATURE_DIM, num_classes)

    def get_feat_modules(self):
        return nn.ModuleList([self.model])

    def get_bn_before_relu(self):
        return [self.model[i][4] for i in FEATURE_BLOCKS]

    def forward(self, x, is_feat=False, preact=False):
        if not is_feat:
            return self.fc(self.avgpool(self.model(x)).flatten(1))
        out = f0 = self.model[0](x)
        feats, preacts, start = [f0], [f0], 1
        for end in FEATURE_BLOCKS:
            out = self.model[start:end](out)
            pre = self.model[end][:-1](out)  # up to the pointwise BN, before the final ReLU
            out = F.relu(pre)
            feats.append(out)
            preacts.append(pre)
            start = end + 1
        pooled = self.avgpool(out).flatten(1)
        logits = self.fc(pooled)
        return (preacts if preact else feats) + [pooled], logits


def mobilenetv1_imagenet(num_classes=1000):
    return MobileNetV1(num_classes)
