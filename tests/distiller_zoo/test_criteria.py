"""The 13 RepDistiller criteria reproduce the reference numbers in tests/fixtures/losses.json.

Each case calls the criterion exactly as tests/fixtures/README.md describes, then checks
the loss (sum of the per-layer parts), the parts, and the gradient of that sum w.r.t.
every input in call order (None where the reference has no autograd path).
"""
import pytest
import torch

from distiller_zoo.AB import ABLoss
from distiller_zoo.AT import Attention
from distiller_zoo.CC import Correlation
from distiller_zoo.FitNet import HintLoss
from distiller_zoo.FSP import FSP
from distiller_zoo.FT import FactorTransfer
from distiller_zoo.KD import DistillKL
from distiller_zoo.KDSVD import KDSVD
from distiller_zoo.NST import NSTLoss
from distiller_zoo.PKT import PKT
from distiller_zoo.RKD import RKDLoss
from distiller_zoo.SP import Similarity
from distiller_zoo.VID import VIDLoss
from tests.reference import apply_fill, assert_stats, hash_input, load_fixture, sin_input

RTOL = 1e-4

CASES = load_fixture("losses")["losses"]


def maps_student():
    return [sin_input((8, 16, 32, 32), 0.03, 0.1), sin_input((8, 32, 16, 16), 0.05, 0.2),
            sin_input((8, 64, 8, 8), 0.07, 0.3)]


def maps_teacher():
    return [sin_input((8, 32, 32, 32), 0.031, 0.4), sin_input((8, 64, 16, 16), 0.051, 0.5),
            sin_input((8, 128, 8, 8), 0.071, 0.6)]


def maps_teacher_same():
    return [sin_input((8, 16, 32, 32), 0.031, 0.4), sin_input((8, 32, 16, 16), 0.051, 0.5),
            sin_input((8, 64, 8, 8), 0.071, 0.6)]


def hint_pair():
    return sin_input((8, 64), 0.21, 0), sin_input((8, 64), 0.19, 0.5)


def embedding_pair():
    return sin_input((8, 64), 0.21, 0), sin_input((8, 128), 0.17, 0.5)


def vid_case():
    criterion = apply_fill(VIDLoss(16, 32, 32))
    return criterion, (maps_student()[0], maps_teacher()[0])


def list_call(criterion, g_s, g_t):
    return criterion, (g_s, g_t)


def build(key):
    """-> (criterion, call arguments) for a fixture key; arguments are tensors or lists of tensors."""
    if key == "kd_T4":
        return DistillKL(T=4), (sin_input((8, 100), 0.11, 0) * 3, sin_input((8, 100), 0.13, 1) * 3)
    if key == "hint_mse":
        return HintLoss(), hint_pair()
    if key == "correlation":
        return Correlation(), hint_pair()
    if key == "rkd_25_50":
        return RKDLoss(w_d=25, w_a=50), embedding_pair()
    if key == "pkt":
        return PKT(), embedding_pair()
    if key == "attention_p2":
        return list_call(Attention(p=2), maps_student(), maps_teacher())
    if key == "similarity":
        return list_call(Similarity(), maps_student(), maps_teacher())
    if key == "nst":
        return list_call(NSTLoss(), maps_student(), maps_teacher())
    if key == "fsp":
        g_s, g_t = maps_student(), maps_teacher_same()
        return FSP([g.shape for g in g_s], [g.shape for g in g_t]), (g_s, g_t)
    if key == "ab_margin1":
        return list_call(ABLoss(feat_num=3, margin=1), maps_student(), maps_teacher_same())
    if key == "kdsvd_k1":
        h_s = [hash_input(g.shape, k + 1) for k, g in enumerate(maps_student())]
        h_t = [hash_input(g.shape, k + 11) for k, g in enumerate(maps_teacher_same())]
        return KDSVD(k=1), (h_s, h_t)
    if key == "ft_p1_2_p2_1":
        return FactorTransfer(p1=2, p2=1), (maps_student()[2], maps_teacher_same()[2])
    if key == "vid_16_32_32":
        return vid_case()
    raise KeyError(key)


def flat_inputs(args):
    out = []
    for a in args:
        out.extend(a if isinstance(a, list) else [a])
    return out


def test_every_fixture_case_is_covered():
    for key in CASES:
        build(key)


@pytest.mark.parametrize("key", sorted(CASES))
def test_criterion_matches_reference(key):
    ref = CASES[key]
    criterion, args = build(key)
    inputs = flat_inputs(args)
    for t in inputs:
        t.requires_grad_(True)
    out = criterion(*args)
    if "parts" in ref:
        assert isinstance(out, list) and len(out) == len(ref["parts"]), f"{key}: expected {len(ref['parts'])} parts"
        got_parts = torch.stack([p.reshape(()) for p in out]).double()
        want_parts = torch.tensor(ref["parts"], dtype=torch.float64)
        assert torch.allclose(got_parts, want_parts, rtol=RTOL, atol=1e-7), f"{key}: parts {got_parts.tolist()}"
        loss = sum(out)
    else:
        assert torch.is_tensor(out) and out.numel() == 1
        loss = out
    want = torch.tensor(ref["loss"], dtype=torch.float64)
    assert torch.allclose(loss.detach().double().reshape(()), want, rtol=RTOL, atol=1e-7), f"{key}: loss {loss.item()} != {ref['loss']}"
    grads = torch.autograd.grad(loss.sum(), inputs, allow_unused=True)
    assert len(grads) == len(ref["grads"])
    for i, (g, g_ref) in enumerate(zip(grads, ref["grads"])):
        if g_ref is None:
            assert g is None or not g.any(), f"{key}: input {i} should get no gradient"
        else:
            assert g is not None, f"{key}: input {i} got no gradient"
            assert_stats(g, g_ref, rtol=RTOL, what=f"{key} grad {i}")


def test_vid_initial_variance_is_init_pred_var():
    """Without the fill, softplus(log_scale) + eps starts at init_pred_var."""
    vid = VIDLoss(4, 8, 8, init_pred_var=5.0)
    var = torch.nn.functional.softplus(vid.log_scale) + vid.eps
    assert torch.allclose(var, torch.full_like(var, 5.0))


def test_fsp_rejects_unequal_channels():
    with pytest.raises(ValueError):
        FSP([(2, 16, 8, 8), (2, 32, 4, 4)], [(2, 16, 8, 8), (2, 64, 4, 4)])
