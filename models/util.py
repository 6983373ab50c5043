"""Pieces shared by the CIFAR model zoo."""
import math

import torch.nn as nn


def run_stage(stage, x):
    """Run a `nn.Sequential` of blocks and also return the last block's pre-activation.

    Every block here has `forward(x) -> out`; the last block of a stage also offers
    `forward_with_preact(x) -> (out, preact)`, which `is_feat=True, preact=True`
    (AB distillation) needs: the block output before its final ReLU.
    """
    for block in stage[:-1]:
        x = block(x)
    return stage[-1].forward_with_preact(x)


def channel_shuffle(x, groups):
    """[N, g*c, H, W] -> interleave the g groups channel-wise (ShuffleNet)."""
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def init_conv_bn_linear(model, linear_std=None):
    """Initialisation used by the WRN / VGG / MobileNetV2 reference code.

    Conv weights ~ N(0, sqrt(2 / (k*k*out_channels))), conv biases 0; BatchNorm
    gamma 1, beta 0; Linear bias 0 and, when `linear_std` is given, Linear
    weights ~ N(0, linear_std) (otherwise PyTorch's default Linear init is kept).
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            if linear_std is not None:
                nn.init.normal_(m.weight, 0.0, linear_std)
            nn.init.zeros_(m.bias)


def init_kaiming_fan_out(model):
    """Initialisation used by the ResNet reference code: Kaiming-normal (fan_out) convs, BN 1/0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
