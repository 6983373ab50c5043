"""CRDDistiller: loss terms, what trains, what stays frozen, memory updates."""
from types import SimpleNamespace

import pytest
import torch

from dataset.negatives import NegativeSampler
from distiller_zoo.base import CONTRAST_INDEX, INDEX, Batch
from distiller_zoo.CRD import CRDDistiller
from models import model_dict

N_DATA, NCE_K, BATCH, CLASSES = 40, 8, 4, 100


def make_opt(**overrides):
    opt = SimpleNamespace(gamma=None, alpha=None, beta=None, kd_T=4, feat_dim=16, nce_k=NCE_K,
                          nce_t=0.07, nce_m=0.5, n_data=N_DATA, mode="exact")
    opt.__dict__.update(overrides)
    return opt


@pytest.fixture(scope="module")
def labels():
    return torch.arange(N_DATA) % 5


def make_distiller(**overrides):
    torch.manual_seed(0)
    student = model_dict["resnet8"](num_classes=CLASSES)     # pooled dim 64
    teacher = model_dict["resnet8x4"](num_classes=CLASSES)   # pooled dim 256
    return CRDDistiller(student, teacher, make_opt(**overrides))


def make_batch(labels, with_contrast=True):
    index = torch.tensor([3, 17, 22, 38])
    sampler = NegativeSampler(labels, NCE_K)
    contrast = sampler.sample(index, torch.Generator().manual_seed(0)) if with_contrast else None
    images = torch.randn(BATCH, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    return Batch(images=images, labels=labels[index], index=index, contrast_index=contrast)


def test_declaration_and_shapes():
    distiller = make_distiller()
    assert CRDDistiller.name == "crd"
    assert CRDDistiller.needs == {INDEX, CONTRAST_INDEX}
    assert (distiller.gamma, distiller.alpha, distiller.beta) == (1.0, 0.0, 0.8)
    crd = distiller.criterion_kd
    assert crd.embed_s.linear.weight.shape == (16, 64)
    assert crd.embed_t.linear.weight.shape == (16, 256)
    assert crd.contrast.memory_v1.shape == (N_DATA, 16)
    assert crd in distiller.extra_modules()
    trainable = {id(p) for p in distiller.trainable_parameters()}
    for p in list(crd.embed_s.parameters()) + list(crd.embed_t.parameters()):
        assert id(p) in trainable
    assert not any(id(p) in trainable for p in distiller.teacher.parameters())


def test_step_trains_student_and_embeddings_only(labels):
    distiller = make_distiller().train()
    assert not distiller.teacher.training
    batch = make_batch(labels)
    teacher_before = {k: v.clone() for k, v in distiller.teacher.state_dict().items()}
    memory_before = distiller.criterion_kd.contrast.memory_v1.clone()

    optimizer = torch.optim.SGD(distiller.trainable_parameters(), lr=0.1, momentum=0.9)
    logits, terms = distiller.forward_train(batch)
    assert logits.shape == (BATCH, CLASSES)
    assert set(terms) == {"cls", "kd"}
    assert all(t.dim() == 0 and torch.isfinite(t) for t in terms.values())
    sum(terms.values()).backward()

    crd = distiller.criterion_kd
    for module in (distiller.student, crd.embed_s, crd.embed_t):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in distiller.teacher.parameters())
    optimizer.step()

    for key, value in distiller.teacher.state_dict().items():
        assert torch.equal(value, teacher_before[key]), f"teacher {key} changed"
    memory = crd.contrast.memory_v1
    touched = torch.zeros(N_DATA, dtype=torch.bool)
    touched[batch.index] = True
    assert not torch.allclose(memory[touched], memory_before[touched])
    assert torch.equal(memory[~touched], memory_before[~touched])
    assert torch.allclose(memory[touched].norm(dim=1), torch.ones(BATCH))
    assert (crd.contrast.normalization > 0).all()


def test_kd_term_when_alpha_set_and_weights_applied(labels):
    distiller = make_distiller(alpha=0.5, beta=2.0, gamma=0.3).train()
    batch = make_batch(labels)
    _, terms = distiller.forward_train(batch)
    assert set(terms) == {"cls", "div", "kd"}
    logits_s = distiller.student(batch.images)
    ce = torch.nn.functional.cross_entropy(logits_s, batch.labels)
    assert torch.allclose(terms["cls"], 0.3 * ce, rtol=1e-5)


def test_uniform_negatives_without_contrast_index(labels):
    distiller = make_distiller().train()
    _, terms = distiller.forward_train(make_batch(labels, with_contrast=False))
    assert torch.isfinite(terms["kd"])


def test_missing_inputs_raise(labels):
    distiller = make_distiller()
    batch = make_batch(labels)
    batch.index = None
    with pytest.raises(ValueError):
        distiller.forward_train(batch)
    with pytest.raises(ValueError):
        CRDDistiller(model_dict["resnet8"](num_classes=CLASSES), model_dict["resnet8"](num_classes=CLASSES),
                     make_opt(n_data=None))
