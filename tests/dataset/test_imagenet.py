"""The ImageNet data path: folder layout, the DataLoader loader and the DALI loader, on a
small generated JPEG folder (4 classes x 6 train / 2 val images of 64x80)."""
import os
import random
import sys

import numpy as np
import pytest
import torch

from dataset.batch import CONTRAST_INDEX, INDEX, VIEWS
from dataset.imagenet import (GENERATED_MARKER, IMAGENET_MEAN, IMAGENET_STD, LAYOUT, EpochPlanner, ImageNetLoader,
                              MixedViews, normalize_on_device, rotate_like_pil,
                              is_generated, random_resized_crop_params, scan_imagenet, write_generated_imagenet)
from dataset.negatives import NegativeSampler
from util.errors import UsageError

LOW = min((0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))   # normalised 0
HIGH = max((1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))  # normalised 255


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return str(write_generated_imagenet(str(tmp_path_factory.mktemp("imagenet")), classes=4, per_class=6,
                                        val_per_class=2, size=(64, 80)))


@pytest.fixture(scope="module")
def scanned(folder):
    return scan_imagenet(folder, cache_dir=False)


def one_line_error(excinfo):
    text = str(excinfo.value)
    assert "\n" not in text and text
    return text


# -- the folder ---------------------------------------------------------------------
def test_generated_folder_is_an_imagenet_layout_of_jpegs(folder):
    from PIL import Image
    assert is_generated(folder) and os.path.isfile(os.path.join(folder, GENERATED_MARKER))
    assert sorted(os.listdir(os.path.join(folder, "train"))) == [f"n{k:08d}" for k in range(4)]
    first = os.path.join(folder, "train", "n00000000", "n00000000_1.JPEG")
    with Image.open(first) as img:
        assert img.format == "JPEG" and img.size == (80, 64) and img.mode == "RGB"
    assert sorted(os.listdir(os.path.join(folder, "val", "n00000003"))) == ["ILSVRC2012_val_00000007.JPEG",
                                                                         "ILSVRC2012_val_00000008.JPEG"]


def test_generated_classes_are_learnable_colour_patterns(scanned):
    """Images of one class are closer to their class mean than to the other classes' means."""
    from dataset.imagenet import decode_rgb
    _, train, _ = scanned
    x = torch.stack([decode_rgb(p).float() for p, _ in train])
    y = torch.tensor([label for _, label in train])
    means = torch.stack([x[y == k].mean(0) for k in range(4)])
    nearest = torch.cdist(x.flatten(1), means.flatten(1)).argmin(1)
    assert torch.equal(nearest, y)


def test_writer_refuses_a_folder_with_other_data(tmp_path):
    (tmp_path / "photo.jpg").write_bytes(b"x")
    with pytest.raises(UsageError) as e:
        write_generated_imagenet(str(tmp_path))
    one_line_error(e)
    assert not is_generated(str(tmp_path))


def test_scan_lists_sorted_classes_and_labelled_paths(folder, scanned):
    classes, train, val = scanned
    assert classes == [f"n{k:08d}" for k in range(4)]
    assert len(train) == 24 and len(val) == 8
    assert [label for _, label in train] == [k for k in range(4) for _ in range(6)]
    assert [label for _, label in val] == [k for k in range(4) for _ in range(2)]
    assert train[0][0] == os.path.join(folder, "train", "n00000000", "n00000000_1.JPEG")
    assert all(os.path.basename(os.path.dirname(p)) == classes[label] for p, label in train + val)


def test_scan_cache_is_used_and_invalidated_by_a_new_file(tmp_path, monkeypatch):
    import dataset.imagenet as imagenet
    root = write_generated_imagenet(str(tmp_path / "data"), classes=2, per_class=2, val_per_class=1, size=(8, 8))
    cache = str(tmp_path / "cache")
    first = scan_imagenet(root, cache_dir=cache)
    assert len(os.listdir(cache)) == 1
    listed = []
    original = imagenet._images_in
    monkeypatch.setattr(imagenet, "_images_in", lambda f: listed.append(f) or original(f))
    assert scan_imagenet(root, cache_dir=cache) == first and listed == []  # from the cache
    with open(os.path.join(root, "train", "n00000001", "extra.JPEG"), "wb") as fh:
        fh.write(open(first[1][0][0], "rb").read())
    os.utime(os.path.join(root, "train", "n00000001"), ns=(1, 10 ** 18))  # a coarse-mtime file system
    again = scan_imagenet(root, cache_dir=cache)
    assert listed and len(again[1]) == len(first[1]) + 1


