"""ImageNet ResNet-18/34/50 with torchvision's state_dict layout and numerics, and this zoo's feature API.

Names as in the PACKD authors' `code/models/resnet_imagenet.py` (`resnet18_imagenet`, ...).
The modules, their registration order, initialisation and arithmetic are torchvision's
(`torchvision.models.resnet18/34/50`, Bottleneck with the stride on its 3x3 conv, "v1.5";
zero-init of the last BN gamma off by default), so

    model.load_state_dict(torchvision.models.resnet34().state_dict())   # strict

works and gives the same logits, and the same seed gives the same initial weights.

Features for distillation (`model(x, is_feat=True, preact=False)` -> (feats, logits)):
f0 = stem output conv1-bn1-relu *before* the max-pool (stride 2: 112x112 at 224 px),
f1..f4 = outputs of layer1..layer4 (strides 4, 8, 16, 32: 56, 28, 14, 7 at 224 px),
f5 = pooled, flattened embedding fed to `fc` (512 or 2048). With `preact=True`, f1..f4 are
the last block of each stage before its final ReLU (f0 and f5 unchanged), as the CIFAR zoo.
The authors' file returns [layer1, layer2, layer3, pooled] without preact; here the list
follows this repo's CIFAR ResNet50 ([stem, 4 stages, pooled]) so feats[-1] is the same
embedding and methods that take feats[1:-1] see all four stages.

Pretrained weights are never downloaded: `load_torchvision_weights(model, path=None)` reads
a torchvision checkpoint file you provide or one already in torch.hub's cache.
"""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from .util import init_kaiming_fan_out, run_stage

# Older torchvision file names of the same IMAGENET1K_V1 weights (mdistiller/CRD-era URLs),
# also accepted when looking in torch.hub's cache.
LEGACY_FILE_NAMES = {
    "resnet18": "resnet18-5c106cde.pth",
    "resnet34": "resnet34-333f7ec4.pth",
    "resnet50": "resnet50-19c8e357.pth",
}


def conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class _Block(nn.Module):
    """A residual block: `residual(x)` is the branch up to its last BN; the shortcut is
    `downsample(x)` when there is one (1x1 conv + BN), else `x`."""

    def forward_with_preact(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        preact = self.residual(x) + shortcut
        return F.relu(preact), preact

    def forward(self, x):  # torchvision's arithmetic, in place
        out = self.residual(x)
        out += x if self.downsample is None else self.downsample(x)
        return F.relu(out, inplace=True)


class BasicBlock(_Block):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample  # registered last, as torchvision (same modules() order)

    def residual(self, x):
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return self.bn2(self.conv2(out))


class Bottleneck(_Block):
    """1x1 - 3x3 (stride here, "ResNet v1.5") - 1x1 with 4x expansion, as torchvision."""

    expansion = 4

    def __init__(self, in_planes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv1x1(in_planes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.downsample = downsample

    def residual(self, x):
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = F.relu(self.bn2(self.conv2(out)), inplace=True)
        return self.bn3(self.conv3(out))


# (block, blocks per stage) -> torchvision's model name, which names its weights
TORCHVISION_ARCHS = {
    (BasicBlock, (2, 2, 2, 2)): "resnet18",
    (BasicBlock, (3, 4, 6, 3)): "resnet34",
    (Bottleneck, (3, 4, 6, 3)): "resnet50",
}


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes=1000, zero_init_residual=False):
        super().__init__()
        self.torchvision_arch = TORCHVISION_ARCHS.get((block, tuple(layers)))
        self.in_planes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_stage(block, 64, layers[0], stride=1)
        self.layer2 = self._make_stage(block, 128, layers[1], stride=2)
        self.layer3 = self._make_stage(block, 256, layers[2], stride=2)
        self.layer4 = self._make_stage(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * block.expansion, num_classes)  # PyTorch's default Linear init, as torchvision
        init_kaiming_fan_out(self)
        if zero_init_residual:  # each residual branch starts at zero (Goyal et al. 2017)
            for bn in self._last_bns():
                nn.init.zeros_(bn.weight)

    def _make_stage(self, block, planes, num_blocks, stride):
        out_planes = planes * block.expansion
        downsample = None
        if stride != 1 or self.in_planes != out_planes:
            downsample = nn.Sequential(conv1x1(self.in_planes, out_planes, stride), nn.BatchNorm2d(out_planes))
        blocks = [block(self.in_planes, planes, stride, downsample)]
        self.in_planes = out_planes
        blocks += [block(self.in_planes, planes) for _ in range(1, num_blocks)]
        return nn.Sequential(*blocks)

    def _last_bns(self):
        """The BN closing the residual branch of every block (bn2 or bn3)."""
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for blk in stage:
                yield blk.bn3 if isinstance(blk, Bottleneck) else blk.bn2

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.bn1, self.relu, self.maxpool,
                              self.layer1, self.layer2, self.layer3, self.layer4])

    def get_bn_before_relu(self):
        """The BN whose output (plus the shortcut) is each of the pre-activations f1..f4."""
        last = [stage[-1] for stage in (self.layer1, self.layer2, self.layer3, self.layer4)]
        return [blk.bn3 if isinstance(blk, Bottleneck) else blk.bn2 for blk in last]

    def forward(self, x, is_feat=False, preact=False):
        f0 = self.relu(self.bn1(self.conv1(x)))
        if not is_feat:  # torchvision's path (in-place residual adds, no pre-activations kept)
            out = self.layer4(self.layer3(self.layer2(self.layer1(self.maxpool(f0)))))
            return self.fc(self.avgpool(out).flatten(1))
        f1, f1_pre = run_stage(self.layer1, self.maxpool(f0))
        f2, f2_pre = run_stage(self.layer2, f1)
        f3, f3_pre = run_stage(self.layer3, f2)
        f4, f4_pre = run_stage(self.layer4, f3)
        f5 = self.avgpool(f4).flatten(1)
        logits = self.fc(f5)
        if preact:
            return [f0, f1_pre, f2_pre, f3_pre, f4_pre, f5], logits
        return [f0, f1, f2, f3, f4, f5], logits


