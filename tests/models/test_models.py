"""The 22 CIFAR models against the reference fixtures (tests/fixtures/models.json).

Keys/shapes/dtypes must match exactly so released RepDistiller/PACKD checkpoints
load with strict=True; outputs are compared after the deterministic fill rule.
"""
import functools

import pytest
import torch
import torch.nn as nn

from models import build_model, model_dict
from tests.reference import apply_fill, assert_stats, load_fixture, sin_input

FIXTURE = load_fixture("models")
NAMES = [
    "resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
    "resnet8x4", "resnet32x4", "ResNet50", "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2",
    "vgg8", "vgg11", "vgg13", "vgg16", "vgg19", "MobileNetV2", "ShuffleV1", "ShuffleV2",
]
NO_BN_BEFORE_RELU = {"ShuffleV1", "ShuffleV2"}  # the reference raises NotImplementedError for these
NUM_CLASSES = 100


@functools.lru_cache(maxsize=None)
def reference_run(name):
    """Build `name`, record its state_dict layout, then fill it and run the fixture input once."""
    model = model_dict[name](num_classes=NUM_CLASSES)
    layout = {key: (list(t.shape), str(t.dtype).removeprefix("torch.")) for key, t in model.state_dict().items()}
    num_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    apply_fill(model).eval()
    x = sin_input((2, 3, 32, 32))
    with torch.no_grad():
        plain_logits = model(x)
        feats, logits = model(x, is_feat=True, preact=False)
        preact_feats, preact_logits = model(x, is_feat=True, preact=True)
    return dict(layout=layout, num_params=num_params, plain_logits=plain_logits, logits=logits,
                feats=feats, preact_feats=preact_feats, preact_logits=preact_logits)


def test_model_dict_has_exactly_the_reference_names():
    assert sorted(model_dict) == sorted(NAMES)
    assert sorted(FIXTURE) == sorted(NAMES)


def test_build_model_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown model 'resnet9'; valid names: ") as info:
        build_model("resnet9")
    assert all(name in str(info.value) for name in NAMES)


def test_build_model_passes_num_classes():
    model = build_model("resnet8", num_classes=10).eval()
    with torch.no_grad():
        assert model(sin_input((2, 3, 32, 32))).shape == (2, 10)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.slow
def test_state_dict_layout_matches_reference_and_loads_strict(name):
    run = reference_run(name)
    want = {key: (shape, dtype) for key, shape, dtype in FIXTURE[name]["state_dict"]}
    assert run["layout"] == want
    # a released checkpoint has exactly these entries: it must load with strict=True
    checkpoint = {key: torch.zeros(shape, dtype=getattr(torch, dtype)) for key, (shape, dtype) in want.items()}
    model_dict[name](num_classes=NUM_CLASSES).load_state_dict(checkpoint, strict=True)


@pytest.mark.parametrize("name", NAMES)
def test_num_params(name):
    assert reference_run(name)["num_params"] == FIXTURE[name]["num_params"]


@pytest.mark.parametrize("name", NAMES)
def test_logits_match_reference(name):
    run = reference_run(name)
    assert_stats(run["logits"], FIXTURE[name]["logits"], what=f"{name} logits")
    assert torch.equal(run["plain_logits"], run["logits"]), "model(x) must equal the logits of is_feat=True"
    assert torch.equal(run["preact_logits"], run["logits"]), "preact must not change the logits"


@pytest.mark.parametrize("preact", [False, True], ids=["feats", "preact_feats"])
@pytest.mark.parametrize("name", NAMES)
def test_features_match_reference(name, preact):
    key = "preact_feats" if preact else "feats"
    got, want = reference_run(name)[key], FIXTURE[name][key]
    assert len(got) == len(want), f"{name} {key}: {len(got)} features, reference has {len(want)}"
    for i, (feat, ref) in enumerate(zip(got, want)):
        assert_stats(feat, ref, what=f"{name} {key}[{i}]")


@pytest.mark.parametrize("name", NAMES)
def test_feat_modules_and_bn_before_relu(name):
    model = model_dict[name](num_classes=NUM_CLASSES)
    feat_modules = model.get_feat_modules()
    assert isinstance(feat_modules, nn.ModuleList) and len(feat_modules) > 0
    owned = {id(m) for m in model.modules()}
    assert all(id(m) in owned for m in feat_modules)
    if name in NO_BN_BEFORE_RELU:
        with pytest.raises(NotImplementedError):
            model.get_bn_before_relu()
        return
    bns = model.get_bn_before_relu()
    assert len(bns) > 0 and all(isinstance(bn, nn.BatchNorm2d) and id(bn) in owned for bn in bns)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.slow
def test_train_mode_backward_with_preact_features(name):
    """In-place ops must not break autograd when every feature (preact included) feeds the loss."""
    torch.manual_seed(0)
    model = model_dict[name](num_classes=NUM_CLASSES).train()
    feats, logits = model(sin_input((2, 3, 32, 32)), is_feat=True, preact=True)
    loss = logits.square().mean() + sum(f.square().mean() for f in feats)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
