"""ImageNet models: torchvision equivalence of the ResNets, the feature API, MobileNetV1, weight loading.

Numerics are checked against torchvision's own models on small (64 px) inputs; the 224 px
feature shapes are checked on the meta device (shapes only, no arithmetic).
"""
import functools
import os

import pytest
import torch
import torch.nn as nn
import torchvision

import models
from models import build_model, imagenet_model_dict, model_dict
from models.mobilenetv1 import MobileNetV1, mobilenetv1_imagenet
from models.resnet_imagenet import load_torchvision_weights, resnet18_imagenet
from util.errors import UsageError

RESNETS = ["resnet18", "resnet34", "resnet50"]
IMAGENET_NAMES = ["resnet18_imagenet", "resnet34_imagenet", "resnet50_imagenet", "MobileNetV1"]
# per name: (f0..f4 channels, pooled dim)
CHANNELS = {
    "resnet18_imagenet": ([64, 64, 128, 256, 512], 512),
    "resnet34_imagenet": ([64, 64, 128, 256, 512], 512),
    "resnet50_imagenet": ([64, 256, 512, 1024, 2048], 2048),
    "MobileNetV1": ([32, 128, 256, 512, 1024], 1024),
}
STRIDES = [2, 4, 8, 16, 32]  # of f0..f4: pairs teacher and student features by resolution


def randomize_bn(model, seed):
    """Non-trivial BN affine parameters and running statistics, so eval mode really tests them."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.weight.data.copy_(1 + 0.2 * torch.randn(n, generator=g))
            m.bias.data.copy_(0.2 * torch.randn(n, generator=g))
            m.running_mean.copy_(0.2 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
    return model


@functools.lru_cache(maxsize=None)
def torchvision_pair(arch):
    """(torchvision model, ours) built from the same seed; ours then gets torchvision's state_dict."""
    torch.manual_seed(0)
    reference = getattr(torchvision.models, arch)(weights=None)
    torch.manual_seed(0)
    ours = imagenet_model_dict[f"{arch}_imagenet"]()
    same_init = {k: torch.equal(v, reference.state_dict()[k]) for k, v in ours.state_dict().items()}
    randomize_bn(reference, seed=1)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours, same_init


@pytest.mark.parametrize("arch", RESNETS)
@pytest.mark.slow
def test_resnet_matches_torchvision(arch):
    reference, ours, same_init = torchvision_pair(arch)
    assert list(ours.state_dict()) == list(reference.state_dict()), "state_dict keys and order must be torchvision's"
    assert all(same_init.values()), "the same seed must give torchvision's initial weights"
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    reference.eval(), ours.eval()
    taps = {}
    hooks = [getattr(reference, name).register_forward_hook(lambda m, i, o, name=name: taps.__setitem__(name, o))
             for name in ("relu", "layer1", "layer2", "layer3", "layer4", "avgpool")]
    try:
        with torch.no_grad():
            want = reference(x)
            feats, logits = ours(x, is_feat=True)
            _, preact_logits = ours(x, is_feat=True, preact=True)
            plain = ours(x)
    finally:
        for h in hooks:
            h.remove()
    assert torch.equal(plain, want) and torch.equal(logits, want) and torch.equal(preact_logits, want)
    tapped = [taps["relu"], taps["layer1"], taps["layer2"], taps["layer3"], taps["layer4"], taps["avgpool"].flatten(1)]
    for i, (got, ref) in enumerate(zip(feats, tapped, strict=True)):
        assert torch.equal(got, ref), f"{arch} f{i}"
    # train mode (batch statistics) too
    reference.train(), ours.train()
    with torch.no_grad():
        assert torch.equal(ours(x), reference(x))
        assert torch.equal(ours(x, is_feat=True, preact=True)[1], reference(x))


def test_torchvision_state_dict_loads_strict_into_each_constructor():
    for arch in RESNETS:
        with torch.device("meta"):
            ours = imagenet_model_dict[f"{arch}_imagenet"]()
            theirs = getattr(torchvision.models, arch)(weights=None).state_dict()
        ours.load_state_dict(theirs, strict=True, assign=True)


def test_zero_init_residual_is_off_by_default_and_available():
    assert all((m.weight == 1).all() for m in resnet18_imagenet().modules() if isinstance(m, nn.BatchNorm2d))
    model = resnet18_imagenet(zero_init_residual=True)
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        assert all((blk.bn2.weight == 0).all() and (blk.bn1.weight == 1).all() for blk in stage)


