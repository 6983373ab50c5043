"""Every method the registry finds keeps the contract (iterates `METHODS`: a new file is covered).

Each is built from train_student.py's own parser (so its flags exist), fed one batch built
by the data path from the method's `needs`, and must return its terms under the names its
`loss_terms` announces (the start-up line, metrics.jsonl and TensorBoard use the same ones).
"""
import argparse

import pytest
import torch

import train_student
from distiller_zoo import METHODS, method_named
from distiller_zoo.base import Distiller

N_PER_CLASS, CLASSES = 2, 100


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (N_PER_CLASS * CLASSES, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.arange(CLASSES).repeat(N_PER_CLASS)
    return {"train": (x, y), "test": (x[:10], y[:10])}


def build(name, data, *extra):
    from dataset import make_loaders
    from models import model_dict
    method = METHODS[name]
    opt = train_student.parse_args(["--path_t", "unused.pth", "--distill", name, "--model_s", "resnet8",
                                    "--batch_size", "8", "--nce_k", "16", "--mixup_num", "1", "--device", "cpu",
                                    *method.sweep_args, *extra])
    opt.model_t = "resnet8"
    train, _ = make_loaders(opt, data, torch.device("cpu"), method.needs)
    opt.n_data, opt.steps_per_epoch = train.num_samples, len(train)
    torch.manual_seed(0)
    student, teacher = model_dict["resnet8"](num_classes=100), model_dict["resnet8"](num_classes=100)
    return method(student, teacher, opt), next(iter(train)), opt


@pytest.mark.parametrize("name", list(METHODS))
def test_terms_are_the_announced_ones(name, data):
    distiller, batch, _ = build(name, data)
    distiller.train()
    distiller.set_epoch(2)
    logits, terms = distiller.forward_train(batch)
    assert logits.shape == (len(batch), 100)
    announced = distiller.loss_terms()
    assert list(terms) == list(announced), f"{name}: returns {list(terms)}, announces {list(announced)}"
    assert all(t.dim() == 0 and torch.isfinite(t) for t in terms.values())
    line = distiller.describe_loss()
    assert all(f"{k}=" in line for k in terms)


@pytest.mark.parametrize("name", list(METHODS))
def test_class_description(name):
    cls = METHODS[name]
    assert issubclass(cls, Distiller) and cls.name == name and method_named(name) is cls
    assert set(cls.default_weights) <= {"gamma", "alpha", "beta"}
    assert isinstance(cls.title(), str) and cls.title()
    assert isinstance(cls.table_order, (int, float))
    assert all(isinstance(w, str) for w in cls.sweep_args)
    for alias in cls.aliases:
        assert method_named(alias) is cls


@pytest.mark.parametrize("name", list(METHODS))
def test_folder_tags_are_plain_name_parts(name):
    opt = train_student.parse_args(["--path_t", "x.pth", "--distill", name, *METHODS[name].sweep_args])
    for tag in METHODS[name].folder_tags(opt):
        assert "/" not in tag and "_" not in tag.split(":")[0] and tag.strip() == tag


def test_a_method_init_bug_shows_its_traceback(tmp_path, monkeypatch):
    """run_guarded turns only usage errors into exit 2: a ValueError from a method's __init__ is a bug."""
    from helper.trainer import run_guarded
    from util.errors import UsageError

    def broken():
        raise ValueError("bug in a method")
    with pytest.raises(ValueError, match="bug in a method"):
        run_guarded(broken)

    def usage():
        raise UsageError("bad flag")
    with pytest.raises(SystemExit) as e:
        run_guarded(usage)
    assert e.value.code == 2


def test_pair_refusal_is_the_constructors_and_needs_only_shapes():
    """FSP/KDSVD decide from shapes alone (models on the meta device: what the sweep builds),
    and the constructor raises the same line; a method without the check applies to any pair."""
    from distiller_zoo.FSP import FSPDistiller
    from distiller_zoo.KDSVD import KDSVDDistiller
    from models import model_dict
    from util.errors import UsageError
    with torch.device("meta"):
        wide, narrow = model_dict["vgg13"](num_classes=100), model_dict["MobileNetV2"](num_classes=100)
        same_s, same_t = model_dict["resnet20"](num_classes=100), model_dict["resnet56"](num_classes=100)
    for cls in (FSPDistiller, KDSVDDistiller):
        assert "equal channel numbers" in cls.pair_refusal(narrow, wide)
        assert cls.pair_refusal(same_s, same_t) is None
    assert METHODS["kd"].pair_refusal(narrow, wide) is None and Distiller.pair_refusal(narrow, wide) is None
    torch.manual_seed(0)
    student, teacher = model_dict["MobileNetV2"](num_classes=100), model_dict["vgg13"](num_classes=100)
    opt = argparse.Namespace(gamma=None, alpha=None, beta=None, kd_T=4)
    with pytest.raises(UsageError) as e:
        KDSVDDistiller(student, teacher, opt)
    assert str(e.value) == KDSVDDistiller.pair_refusal(student, teacher)
