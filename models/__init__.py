"""CIFAR model zoo with RepDistiller's names, state_dict keys and feature API.

Every model: `model(x)` -> logits; `model(x, is_feat=True, preact=False)` ->
(features, logits), the last feature being the pooled embedding fed to the
classifier; `get_feat_modules()` and `get_bn_before_relu()` as in the reference.
"""
from .mobilenetv2 import mobile_half
from .resnet import resnet8, resnet8x4, resnet14, resnet20, resnet32, resnet32x4, resnet44, resnet56, resnet110
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


def build_model(name, num_classes=100):
    """Instantiate the model registered as `name` (see `model_dict`)."""
    if name not in model_dict:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(model_dict)}")
    return model_dict[name](num_classes=num_classes)


__all__ = ["model_dict", "build_model"]
