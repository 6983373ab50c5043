"""The 13 RepDistiller methods as `Distiller`s: terms, gradients, frozen parts, init stages.

Each method is built on a tiny stand-in student/teacher pair with RepDistiller's model
API (a teacher wider than the student, so regressors/connectors are real layers) and,
when `models/` is importable, on the real resnet8 student / resnet14 teacher.
"""
import argparse

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from distiller_zoo.base import Batch, Distiller
from distiller_zoo.AB import ABDistiller
from distiller_zoo.AT import AttentionDistiller
from distiller_zoo.CC import CorrelationDistiller
from distiller_zoo.FitNet import HintDistiller
from distiller_zoo.FSP import FSPDistiller
from distiller_zoo.FT import FactorDistiller
from distiller_zoo.KD import KDDistiller
from distiller_zoo.KDSVD import KDSVDDistiller
from distiller_zoo.NST import NSTDistiller
from distiller_zoo.PKT import PKTDistiller
from distiller_zoo.RKD import RKDDistiller
from distiller_zoo.SP import SimilarityDistiller
from distiller_zoo.VID import VIDDistiller

try:
    from models import model_dict
except ImportError:  # models/ not written yet: stand-ins only
    model_dict = None

METHODS = {
    "kd": KDDistiller, "hint": HintDistiller, "attention": AttentionDistiller,
    "similarity": SimilarityDistiller, "correlation": CorrelationDistiller, "vid": VIDDistiller,
    "rkd": RKDDistiller, "pkt": PKTDistiller, "abound": ABDistiller, "factor": FactorDistiller,
    "fsp": FSPDistiller, "nst": NSTDistiller, "kdsvd": KDSVDDistiller,
}

# RepDistiller's scripts/run_cifar_distill.sh: (-r, -a, -b)
EXPECTED_WEIGHTS = {
    "kd": (0.1, 0.9, 0.0), "hint": (1, 0, 100), "attention": (1, 0, 1000), "similarity": (1, 0, 3000),
    "correlation": (1, 0, 0.02), "vid": (1, 0, 1), "rkd": (1, 0, 1), "pkt": (1, 0, 30000),
    "abound": (1, 0, 1), "factor": (1, 0, 200), "fsp": (1, 0, 50), "nst": (1, 0, 50), "kdsvd": (1, 0, 1),
}

# Main-stage terms with the default weights (AB and FSP distil only in their init stage).
EXPECTED_TERMS = {name: {"cls", "kd"} for name in METHODS}
EXPECTED_TERMS.update(kd={"cls", "div"}, abound={"cls"}, fsp={"cls"})

# Extra modules the main stage trains, and those frozen after the init stage.
TRAINED_EXTRAS = {"hint": ["regressor"], "correlation": ["embed_s", "embed_t"], "vid": ["vid_losses"],
                  "factor": ["translator"]}
FROZEN_EXTRAS = {"abound": ["connector"], "factor": ["paraphraser"]}


# ---------------------------------------------------------------------------- models
SAME_WIDTH_METHODS = ("fsp", "kdsvd")


class TinyStage(nn.Module):
    """conv-bn (+ shortcut) whose output is ReLU'd; `forward_with_preact` also returns the pre-ReLU map."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward_with_preact(self, x):
        pre = self.bn(self.conv(x))
        return F.relu(pre), pre


class TinyNet(nn.Module):
    """Stand-in with RepDistiller's CIFAR model API: stem, 3 stages (32, 16, 8 px), pooled embedding."""

    def __init__(self, widths=(4, 4, 8, 16), num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.stages = nn.ModuleList(TinyStage(c_in, c_out, 1 if i == 0 else 2)
                                    for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:])))
        self.fc = nn.Linear(widths[-1], num_classes)

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.bn1, self.stages])

    def get_bn_before_relu(self):
        return [stage.bn for stage in self.stages]

    def forward(self, x, is_feat=False, preact=False):
        x = F.relu(self.bn1(self.conv1(x)))
        feats = [x]
        for stage in self.stages:
            x, pre = stage.forward_with_preact(x)
            feats.append(pre if preact else x)
        pooled = F.adaptive_avg_pool2d(x, 1).flatten(1)
        feats.append(pooled)
        logits = self.fc(pooled)
        return (feats, logits) if is_feat else logits