@pytest.mark.parametrize("breakage,expected", [
    ("no_root", "no such folder"),
    ("no_train", "no train/ folder"),
    ("no_val", "no val/ folder"),
    ("empty_class", "holds no images"),
    ("val_extra_class", "val/ has 1 class(es) that train/ lacks (n00000099)"),
    ("flat_val", "2 images lie directly in val/"),
])
def test_layout_errors_are_one_line_and_name_the_layout(tmp_path, breakage, expected):
    import shutil
    root = write_generated_imagenet(str(tmp_path / "data"), classes=2, per_class=1, val_per_class=1, size=(8, 8))
    if breakage == "no_root":
        root = str(tmp_path / "missing")
    elif breakage == "no_train":
        shutil.rmtree(os.path.join(root, "train"))
    elif breakage == "no_val":
        shutil.rmtree(os.path.join(root, "val"))
    elif breakage == "empty_class":
        os.makedirs(os.path.join(root, "train", "n00000005"))
    elif breakage == "val_extra_class":
        shutil.copytree(os.path.join(root, "val", "n00000001"), os.path.join(root, "val", "n00000099"))
    elif breakage == "flat_val":
        for name in os.listdir(os.path.join(root, "val")):
            for f in os.listdir(os.path.join(root, "val", name)):
                os.rename(os.path.join(root, "val", name, f), os.path.join(root, "val", f))
            os.rmdir(os.path.join(root, "val", name))
    with pytest.raises(UsageError) as e:
        scan_imagenet(root, cache_dir=False)
    text = one_line_error(e)
    assert expected in text and LAYOUT in text


# -- the DataLoader path ------------------------------------------------------------------
def test_training_batches_shape_range_labels_and_full_epoch(scanned):
    _, train, _ = scanned
    loader = ImageNetLoader(train, 10, needs={INDEX}, seed=0, num_workers=0)
    batches = list(loader)
    assert len(loader) == len(batches) == 3 and [len(b) for b in batches] == [10, 10, 4]
    assert loader.num_samples == 24
    labels = torch.tensor([label for _, label in train])
    for b in batches:
        assert b.images.shape == (len(b), 3, 224, 224) and b.images.dtype == torch.float32
        assert LOW - 1e-4 <= b.images.min() and b.images.max() <= HIGH + 1e-4
        assert torch.equal(b.labels, labels[b.index]) and b.labels.dtype == torch.int64
        assert b.contrast_index is None and b.views is None
    assert sorted(torch.cat([b.index for b in batches]).tolist()) == list(range(24))
    images = torch.cat([b.images for b in batches])
    assert abs(images.mean()) < 1.5 and 0.3 < images.std() < 2  # normalised, not raw [0, 255] or [0, 1]
    assert ImageNetLoader(train, 10, num_workers=0).__iter__().__next__().index is None  # INDEX only when asked


def test_batches_do_not_depend_on_the_number_of_workers(scanned):
    _, train, _ = scanned
    a = list(ImageNetLoader(train, 8, needs={INDEX}, seed=5, num_workers=0))
    loader = ImageNetLoader(train, 8, needs={INDEX}, seed=5, num_workers=2, prefetch_factor=2)
    b = list(loader)
    assert all(torch.equal(p.images, q.images) and torch.equal(p.index, q.index) for p, q in zip(a, b))
    # persistent workers: a pass abandoned half-way does not disturb the next one
    second = ImageNetLoader(train, 8, needs={INDEX}, seed=5, num_workers=0)
    second.load_state_dict(loader.state_dict())
    next(iter(loader))
    loader.load_state_dict(second.state_dict())
    assert all(torch.equal(p.images, q.images) for p, q in zip(loader, second))


def test_epochs_differ_and_resume_replays_without_decoding_skipped_batches(scanned, monkeypatch):
    import dataset.imagenet as imagenet
    _, train, _ = scanned
    negatives = NegativeSampler(torch.tensor([label for _, label in train]), nce_k=5)
    loader = ImageNetLoader(train, 6, needs={INDEX, CONTRAST_INDEX}, negatives=negatives, seed=3, num_workers=0)
    first = [b.index for b in loader]
    state = loader.state_dict()
    full = list(loader)
    assert not all(torch.equal(p, q.index) for p, q in zip(first, full))
    decoded = []
    original = imagenet.decode_rgb
    monkeypatch.setattr(imagenet, "decode_rgb", lambda path: decoded.append(path) or original(path))
    fresh = ImageNetLoader(train, 6, needs={INDEX, CONTRAST_INDEX}, negatives=negatives, seed=99, num_workers=0)
    fresh.load_state_dict(state)
    resumed = list(fresh.iterate(skip=2))
    assert len(decoded) == 12  # only the two batches yielded were read
    assert len(resumed) == 2
    for p, q in zip(resumed, full[2:]):
        assert torch.equal(p.images, q.images) and torch.equal(p.labels, q.labels)
        assert torch.equal(p.index, q.index) and torch.equal(p.contrast_index, q.contrast_index)
        assert p.contrast_index.shape == (6, 6) and torch.equal(p.contrast_index[:, 0], p.index)