def resnet18_imagenet(num_classes=1000, zero_init_residual=False):
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, zero_init_residual)


def resnet34_imagenet(num_classes=1000, zero_init_residual=False):
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, zero_init_residual)


def resnet50_imagenet(num_classes=1000, zero_init_residual=False):
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, zero_init_residual)


def torchvision_weights_url(arch, weights="IMAGENET1K_V1"):
    """URL of torchvision's `weights` (e.g. "IMAGENET1K_V1", "IMAGENET1K_V2") for `arch` ("resnet34")."""
    from torchvision.models import get_model_weights

    from util.errors import UsageError

    enum = get_model_weights(arch)
    try:
        return enum[weights].url
    except KeyError:
        raise UsageError(f"unknown torchvision weights {weights!r} for {arch}; "
                         f"valid: {', '.join(w.name for w in enum)}") from None


def load_torchvision_weights(model, path=None, weights="IMAGENET1K_V1"):
    """Load torchvision's pretrained ImageNet weights into `model` (strict); never downloads.

    `path`: a checkpoint file, a bare state_dict as torchvision publishes (e.g.
    resnet34-b627a593.pth, or the older resnet34-333f7ec4.pth without BN's
    num_batches_tracked); {'model': ...} and {'state_dict': ...} wrappers are accepted
    too. Without `path`, the file torchvision itself would cache, `torch.hub.get_dir()/checkpoints/<name from the weights' URL>`
    (or the older file name for IMAGENET1K_V1). Raises `util.errors.UsageError` (one line)
    when the file is missing or does not fit. Returns `model`.
    """
    from util.errors import UsageError

    arch = getattr(model, "torchvision_arch", None)
    if arch is None:
        raise UsageError(f"{type(model).__name__} has no torchvision weights; "
                         f"use resnet18_imagenet, resnet34_imagenet or resnet50_imagenet")
    if path is None:
        url = torchvision_weights_url(arch, weights)
        folder = os.path.join(torch.hub.get_dir(), "checkpoints")
        names = [os.path.basename(url)] + ([LEGACY_FILE_NAMES[arch]] if weights == "IMAGENET1K_V1" else [])
        found = [os.path.join(folder, n) for n in names if os.path.isfile(os.path.join(folder, n))]
        if not found:
            raise UsageError(f"no pretrained {arch} weights: this code never downloads; "
                             f"put {url} at {os.path.join(folder, names[0])} or pass its path")
        path = found[0]
    elif not os.path.isfile(path):
        raise UsageError(f"pretrained {arch} weights not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # not a torch file, truncated, pickled objects, ...
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UsageError(f"cannot read pretrained {arch} weights {path}: {first_line}") from None
    if isinstance(state, dict) and isinstance(state.get("model", state.get("state_dict")), dict):
        state = state.get("model", state.get("state_dict"))
    problem = _state_dict_mismatch(model, state)
    if problem:
        raise UsageError(f"{path} does not fit {arch} with {model.fc.out_features} classes: {problem}")
    model.load_state_dict(state, strict=True)
    return model


def _state_dict_mismatch(model, state):
    """One line naming what keeps `state` from loading strictly into `model`, or '' when it fits."""
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        return "not a state_dict of tensors"
    want = model.state_dict()
    # BN's num_batches_tracked is absent from the older torchvision files; load_state_dict fills it in
    missing = [k for k in want if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in want]
    shapes = [f"{k} {list(state[k].shape)} vs {list(v.shape)}"
              for k, v in want.items() if k in state and state[k].shape != v.shape]
    parts = []
    for what, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            parts.append(f"{len(items)} {what} (e.g. {items[0]})")
    return "; ".join(parts)
