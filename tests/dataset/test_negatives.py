"""NegativeSampler: the rules of RepDistiller's CIFAR100InstanceSample, batched."""
import pytest
import torch

from dataset.negatives import NegativeSampler


def balanced_labels(n=60, classes=4):
    return torch.arange(n) % classes


def uneven_labels():
    """Class sizes 3, 7, 15, 5 (shuffled order): pools 27, 23, 15, 25 of 30 samples."""
    sizes = [3, 7, 15, 5]
    labels = torch.cat([torch.full((s,), c) for c, s in enumerate(sizes)])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]


def seeded(seed=0, device="cpu"):
    return torch.Generator(device=device).manual_seed(seed)


def assert_negatives_valid(out, labels, index, distinct=True):
    negatives = out[:, 1:]
    assert (labels[negatives] != labels[index].unsqueeze(1)).all(), "same-class negative"
    assert ((negatives >= 0) & (negatives < len(labels))).all()
    if distinct:
        for row in negatives:
            assert row.unique().numel() == row.numel(), "duplicate negative within a row"


@pytest.mark.parametrize("labels_fn", [balanced_labels, uneven_labels])
def test_exact_mode(labels_fn):
    labels = labels_fn()
    sampler = NegativeSampler(labels, nce_k=12)
    index = torch.tensor([0, 3, 7, 11, 2, 2])
    out = sampler.sample(index, seeded())
    assert out.shape == (6, 13) and out.dtype == torch.int64 and out.device == labels.device
    assert torch.equal(out[:, 0], index)
    assert_negatives_valid(out, labels, index)


def test_relax_mode_positive_is_same_class():
    labels = uneven_labels()
    sampler = NegativeSampler(labels, nce_k=10, mode="relax")
    index = torch.arange(len(labels)).repeat(20)
    out = sampler.sample(index, seeded(1))
    assert torch.equal(labels[out[:, 0]], labels[index])
    assert (out[:, 0] != index).any(), "relax mode should not always pick the sample itself"
    # Every member of a class can be drawn (class 2 has 15 members, 20 * 15 draws).
    drawn = out[:, 0][labels[index] == 2].unique()
    assert drawn.numel() == (labels == 2).sum()
    assert_negatives_valid(out, labels, index)


def test_negatives_cover_the_pool_uniformly():
    labels = balanced_labels(40, 4)
    sampler = NegativeSampler(labels, nce_k=5)
    index = torch.zeros(2000, dtype=torch.long)  # class 0; pool = 30 samples
    counts = torch.bincount(sampler.sample(index, seeded(2))[:, 1:].reshape(-1), minlength=40)
    assert (counts[labels == 0] == 0).all()
    pool_counts = counts[labels != 0].double()
    expected = 2000 * 5 / 30  # binomial std ~17: the bound is ~5 std
    assert (pool_counts - expected).abs().max() < 0.25 * expected


def test_with_replacement_when_pool_smaller_than_k():
    labels = uneven_labels()  # pools: 27, 23, 15, 25
    sampler = NegativeSampler(labels, nce_k=20)  # class 2's pool (15) is too small
    assert sampler.any_with_replacement and not sampler.all_with_replacement
    index = torch.arange(len(labels))
    out = sampler.sample(index, seeded(3))
    assert out.shape == (30, 21)
    small = labels[index] == 2
    assert_negatives_valid(out[~small], labels, index[~small], distinct=True)
    assert_negatives_valid(out[small], labels, index[small], distinct=False)
    # 20 draws from 15: some repeat in every such row.
    assert all(row.unique().numel() < 20 for row in out[small][:, 1:])


def test_all_rows_with_replacement_when_k_exceeds_dataset():
    labels = balanced_labels(12, 3)
    sampler = NegativeSampler(labels, nce_k=200)
    assert sampler.all_with_replacement
    index = torch.arange(12)
    out = sampler.sample(index, seeded(4))
    assert out.shape == (12, 201)
    assert_negatives_valid(out, labels, index, distinct=False)
    # Each row's pool (8 samples) is fully reachable (a miss in 200 draws: ~2e-11).
    assert all(row.unique().numel() == 8 for row in out[:, 1:])


def test_deterministic_given_seeded_generator():
    labels = uneven_labels()
    for mode in ("exact", "relax"):
        sampler = NegativeSampler(labels, nce_k=20, mode=mode)
        index = torch.tensor([1, 4, 9, 16, 25])
        a = sampler.sample(index, seeded(7))
        b = sampler.sample(index, seeded(7))
        c = sampler.sample(index, seeded(8))
        assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(5)
    a = sampler.sample(index)
    torch.manual_seed(5)
    assert torch.equal(a, sampler.sample(index))


def test_arbitrary_label_values_and_index_shapes():
    labels = torch.tensor([7, 7, 42, 42, 42, 3, 3, 3, 3])
    sampler = NegativeSampler(labels, nce_k=4)
    index = torch.tensor([[0], [4], [6]])  # any shape is flattened
    out = sampler.sample(index, seeded())
    assert out.shape == (3, 5)
    assert_negatives_valid(out, labels, index.reshape(-1))


def test_to_moves_tables():
    sampler = NegativeSampler(balanced_labels(), nce_k=4).to("cpu")
    assert sampler.device == torch.device("cpu")
    assert sampler.sample(torch.tensor([1, 2])).device == torch.device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda():
    labels = uneven_labels()
    sampler = NegativeSampler(labels, nce_k=20, mode="relax").to("cuda")
    index = torch.arange(len(labels))
    out = sampler.sample(index.cuda(), seeded(0, "cuda"))
    assert out.device.type == "cuda" and out.shape == (30, 21)
    out = out.cpu()
    assert torch.equal(labels[out[:, 0]], labels)
    assert_negatives_valid(out, labels, index, distinct=False)


@pytest.mark.parametrize("bad", [
    dict(nce_k=0), dict(nce_k=-3), dict(mode="fuzzy"),
    dict(labels=torch.zeros(5, dtype=torch.long)), dict(labels=torch.zeros(2, 3, dtype=torch.long)),
    dict(labels=torch.rand(5)),
])
def test_bad_arguments(bad):
    kwargs = dict(labels=balanced_labels(), nce_k=4, mode="exact")
    kwargs.update(bad)
    with pytest.raises(ValueError) as err:
        NegativeSampler(**kwargs)
    assert "\n" not in str(err.value)


def test_a_data_set_too_large_for_keys_draws_other_classes_with_replacement(monkeypatch):
    """ImageNet-sized banks: no (B, n_data) key matrix; still never the anchor's own class."""
    import dataset.negatives as negatives
    monkeypatch.setattr(negatives, "MAX_KEYS", 100)
    labels = torch.arange(60) % 3
    sampler = negatives.NegativeSampler(labels, nce_k=30)
    index = torch.arange(8)
    out = sampler.sample(index, torch.Generator().manual_seed(0))
    assert out.shape == (8, 31) and torch.equal(out[:, 0], index)
    assert (labels[out[:, 1:]] != labels[index].unsqueeze(1)).all()