def test_two_ranks_slice_one_global_batch(scanned):
    _, train, val = scanned
    one = [b.index for b in ImageNetLoader(train, 10, needs={INDEX}, seed=1, num_workers=0)]
    ranks = [list(ImageNetLoader(train, 10, needs={INDEX}, seed=1, num_workers=0, rank=r, world_size=2))
             for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(one)
    for step, index in enumerate(one):
        assert torch.equal(torch.cat([ranks[0][step].index, ranks[1][step].index]), index)
        assert len(ranks[0][step]) == len(ranks[1][step]) == len(index) // 2
    assert not torch.equal(ranks[0][0].images[:1], ranks[1][0].images[:1])
    # evaluation: the ranks' images are exactly the one-process images, in order
    whole = torch.cat([b.images for b in ImageNetLoader(val, 4, train=False, num_workers=0)])
    parts = [[b.images for b in ImageNetLoader(val, 4, train=False, num_workers=0, rank=r, world_size=2)]
             for r in range(2)]
    assert torch.equal(torch.cat([torch.cat([a, b]) for a, b in zip(*parts)]), whole)


def test_a_last_batch_smaller_than_the_ranks_is_topped_up_or_left_empty_in_evaluation(scanned):
    _, train, val = scanned
    planners = [EpochPlanner(23, 22, True, seed=0, rank=r, world_size=2) for r in range(2)]
    one = EpochPlanner(23, 22, True, seed=0, rank=0, world_size=1)
    order = torch.cat([index for index, _ in one.epoch()[0]])
    (p0, _), (p1, _) = planners[0].epoch(), planners[1].epoch()
    assert len(p0[1][0]) == len(p1[1][0]) == 1  # the last global batch held one sample
    assert torch.equal(p1[1][0], order[:1])     # topped up from the start of the epoch's order
    ranks = [list(ImageNetLoader(val[:7], 6, train=False, needs={INDEX}, num_workers=0, rank=r, world_size=2))
             for r in range(2)]
    assert [len(b) for b in ranks[0]] == [3, 1] and [len(b) for b in ranks[1]] == [3, 0]
    assert ranks[1][1].images.shape == (0, 3, 224, 224) and ranks[1][1].labels.shape == (0,)


def test_unsharded_is_the_one_process_loader(scanned):
    _, train, _ = scanned
    shard = ImageNetLoader(train, 10, needs={INDEX}, seed=4, num_workers=0, rank=1, world_size=2)
    whole = shard.unsharded()
    assert whole.world_size == 1 and whole.rank == 0 and len(whole) == len(shard)
    want = list(ImageNetLoader(train, 10, needs={INDEX}, seed=4, num_workers=0))
    assert all(torch.equal(p.images, q.images) for p, q in zip(whole, want))


def test_evaluation_matches_the_reference_transforms(scanned):
    """Resize(256) + CenterCrop(224) + ToTensor + Normalize on PIL images, within one grey level."""
    from PIL import Image
    from torchvision import transforms as T
    _, _, val = scanned
    ref = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    want = torch.stack([ref(Image.open(p).convert("RGB")) for p, _ in val])
    got = torch.cat([b.images for b in ImageNetLoader(val, 3, train=False, num_workers=0)])
    assert (got - want).abs().max() <= 1.01 / 255 / min(IMAGENET_STD)


def test_random_resized_crop_parameters_follow_torchvision():
    """The same algorithm as torchvision's get_params (its 10 tries bias the area below U(0.08, 1)'s
    mean), drawing from a seeded random.Random: compared by the distribution of 4,000 draws."""
    from torchvision.transforms import RandomResizedCrop
    rng = random.Random(0)
    mine = [random_resized_crop_params(300, 400, rng) for _ in range(4000)]
    torch.manual_seed(0)
    theirs = [RandomResizedCrop.get_params(torch.empty(3, 300, 400), [0.08, 1.0], [3 / 4, 4 / 3])
              for _ in range(4000)]
    for top, left, h, w in mine:
        assert 0 <= top and top + h <= 300 and 0 <= left and left + w <= 400
        assert 0.08 * 120000 - 400 <= h * w <= 120000 and 3 / 4 - 0.02 <= w / h <= 4 / 3 + 0.02
    for stat in (lambda c: c[2] * c[3] / 120000, lambda c: c[3] / c[2], lambda c: c[0] / 300, lambda c: c[1] / 400):
        a, b = torch.tensor([stat(c) for c in mine]), torch.tensor([stat(c) for c in theirs])
        assert abs(a.mean() - b.mean()) < 0.02 and abs(a.std() - b.std()) < 0.02
    assert random_resized_crop_params(10, 100, random.Random(0)) == (0, 43, 10, 13)  # fallback: centre, ratio 4/3


def test_an_undecodable_file_is_a_one_line_error_also_from_a_worker(tmp_path):
    root = write_generated_imagenet(str(tmp_path / "data"), classes=2, per_class=2, val_per_class=1, size=(8, 8))
    bad = os.path.join(root, "train", "n00000001", "broken.JPEG")
    with open(bad, "wb") as fh:
        fh.write(b"not a JPEG")
    _, train, _ = scan_imagenet(root, cache_dir=False)
    for workers in (0, 1):
        with pytest.raises(UsageError) as e:
            list(ImageNetLoader(train, 5, num_workers=workers))
        assert one_line_error(e).startswith(f"cannot decode '{bad}'")


def test_bad_settings(scanned):
    _, train, _ = scanned
    with pytest.raises(ValueError):
        ImageNetLoader(train, 0, num_workers=0)
    with pytest.raises(ValueError):
        ImageNetLoader(train, 4, needs={VIEWS}, num_workers=0)
    with pytest.raises(ValueError):
        ImageNetLoader(train, 4, needs={CONTRAST_INDEX}, num_workers=0)
    with pytest.raises(UsageError) as e:
        ImageNetLoader(train, 7, num_workers=0, rank=0, world_size=2)
    assert "multiple of 2" in one_line_error(e)


# -- PACKD's views ----------------------------------------------------------------------
def views_loader(train, batch_size=10, seed=0, mixup_num=1, mixup_ratio=0.1, mixup_rotate=3, **kw):
    views = MixedViews(torch.tensor([label for _, label in train]), mixup_num, mixup_ratio, mixup_rotate)
    return ImageNetLoader(train, batch_size, needs={INDEX, VIEWS}, views=views, seed=seed,
                          num_workers=kw.pop("num_workers", 0), **kw)


def expected_views(loader, part):
    """The views of one planned step rebuilt from the samples: decode, rotate, crop, normalise, mix."""
    from dataset.imagenet import _Samples
    samples = _Samples(loader.files, train=True)
    index, seeds, mix = part
    crops = torch.stack([samples[(i, s, p, t)] for i, s, p, t in zip(index.tolist(), seeds.tolist(),
                                                                     mix["partners"].tolist(),
                                                                     mix["turns"].tolist())])
    x = normalize_on_device(crops.flatten(0, 1)).view(crops.shape)
    w = mix["lam"].view(*mix["lam"].shape, 1, 1, 1)
    return torch.cat([x[:, :1], w * x[:, :1] + (1 - w) * x[:, 1:]], dim=1)


def test_views_shape_plain_view_partners_rotations_and_lambda(scanned):
    train = scanned[1][::2]  # 4 classes x 3 images
    labels = torch.tensor([label for _, label in train])
    loader = views_loader(train, 5, mixup_num=2)
    twin = views_loader(train, 5, mixup_num=2)  # the same draws, planned without decoding
    plain = ImageNetLoader(train, 5, needs={INDEX}, seed=0, num_workers=0)
    parts, _ = twin.plan()
    for b, p, part in zip(loader, plain, parts):
        assert b.views.shape == (len(b), 3, 3, 224, 224) and b.views.dtype == torch.float32
        assert torch.equal(b.images, b.views[:, 0])
        assert torch.equal(b.images, p.images) and torch.equal(b.index, p.index)  # view 0: the plain batch
        assert torch.equal(part[0], b.index)
        assert torch.allclose(b.views, expected_views(loader, part), atol=1e-5)
    # the views draw from a generator of their own: order and crops stay the plain loader's every epoch
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in loader.state_dict().items() if k in plain.state_dict())
    turns, lams = [], []
    for epoch in range(4):
        for index, _, mix in (parts if epoch == 0 else twin.plan()[0]):
            assert torch.equal(labels[mix["partners"]], labels[index].unsqueeze(1).expand(-1, 2))  # same class
            turns.append(mix["turns"].flatten())
            lams.append(mix["lam"].flatten())
    turns, lams = torch.cat(turns), torch.cat(lams)
    assert set(turns.tolist()) == {0, 1, 2, 3}  # 96 draws
    assert 0.1 <= lams.min() and lams.max() <= 1.0 and lams.min() < 0.2 and lams.max() > 0.9