@pytest.mark.parametrize("size", [224, 64])
@pytest.mark.parametrize("name", IMAGENET_NAMES)
def test_feature_shapes(name, size):
    with torch.device("meta"):
        model = imagenet_model_dict[name](num_classes=1000).eval()
        x = torch.empty(2, 3, size, size)
        logits = model(x)
        feats, feat_logits = model(x, is_feat=True)
        preact_feats, _ = model(x, is_feat=True, preact=True)
    channels, dim = CHANNELS[name]
    want = [(2, c, size // s, size // s) for c, s in zip(channels, STRIDES)] + [(2, dim)]
    assert [tuple(f.shape) for f in feats] == want
    assert [tuple(f.shape) for f in preact_feats] == want
    assert tuple(logits.shape) == tuple(feat_logits.shape) == (2, 1000)
    assert dim == model.fc.in_features


@functools.lru_cache(maxsize=None)
def small_model(name):
    torch.manual_seed(0)
    return randomize_bn(imagenet_model_dict[name](num_classes=10), seed=3).eval()


@pytest.mark.parametrize("name", ["resnet18_imagenet", "MobileNetV1"])
def test_preact_features_and_bn_before_relu(name):
    """preact f1..f4 are the stages' pre-ReLU outputs (relu(preact) == feature), and
    get_bn_before_relu() are the BNs producing them (plus the identity shortcut for ResNets)."""
    model = small_model(name)
    bns = model.get_bn_before_relu()
    owned = {id(m) for m in model.modules()}
    assert len(bns) == 4 and all(isinstance(bn, nn.BatchNorm2d) and id(bn) in owned for bn in bns)
    outputs, inputs = {}, {}
    hooks = [bn.register_forward_hook(lambda m, i, o, k=k: outputs.__setitem__(k, o)) for k, bn in enumerate(bns)]
    if name != "MobileNetV1":  # the last block's shortcut is its input: the block before's output
        stages = [model.layer1, model.layer2, model.layer3, model.layer4]
        assert all(stage[-1].downsample is None for stage in stages)
        hooks += [stage[-2].register_forward_hook(lambda m, i, o, k=k: inputs.__setitem__(k, o))
                  for k, stage in enumerate(stages)]
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    try:
        with torch.no_grad():
            feats, logits = model(x, is_feat=True)
            preacts, preact_logits = model(x, is_feat=True, preact=True)
    finally:
        for h in hooks:
            h.remove()
    assert torch.equal(logits, preact_logits) and torch.equal(logits, model(x))
    assert torch.equal(feats[0], preacts[0]) and torch.equal(feats[-1], preacts[-1])
    for k in range(4):
        pre = preacts[k + 1]
        assert (pre < 0).any(), "a pre-activation has negative entries"
        assert torch.equal(torch.relu(pre), feats[k + 1])
        assert torch.equal(pre, outputs[k] + inputs[k] if inputs else outputs[k])


@pytest.mark.parametrize("name", IMAGENET_NAMES)
def test_feat_modules_cover_everything_but_the_classifier(name):
    with torch.device("meta"):
        model = imagenet_model_dict[name]()
    feat_params = {id(p) for p in model.get_feat_modules().parameters()}
    rest = {id(p) for n, p in model.named_parameters() if not n.startswith("fc.")}
    assert feat_params == rest


@pytest.mark.parametrize("name", ["resnet18_imagenet", "MobileNetV1"])
@pytest.mark.slow
def test_train_mode_backward_with_preact_features(name):
    """In-place ops must not break autograd when every feature (preact included) feeds the loss."""
    torch.manual_seed(0)
    model = imagenet_model_dict[name](num_classes=10).train()
    x = torch.randn(2, 3, 32, 32)
    feats, logits = model(x, is_feat=True, preact=True)
    loss = logits.square().mean() + sum(f.square().mean() for f in feats) + model(x).square().mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_mobilenetv1_layout_and_parameter_count():
    model = mobilenetv1_imagenet()
    count = sum(p.numel() for p in model.parameters())
    assert count == 4_231_976  # the published "4.2 M" of MobileNet 1.0-224
    keys = list(model.state_dict())
    assert keys[:2] == ["model.0.0.weight", "model.0.1.weight"] and keys[-2:] == ["fc.weight", "fc.bias"]
    assert "model.13.0.weight" in keys and "model.13.3.weight" in keys and "model.13.4.running_var" in keys
    assert model.model[1][0].groups == 32 and model.model[13][3].out_channels == 1024
    assert MobileNetV1 is type(imagenet_model_dict["MobileNetV1"]())


def test_mobilenetv1_forward_is_the_plain_stack():
    model = small_model("MobileNetV1")
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        pooled = model.model(x).mean(dim=(2, 3))
        feats, logits = model(x, is_feat=True)
    torch.testing.assert_close(feats[-1], pooled, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(logits, model.fc(pooled), rtol=1e-6, atol=1e-6)


# --- registry ---------------------------------------------------------------------------------

def test_imagenet_models_are_registered_apart_from_the_cifar_zoo():
    assert list(imagenet_model_dict) == IMAGENET_NAMES
    assert len(model_dict) == 22 and not set(model_dict) & set(imagenet_model_dict)
    assert "imagenet_model_dict" in models.__all__


def test_build_model_finds_both_families_with_their_class_counts():
    with torch.device("meta"):
        assert build_model("MobileNetV1").fc.out_features == 1000
        assert build_model("resnet18_imagenet", num_classes=10).fc.out_features == 10
        assert build_model("resnet8").fc.out_features == 100
    with pytest.raises(ValueError, match="unknown model") as info:
        build_model("resnet101_imagenet")
    assert all(name in str(info.value) for name in IMAGENET_NAMES + ["resnet8", "ShuffleV2"])


# --- pretrained weights ----------------------------------------------------------------------

def torchvision_file_name(arch):
    return os.path.basename(torchvision.models.get_model_weights(arch)["IMAGENET1K_V1"].url)


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty torch.hub directory standing in for ~/.cache/torch/hub."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    return tmp_path / "hub"


@pytest.fixture(scope="module")
def resnet18_state():
    torch.manual_seed(7)
    return randomize_bn(torchvision.models.resnet18(weights=None), seed=8).state_dict()


def assert_loaded(model, state):
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_load_weights_from_a_given_file(tmp_path, resnet18_state, hub_dir):
    path = tmp_path / "resnet18-5c106cde.pth"
    torch.save(resnet18_state, path)
    model = resnet18_imagenet()
    assert load_torchvision_weights(model, str(path)) is model
    assert_loaded(model, resnet18_state)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"model": resnet18_state, "epoch": 3}, wrapped)
    assert_loaded(load_torchvision_weights(resnet18_imagenet(), wrapped), resnet18_state)
    # the older torchvision files predate BN's num_batches_tracked
    legacy = tmp_path / "legacy.pth"
    torch.save({k: v for k, v in resnet18_state.items() if not k.endswith("num_batches_tracked")}, legacy)
    assert_loaded(load_torchvision_weights(resnet18_imagenet(), legacy), resnet18_state)


@pytest.mark.parametrize("file_name", ["torchvision", "resnet18-5c106cde.pth"])
def test_load_weights_from_torch_hub_cache(hub_dir, resnet18_state, file_name):
    if file_name == "torchvision":
        file_name = torchvision_file_name("resnet18")
    torch.save(resnet18_state, hub_dir / "checkpoints" / file_name)
    assert_loaded(load_torchvision_weights(resnet18_imagenet()), resnet18_state)


def one_line_usage_error(call):
    with pytest.raises(UsageError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_weights_say_where_to_put_them(hub_dir):
    message = one_line_usage_error(lambda: load_torchvision_weights(resnet18_imagenet()))
    name = torchvision_file_name("resnet18")
    assert str(hub_dir / "checkpoints" / name) in message and "download.pytorch.org" in message
    assert "never downloads" in message
    message = one_line_usage_error(lambda: load_torchvision_weights(resnet18_imagenet(), "/nonexistent/r18.pth"))
    assert "/nonexistent/r18.pth" in message


def test_weights_that_do_not_fit_are_a_usage_error(tmp_path, hub_dir, resnet18_state):
    path = tmp_path / "r18.pth"
    torch.save(resnet18_state, path)
    with torch.device("meta"):
        resnet34 = imagenet_model_dict["resnet34_imagenet"]()
    message = one_line_usage_error(lambda: load_torchvision_weights(resnet34, path))
    assert "does not fit resnet34" in message and "missing keys" in message
    message = one_line_usage_error(lambda: load_torchvision_weights(resnet18_imagenet(num_classes=10), path))
    assert "fc.weight [1000, 512] vs [10, 512]" in message
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    assert "cannot read" in one_line_usage_error(lambda: load_torchvision_weights(resnet18_imagenet(), junk))
    assert "no torchvision weights" in one_line_usage_error(lambda: load_torchvision_weights(mobilenetv1_imagenet()))
    assert "valid: IMAGENET1K_V1" in one_line_usage_error(
        lambda: load_torchvision_weights(resnet18_imagenet(), weights="IMAGENET1K_V9"))
