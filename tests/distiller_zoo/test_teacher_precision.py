"""The teacher's forward precision: float32 by default, bf16 with --teacher_bf16, and --amp respected."""
import argparse

import pytest
import torch

from distiller_zoo.base import Distiller
from distiller_zoo.KD import KDDistiller
from models import model_dict


@pytest.fixture
def pair():
    torch.manual_seed(0)
    teacher = model_dict["resnet8"](num_classes=100).eval()
    student = model_dict["resnet8"](num_classes=100)
    x = torch.randn(4, 3, 32, 32)
    return student, teacher, x


def distiller(student, teacher, **opt):
    return Distiller(student, teacher, argparse.Namespace(**opt))


def test_float32_teacher_by_default(pair):
    student, teacher, x = pair
    d = distiller(student, teacher)
    assert not d.teacher_bf16
    with torch.no_grad():
        feats_ref, logits_ref = teacher(x, is_feat=True)
    feats, logits = d.teacher_forward(x, is_feat=True)
    assert torch.equal(logits, logits_ref) and all(torch.equal(a, b) for a, b in zip(feats, feats_ref))
    assert not logits.requires_grad


def test_teacher_bf16_computes_in_bf16_and_returns_float32(pair):
    student, teacher, x = pair
    d = distiller(student, teacher, teacher_bf16=True)
    feats, logits = d.teacher_forward(x, is_feat=True)
    assert logits.dtype == torch.float32 and all(f.dtype == torch.float32 for f in feats)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        feats_bf, logits_bf = teacher(x, is_feat=True)
    assert torch.equal(logits, logits_bf.float())
    assert all(torch.equal(a, b.float()) for a, b in zip(feats, feats_bf))
    with torch.no_grad():
        fp32 = teacher(x)
    assert not torch.equal(logits, fp32)  # the precision really changed...
    assert torch.allclose(logits, fp32, rtol=0.05, atol=0.05 * fp32.abs().max().item())  # ...but little
    assert d.teacher_forward(x).dtype == torch.float32


def test_amp_still_reaches_the_teacher_without_teacher_bf16(pair):
    """--amp alone autocasts the teacher too (a disabled inner autocast would turn it off)."""
    student, teacher, x = pair
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert distiller(student, teacher).teacher_forward(x).dtype == torch.bfloat16
        assert distiller(student, teacher, teacher_bf16=True).teacher_forward(x).dtype == torch.float32


def test_kd_loss_with_bf16_teacher_backpropagates_in_float32(pair):
    student, teacher, x = pair
    from distiller_zoo.base import Batch
    opt = argparse.Namespace(teacher_bf16=True, kd_T=4.0, gamma=None, alpha=None, beta=None)
    d = KDDistiller(student, teacher, opt)
    logits, terms = d.forward_train(Batch(images=x, labels=torch.arange(4)))
    loss = sum(terms.values())
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