def test_views_flags_upright_partners_and_partner_only(scanned):
    _, train, _ = scanned
    parts, _ = views_loader(train, 24, mixup_num=1, mixup_ratio=0.0, mixup_rotate=0).plan()
    assert (parts[0][2]["turns"] == 0).all() and parts[0][2]["lam"].min() < 0.1
    loader = views_loader(train, 6, mixup_num=1, mixup_rotate=-2)  # lambda 0: the partner's crop alone
    batch = next(iter(loader))
    parts, _ = views_loader(train, 6, mixup_num=1, mixup_rotate=-2).plan()
    assert (parts[0][2]["lam"] == 0).all()
    assert torch.equal(batch.views, expected_views(loader, parts[0]))
    with pytest.raises(UsageError):
        MixedViews(torch.zeros(3, dtype=torch.long), mixup_num=-1)


def test_views_resume_workers_and_ranks(scanned):
    _, train, _ = scanned
    loader = views_loader(train, 8, seed=3)
    state = loader.state_dict()
    assert "view_generator" in state
    full = list(loader)
    fresh = views_loader(train, 8, seed=99)
    fresh.load_state_dict(state)
    resumed = list(fresh.iterate(skip=1))
    assert len(resumed) == 2
    for p, q in zip(resumed, full[1:]):
        assert torch.equal(p.views, q.views) and torch.equal(p.labels, q.labels)
    workers = views_loader(train, 8, seed=3, num_workers=2, prefetch_factor=2)
    assert all(torch.equal(p.views, q.views) for p, q in zip(workers, full))  # the workers change nothing
    ranks = [list(views_loader(train, 8, seed=3, rank=r, world_size=2)) for r in range(2)]
    for step, whole in enumerate(full):
        assert torch.equal(torch.cat([ranks[0][step].index, ranks[1][step].index]), whole.index)
        assert ranks[0][step].views.shape == (4, 2, 3, 224, 224)
    assert views_loader(train, 8, seed=3, rank=1, world_size=2).unsharded().views is not None


