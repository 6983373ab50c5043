"""CRDLoss against the RepDistiller reference numbers (tests/fixtures/losses.json -> crd)."""
from types import SimpleNamespace

import pytest
import torch

from crd.criterion import CRDLoss
from tests.reference import apply_fill, assert_stats, contrast_index, load_fixture, sin_input

FILLED = ("embed_s.linear.weight", "embed_s.linear.bias", "embed_t.linear.weight",
          "embed_t.linear.bias", "contrast.memory_v1", "contrast.memory_v2")


@pytest.fixture(scope="module")
def ref():
    return load_fixture("losses")["crd"]


def make_loss(setup):
    opt = SimpleNamespace(s_dim=setup["s_dim"], t_dim=setup["t_dim"], feat_dim=setup["feat_dim"],
                          nce_k=setup["nce_k"], nce_t=setup["nce_t"], nce_m=setup["nce_m"],
                          n_data=setup["n_data"])
    return apply_fill(CRDLoss(opt), only=FILLED)


def fixture_inputs(setup):
    idx = (torch.arange(setup["B"]) * 37 + 5) % setup["n_data"]
    assert idx.tolist() == setup["idx"]
    contrast_idx = contrast_index(idx, setup["n_data"], setup["nce_k"])
    f_s = sin_input((setup["B"], setup["s_dim"]), 0.21, 0).requires_grad_()
    f_t = sin_input((setup["B"], setup["t_dim"]), 0.17, 0.5).requires_grad_()
    return f_s, f_t, idx, contrast_idx


def check_against_fixture(criterion, ref, f_s, f_t, idx, contrast_idx):
    loss = criterion(f_s, f_t, idx, contrast_idx)
    assert loss.dim() == 0
    loss.backward()
    assert torch.allclose(loss.detach().double().cpu(), torch.tensor(ref["loss"], dtype=torch.float64), rtol=1e-4)
    assert_stats(f_s.grad, ref["grads"][0], what="grad f_s")
    assert_stats(f_t.grad, ref["grads"][1], what="grad f_t")
    z_v1, z_v2 = criterion.contrast.normalization.tolist()
    assert z_v1 == pytest.approx(ref["Z_v1"], rel=1e-4)
    assert z_v2 == pytest.approx(ref["Z_v2"], rel=1e-4)
    assert_stats(criterion.contrast.memory_v1[idx], ref["memory_v1_rows"], what="memory_v1 rows")
    assert_stats(criterion.contrast.memory_v2[idx], ref["memory_v2_rows"], what="memory_v2 rows")


def test_matches_reference(ref):
    setup = ref["setup"]
    check_against_fixture(make_loss(setup), ref, *fixture_inputs(setup))


@pytest.mark.parametrize("scoring", ["dense", "gather"])
def test_both_scoring_paths_match_reference(ref, scoring):
    """"auto" gathers rows for the fixture's small batch; a CIFAR-size batch (more
    rows than the bank) scores the whole bank densely: both must give the same numbers."""
    setup = ref["setup"]
    criterion = make_loss(setup)
    criterion.contrast.scoring = scoring
    check_against_fixture(criterion, ref, *fixture_inputs(setup))


def test_normalization_is_set_once_and_saved(ref):
    setup = ref["setup"]
    criterion = make_loss(setup)
    assert (criterion.contrast.normalization < 0).all()
    f_s, f_t, idx, contrast_idx = fixture_inputs(setup)
    criterion(f_s, f_t, idx, contrast_idx)
    first = criterion.contrast.normalization.clone()
    criterion(f_s * 2, f_t, idx, contrast_idx)  # different scores, Z must stay
    assert torch.equal(criterion.contrast.normalization, first)

    state = criterion.state_dict()
    assert list(state) == ["embed_s.linear.weight", "embed_s.linear.bias", "embed_t.linear.weight",
                           "embed_t.linear.bias", "contrast.params", "contrast.memory_v1", "contrast.memory_v2"]
    resumed = CRDLoss(SimpleNamespace(**{k: setup[k] for k in
                                         ("s_dim", "t_dim", "feat_dim", "nce_k", "nce_t", "nce_m", "n_data")}))
    resumed.load_state_dict(state)
    assert torch.equal(resumed.contrast.normalization, first)


def test_default_negatives_and_memory_init():
    """Without contrast_idx the negatives are uniform over the bank; the bank init
    follows the global seed and lies in [-stdv, stdv], stdv = 1/sqrt(feat_dim/3)."""
    opt = SimpleNamespace(s_dim=6, t_dim=5, feat_dim=12, nce_k=7, nce_t=0.07, nce_m=0.5, n_data=40)
    torch.manual_seed(3)
    a = CRDLoss(opt)
    torch.manual_seed(3)
    b = CRDLoss(opt)
    assert torch.equal(a.contrast.memory_v1, b.contrast.memory_v1)
    stdv = (opt.feat_dim / 3) ** -0.5
    assert a.contrast.memory_v2.abs().max() <= stdv
    assert not torch.equal(a.contrast.memory_v1, a.contrast.memory_v2)
    idx = torch.tensor([0, 5, 9])
    loss = a(torch.randn(3, 6), torch.randn(3, 5), idx)
    assert loss.dim() == 0 and torch.isfinite(loss)
    rows = a.contrast.memory_v1[idx]
    assert torch.allclose(rows.norm(dim=1), torch.ones(3))


def test_bad_nce_k():
    opt = SimpleNamespace(s_dim=6, t_dim=5, feat_dim=12, nce_k=0, nce_t=0.07, nce_m=0.5, n_data=40)
    with pytest.raises(ValueError):
        CRDLoss(opt)