def make_pair(kind, method):
    """-> (student, teacher, model_s name, num_classes)."""
    torch.manual_seed(0)
    if kind == "real":
        return model_dict["resnet8"](num_classes=100), model_dict["resnet14"](num_classes=100), "resnet8", 100
    # FSP and KDSVD need equal channels: their stand-in teacher has the student's width
    teacher_widths = (4, 4, 8, 16) if method in SAME_WIDTH_METHODS else (8, 8, 16, 32)
    return TinyNet(), TinyNet(teacher_widths), "tiny", 10


def make_opt(distill, model_s, **overrides):
    opt = argparse.Namespace(
        model_s=model_s, model_t="teacher", distill=distill, gamma=None, alpha=None, beta=None, kd_T=4,
        feat_dim=16, mode="exact", nce_k=16, nce_t=0.07, nce_m=0.5, hint_layer=2, init_epochs=1,
        batch_size=4, learning_rate=0.05, momentum=0.9, weight_decay=5e-4, lr_decay_epochs=[150, 180, 210],
        lr_decay_rate=0.1, epochs=240, n_data=8, num_classes=10, seed=0, device="cpu")
    for k, v in overrides.items():
        setattr(opt, k, v)
    return opt


def make_batch(num_classes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(images=torch.randn(4, 3, 32, 32, generator=g),
                 labels=torch.randint(0, num_classes, (4,), generator=g), index=torch.arange(4))


KINDS = ["standin"] + (["real"] if model_dict is not None else [])


def build(kind, method, **opt_overrides):
    student, teacher, model_s, num_classes = make_pair(kind, method)
    opt = make_opt(method, opt_overrides.pop("model_s", model_s), **opt_overrides)
    return METHODS[method](student, teacher, opt), opt, num_classes


def params_of(modules):
    return [p for m in modules for p in m.parameters()]


# ---------------------------------------------------------------------------- tests
@pytest.mark.parametrize("method", sorted(METHODS))
def test_class_name_and_default_weights(method):
    cls = METHODS[method]
    assert issubclass(cls, Distiller) and cls.name == method
    student, teacher, model_s, _ = make_pair("standin", method)
    d = cls(student, teacher, make_opt(method, model_s))
    assert (d.gamma, d.alpha, d.beta) == pytest.approx(EXPECTED_WEIGHTS[method])
    assert cls.needs == frozenset()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", sorted(METHODS))
def test_forward_train_terms_and_gradients(method, kind):
    d, _, num_classes = build(kind, method)
    d.train()
    assert not d.teacher.training and d.student.training
    assert all(not p.requires_grad for p in d.teacher.parameters())
    for name in FROZEN_EXTRAS.get(method, []):
        module = getattr(d, name)
        assert not module.training and all(not p.requires_grad for p in module.parameters())
    teacher_state = {k: v.clone() for k, v in d.teacher.state_dict().items()}

    logits, terms = d.forward_train(make_batch(num_classes))
    assert logits.shape == (4, num_classes)
    assert set(terms) == EXPECTED_TERMS[method]
    for name, value in terms.items():
        assert value.numel() == 1 and torch.isfinite(value).all(), f"{name}: {value}"
    if "kd" in terms:  # the method's own term reaches the student's feature layers
        feat_params = list(d.student.get_feat_modules().parameters())
        grads = torch.autograd.grad(terms["kd"], feat_params, retain_graph=True, allow_unused=True)
        assert any(g is not None and g.abs().sum() > 0 for g in grads)
    sum(terms.values()).backward()
    assert all(p.grad is not None for p in d.student.parameters())
    for name in TRAINED_EXTRAS.get(method, []):
        module = getattr(d, name)
        assert module in d.extra_modules()
        for p in module.parameters():
            assert p.requires_grad and p.grad is not None, f"{name} got no gradient"
        assert all(p in set(d.trainable_parameters()) for p in module.parameters())
    for name in FROZEN_EXTRAS.get(method, []):
        assert all(p.grad is None for p in getattr(d, name).parameters())
        assert not set(getattr(d, name).parameters()) & set(d.trainable_parameters())
    assert all(p.grad is None for p in d.teacher.parameters())
    assert not set(d.teacher.parameters()) & set(d.trainable_parameters())
    for k, v in d.teacher.state_dict().items():  # BatchNorm statistics untouched
        assert torch.equal(v, teacher_state[k]), k


@pytest.mark.parametrize("method", ["kd", "attention", "abound"])
def test_alpha_adds_the_kd_divergence_term(method):
    d, _, num_classes = build("standin", method, alpha=0.5)
    _, terms = d.forward_train(make_batch(num_classes))
    assert "div" in terms and torch.isfinite(terms["div"])


def test_zero_beta_skips_the_feature_term():
    d, _, num_classes = build("standin", "hint", beta=0.0)
    _, terms = d.forward_train(make_batch(num_classes))
    assert set(terms) == {"cls"}


@pytest.mark.parametrize("method", SAME_WIDTH_METHODS)
def test_teacher_of_other_width_is_rejected(method):
    student, teacher = TinyNet(), TinyNet((8, 8, 16, 32))
    with pytest.raises(ValueError):
        METHODS[method](student, teacher, make_opt(method, "tiny"))


def test_missing_teacher_is_an_error():
    with pytest.raises(ValueError):
        AttentionDistiller(TinyNet(), None, make_opt("attention", "tiny"))


# modules whose parameters the init stage trains (names relative to the distiller)
PRETRAINED = {"abound": ["connector", "student_features"], "factor": ["paraphraser"], "fsp": ["student_features"]}


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before, module):
    return {k for k, v in module.state_dict().items() if not torch.equal(v, before[k])}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", sorted(PRETRAINED))