@pytest.mark.parametrize("height, width", [(5, 8), (8, 5), (6, 9), (9, 6), (7, 7), (7, 10), (1, 3)])
def test_rotation_is_pils_rotate(height, width):
    """The authors rotate the decoded PIL image: Image.rotate(k * 90), same canvas, black corners."""
    from PIL import Image
    array = np.random.default_rng(height * width).integers(1, 256, size=(height, width, 3), dtype=np.uint8)
    image = torch.from_numpy(array).permute(2, 0, 1)
    for turns in range(4):
        want = torch.from_numpy(np.array(Image.fromarray(array).rotate(90 * turns))).permute(2, 0, 1)
        assert torch.equal(rotate_like_pil(image, turns), want), turns


def test_views_need_the_views_and_the_dali_path_refuses_them(scanned, tmp_path):
    from types import SimpleNamespace

    from dataset import make_imagenet_loaders
    _, train, val = scanned
    with pytest.raises(ValueError):
        ImageNetLoader(train, 4, needs={VIEWS}, num_workers=0)
    opt = SimpleNamespace(loader="dali", seed=0, num_workers=0, batch_size=4, nce_k=4, mode="exact", mixup_num=1,
                          mixup_ratio=0.1, mixup_rotate=3)
    data = {"train": train, "test": val}
    with pytest.raises(UsageError) as e:
        make_imagenet_loaders(opt, data, torch.device("cpu"), {INDEX, CONTRAST_INDEX, VIEWS}, 0, 1)
    assert one_line_error(e).startswith("--loader dali builds no PACKD views")
    opt.loader = "auto"
    train_loader, test_loader = make_imagenet_loaders(opt, data, torch.device("cpu"), {INDEX, CONTRAST_INDEX, VIEWS},
                                                      0, 1)
    assert isinstance(train_loader, ImageNetLoader) and train_loader.views.num_views == 2
    assert test_loader.views is None


