"""CIFAR model zoo with RepDistiller's names, state_dict keys and feature API, plus ImageNet models.

`model_dict`: the 22 CIFAR-100 networks (32x32 inputs, RepDistiller's names), what the CIFAR
scripts and the teacher lookup accept. `imagenet_model_dict`: the 224 px ImageNet networks
(`resnet18_imagenet`, `resnet34_imagenet`, `resnet50_imagenet` with torchvision's state_dict
layout, `MobileNetV1`), kept apart so nothing CIFAR-only picks them up. `build_model(name)`
looks in both.

Every model: `model(x)` -> logits; `model(x, is_feat=True, preact=False)` ->
(features, logits), the last feature being the pooled embedding fed to the
classifier; `get_feat_modules()` and `get_bn_before_relu()` as in the reference.
"""
from .mobilenetv1 import mobilenetv1_imagenet
from .mobilenetv2 import mobile_half
from .resnet import resnet8, resnet8x4, resnet14, resnet20, resnet32, resnet32x4, resnet44, resnet56, resnet110
from .resnet_imagenet import resnet18_imagenet, resnet34_imagenet, resnet50_imagenet
from .resnetv2 import ResNet50
from .ShuffleNetv1 import ShuffleV1
from .ShuffleNetv2 import ShuffleV2
from .vgg import vgg8, vgg11, vgg13, vgg16, vgg19
from .wrn import wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2

model_dict = {
    "resnet8": resnet8,
    "resnet14": resnet14,
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet44": resnet44,
    "resnet56": resnet56,
    "resnet110": resnet110,
    "resnet8x4": resnet8x4,
    "resnet32x4": resnet32x4,
    "ResNet50": ResNet50,
    "wrn_16_1": wrn_16_1,
    "wrn_16_2": wrn_16_2,
    "wrn_40_1": wrn_40_1,
    "wrn_40_2": wrn_40_2,
    "vgg8": vgg8,
    "vgg11": vgg11,
    "vgg13": vgg13,
    "vgg16": vgg16,
    "vgg19": vgg19,
    "MobileNetV2": mobile_half,
    "ShuffleV1": ShuffleV1,
    "ShuffleV2": ShuffleV2,
}

# ImageNet (1000 classes, 224 px); not in `model_dict`, which the CIFAR code iterates and validates against.
imagenet_model_dict = {
    "resnet18_imagenet": resnet18_imagenet,
    "resnet34_imagenet": resnet34_imagenet,
    "resnet50_imagenet": resnet50_imagenet,
    "MobileNetV1": mobilenetv1_imagenet,
}


def build_model(name, num_classes=None):
    """Instantiate the model registered as `name` in `model_dict` or `imagenet_model_dict`;
    `num_classes` defaults to 100 for a CIFAR model and 1000 for an ImageNet one."""
    if name in model_dict:
        return model_dict[name](num_classes=100 if num_classes is None else num_classes)
    if name in imagenet_model_dict:
        return imagenet_model_dict[name](num_classes=1000 if num_classes is None else num_classes)
    raise ValueError(f"unknown model {name!r}; valid names: {', '.join([*model_dict, *imagenet_model_dict])}")


__all__ = ["model_dict", "imagenet_model_dict", "build_model"]