def test_pretrain_trains_only_its_modules(method, kind):
    d, opt, num_classes = build(kind, method)
    d.train()
    loader = [make_batch(num_classes, seed=1), make_batch(num_classes, seed=2)]
    before = snapshot(d)
    messages = []
    d.pretrain(loader, opt, torch.device("cpu"), log=messages.append)
    assert len(messages) == opt.init_epochs and all(isinstance(m, str) for m in messages)

    diff = changed(before, d)
    feat_modules = d.student.get_feat_modules()
    feat_tensors = {id(t) for t in list(feat_modules.parameters()) + list(feat_modules.buffers())}
    feat_keys = {"student." + k for k, t in d.student.state_dict(keep_vars=True).items() if id(t) in feat_tensors}
    allowed = set()
    if "student_features" in PRETRAINED[method]:
        allowed |= feat_keys
        assert feat_keys & diff, "student feature layers were not trained"
    for name in PRETRAINED[method]:
        if name != "student_features":
            allowed |= {f"{name}.{k}" for k in getattr(d, name).state_dict()}
            trainable = {f"{name}.{k}" for k, _ in getattr(d, name).named_parameters()}
            assert trainable <= diff, f"{name} was not trained"
    assert diff <= allowed, f"changed outside the init modules: {sorted(diff - allowed)}"
    assert not any(k.startswith("teacher.") for k in diff)

    # back to the main-stage state: modes, frozen modules, no stale gradients
    assert d.training and not d.teacher.training
    for name in FROZEN_EXTRAS.get(method, []):
        module = getattr(d, name)
        assert not module.training and all(not p.requires_grad for p in module.parameters())
    assert all(p.grad is None for p in d.parameters())


def test_factor_pretrain_lr_rule(monkeypatch):
    """RepDistiller pre-trains the paraphraser at lr 0.01 for resnet/wrn students, else opt.learning_rate."""
    from distiller_zoo import FT
    seen = []

    class RecordingSGD(torch.optim.SGD):
        def __init__(self, params, lr, **kw):
            seen.append(lr)
            super().__init__(params, lr=lr, **kw)

    monkeypatch.setattr(torch.optim, "SGD", RecordingSGD)
    for model_s in ("resnet8", "ShuffleV2"):
        d, opt, num_classes = build("standin", "factor", model_s=model_s, init_epochs=0)
        d.pretrain([make_batch(num_classes)], opt, "cpu", log=lambda *_: None)
    assert seen == [FT.FACTOR_INIT_LR, opt.learning_rate]


@pytest.mark.parametrize("method", sorted(PRETRAINED))
def test_pretrain_stops_on_a_non_finite_loss(method):
    """A diverged init stage stops with NonFiniteLoss (exit 3 in the scripts) instead of going on."""
    from util.errors import NonFiniteLoss
    d, opt, num_classes = build("standin", method)
    bad = make_batch(num_classes, seed=1)
    bad.images = torch.full_like(bad.images, float("nan"))
    with pytest.raises(NonFiniteLoss, match=rf"non-finite loss in the {method} pre-training stage \(lr [0-9.e-]+\), "
                                             r"epoch 1") as caught:
        d.pretrain([bad], opt, torch.device("cpu"), log=lambda *_: None)
    assert "--init_lr" in caught.value.hint  # the flag that sets that stage's rate
    assert all(p.grad is None for p in d.parameters())
    assert d.training and not d.teacher.training