# -- the DALI path -------------------------------------------------------------------
def test_dali_missing_is_a_one_line_usage_error(scanned, monkeypatch):
    from dataset.imagenet_dali import DALIImageNetLoader
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)
    with pytest.raises(UsageError) as e:
        DALIImageNetLoader(scanned[1], 4)
    assert one_line_error(e).endswith("pip install -r requirements-imagenet.txt, or --loader torch")


@pytest.fixture
def dali():
    """DALI, or a skip naming how to install it; where the test run installed it (CI sets
    KD_TESTS_REQUIRE_DALI=1), its absence is a failure, never a skip."""
    if os.environ.get("KD_TESTS_REQUIRE_DALI") == "1":
        import nvidia.dali
        return nvidia.dali
    return pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed (pip install -r "
                               "requirements-imagenet.txt); the DataLoader path is tested without it")


def test_dali_cpu_training_batches_follow_the_planned_order(dali, scanned):
    from dataset.imagenet_dali import DALIImageNetLoader, build_pipeline
    _, train, _ = scanned
    loader = DALIImageNetLoader(train, 10, needs={INDEX}, seed=0, num_workers=2)
    batches = list(loader)
    want = [b.index for b in ImageNetLoader(train, 10, needs={INDEX}, seed=0, num_workers=0)]
    assert [len(b) for b in batches] == [10, 10, 4] and len(loader) == 3
    labels = torch.tensor([label for _, label in train])
    for b, index in zip(batches, want):
        assert torch.equal(b.index, index) and torch.equal(b.labels, labels[index])
        assert b.images.shape == (len(b), 3, 224, 224) and b.images.dtype == torch.float32
        assert LOW - 1e-3 <= b.images.min() and b.images.max() <= HIGH + 1e-3
    images = torch.cat([b.images for b in batches])
    assert abs(images.mean()) < 1.5 and 0.3 < images.std() < 2
    # the reader's own labels: the files come out in the order they were listed (last step padded)
    order = torch.cat(want)
    pipe = build_pipeline([train[i][0] for i in order.tolist()], labels[order].tolist(), 10, True, seed=0)
    read = [torch.from_numpy(np.array(pipe.run()[1].as_tensor())).view(-1) for _ in range(3)]
    assert torch.equal(torch.cat(read)[:24], labels[order].int())


def test_dali_cpu_evaluation_matches_the_dataloader_path(dali, scanned):
    from dataset.imagenet_dali import DALIImageNetLoader
    _, _, val = scanned
    got = list(DALIImageNetLoader(val, 3, train=False, num_workers=1))
    want = list(ImageNetLoader(val, 3, train=False, num_workers=0))
    assert [len(b) for b in got] == [3, 3, 2]
    for p, q in zip(got, want):
        assert torch.equal(p.labels, q.labels)
        assert (p.images - q.images).abs().mean() < 0.02  # another resize kernel, the same crop


def test_dali_ranks_resume_and_seeds(dali, scanned):
    from dataset.imagenet_dali import DALIImageNetLoader
    _, train, _ = scanned
    one = [b.index for b in ImageNetLoader(train, 8, needs={INDEX}, seed=2, num_workers=0)]
    ranks = [list(DALIImageNetLoader(train, 8, needs={INDEX}, seed=2, num_workers=1, rank=r, world_size=2))
             for r in range(2)]
    for step, index in enumerate(one):
        assert torch.equal(torch.cat([ranks[0][step].index, ranks[1][step].index]), index)
    loader = DALIImageNetLoader(train, 8, needs={INDEX}, seed=2, num_workers=1)
    state = loader.state_dict()
    full = list(loader)
    again = DALIImageNetLoader(train, 8, needs={INDEX}, seed=2, num_workers=1)
    assert all(torch.equal(p.images, q.images) for p, q in zip(again, full))  # seeded: the same epoch
    again.load_state_dict(state)
    resumed = list(again.iterate(skip=1))
    assert [b.index.tolist() for b in resumed] == [b.index.tolist() for b in full[1:]]  # the order, not the crops


def test_dali_refuses_views_in_one_line(dali, scanned):
    from dataset.imagenet_dali import DALIImageNetLoader
    with pytest.raises(UsageError) as e:
        DALIImageNetLoader(scanned[1], 4, needs={VIEWS})
    assert one_line_error(e).startswith("--loader dali builds no PACKD views")
