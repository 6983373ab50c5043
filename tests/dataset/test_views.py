"""PACKD's multi-view batches (dataset/views.py) against the authors' dataset rules."""
import numpy as np
import pytest
import torch

from dataset.augment import augment, crop_flip, normalize
from dataset.views import MultiViewBuilder

N_PER_CLASS, N_CLASSES = 6, 4


def tiny_split(seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (N_PER_CLASS * N_CLASSES, 3, 32, 32), generator=g, dtype=torch.uint8)
    labels = torch.arange(N_CLASSES).repeat(N_PER_CLASS)[torch.randperm(N_PER_CLASS * N_CLASSES, generator=g)]
    return images, labels


def gen(seed=1):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("mixup_num, views", [(3, 4), (1, 2), (0, 1), (-1, 1)])
def test_shapes(mixup_num, views):
    images, labels = tiny_split()
    builder = MultiViewBuilder(images, labels, mixup_num=mixup_num)
    out, info = builder.build(torch.tensor([0, 5, 7]), gen(), return_info=True)
    assert out.shape == (3, views, 3, 32, 32) and out.dtype == torch.float32
    assert builder.num_views == views
    mixed = max(mixup_num, 0) if mixup_num >= 0 else 1
    assert info["partners"].shape == info["lam"].shape == info["rotations"].shape == (3, mixed)


def test_bad_mixup_num():
    images, labels = tiny_split()
    with pytest.raises(ValueError, match="mixup_num"):
        MultiViewBuilder(images, labels, mixup_num=-2)


def test_view0_is_the_plain_augmentation():
    images, labels = tiny_split()
    index = torch.tensor([3, 1, 4, 1, 5])
    g = gen(7)
    replay = torch.Generator().set_state(g.get_state())
    views = MultiViewBuilder(images, labels, mixup_num=3).build(index, g)
    assert torch.equal(views[:, 0], augment(images[index], replay))


def test_partners_same_class_lambda_range_and_rotations():
    images, labels = tiny_split()
    index = torch.arange(len(labels)).repeat(4)
    builder = MultiViewBuilder(images, labels, mixup_num=3, mixup_ratio=0.3, mixup_rotate=3)
    _, info = builder.build(index, gen(), return_info=True)
    assert torch.equal(labels[info["partners"]], labels[index].unsqueeze(1).expand(-1, 3))
    assert (info["partners"] == index.unsqueeze(1)).any()  # drawn with replacement, the anchor included
    assert set(info["partners"].unique().tolist()) == set(range(len(labels)))
    assert info["lam"].min() >= 0.3 and info["lam"].max() <= 1.0
    assert set(info["rotations"].unique().tolist()) == {0, 1, 2, 3}

    no_rot = MultiViewBuilder(images, labels, mixup_num=3, mixup_rotate=0)
    _, info = no_rot.build(index, gen(), return_info=True)
    assert (info["rotations"] == 0).all()
    assert info["lam"].min() >= 0.0 and info["lam"].min() < 0.3  # mixup_ratio 0: lambda ~ U(0, 1)


def test_variants_lambda():
    images, labels = tiny_split()
    index = torch.arange(len(labels)).repeat(3)
    # mixup_num -1: one mixed view, lambda ~ U(0, 1) whatever mixup_ratio says (authors' code)
    _, info = MultiViewBuilder(images, labels, mixup_num=-1, mixup_ratio=0.9).build(index, gen(), return_info=True)
    assert info["lam"].shape == (len(index), 1) and info["lam"].min() < 0.9
    # mixup_rotate < -1: lambda = 0, the view is the (unrotated) partner alone
    _, info = MultiViewBuilder(images, labels, mixup_num=2, mixup_rotate=-2).build(index, gen(), return_info=True)
    assert (info["lam"] == 0).all() and (info["rotations"] == 0).all()


def test_single_member_class_mixes_with_itself():
    images, labels = tiny_split()
    labels = labels.clone()
    labels[0] = N_CLASSES  # a class of one image
    _, info = MultiViewBuilder(images, labels, mixup_num=3).build(torch.tensor([0, 0]), gen(), return_info=True)
    assert (info["partners"] == 0).all()


def test_rotation_matches_numpy_rot90():
    images, _ = tiny_split()
    x = images[:4]
    turns = torch.tensor([0, 1, 2, 3])
    out = MultiViewBuilder.rotate(x, turns)
    for i in range(4):
        hwc = x[i].permute(1, 2, 0).numpy()
        want = np.rot90(hwc, int(turns[i])).copy()
        assert torch.equal(out[i], torch.from_numpy(want).permute(2, 0, 1))


def test_mixed_view_formula():
    """view k = lam * aug(x_i) + (1 - lam) * aug(rot90^r(x_j)), mixed after normalisation.

    Replays the builder's draws (view 0, partners, rotations, partner crops, anchor
    crops, lambda) from a copy of the generator.
    """
    images, labels = tiny_split()
    index = torch.tensor([2, 9, 11])
    m = 2
    g = gen(3)
    replay = torch.Generator().set_state(g.get_state())
    builder = MultiViewBuilder(images, labels, mixup_num=m, mixup_ratio=0.25, mixup_rotate=3)
    views, info = builder.build(index, g, return_info=True)

    def draw_aug(x):
        offsets = torch.randint(0, 9, (x.shape[0], 2), generator=replay)
        flips = torch.rand(x.shape[0], generator=replay) < 0.5
        return normalize(crop_flip(x, offsets, flips))

    draw_aug(images[index])  # view 0
    torch.rand(len(index) * m, generator=replay)  # partners
    turns = torch.randint(0, 4, (len(index) * m,), generator=replay)
    partners = info["partners"].reshape(-1)
    rotated = torch.stack([torch.rot90(images[p], int(r), dims=(-2, -1)) for p, r in zip(partners, turns)])
    partner_aug = draw_aug(rotated)
    anchor_aug = draw_aug(images[index.repeat_interleave(m)])
    lam = 0.25 + 0.75 * torch.rand(len(index) * m, generator=replay)
    assert torch.equal(turns, info["rotations"].reshape(-1))
    assert torch.allclose(lam, info["lam"].reshape(-1))
    want = lam.view(-1, 1, 1, 1) * anchor_aug + (1 - lam.view(-1, 1, 1, 1)) * partner_aug
    assert torch.allclose(views[:, 1:].reshape(-1, 3, 32, 32), want, atol=1e-6)


def test_deterministic_with_seeded_generator():
    images, labels = tiny_split()
    builder = MultiViewBuilder(images, labels, mixup_num=3)
    index = torch.tensor([0, 1, 2, 3])
    a = builder.build(index, gen(11))
    b = builder.build(index, gen(11))
    c = builder.build(index, gen(12))
    assert torch.equal(a, b) and not torch.equal(a, c)
