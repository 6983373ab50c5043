import pytest
import torch

from dataset import load_cifar100
from dataset.loader import DeviceLoader, TorchLoader
from distiller_zoo.base import INDEX


@pytest.fixture(scope="module")
def train(tiny_cifar):
    return load_cifar100(str(tiny_cifar), download_if_missing=False)["train"]


def test_epoch_covers_every_sample_once_and_keeps_last_partial_batch(train):
    x, y = train
    loader = DeviceLoader(x, y, 64, needs={INDEX}, seed=0)
    batches = list(loader)
    assert len(loader) == len(batches) == 16  # ceil(1000 / 64)
    assert len(batches[-1]) == 1000 - 15 * 64
    seen = torch.cat([b.index for b in batches])
    assert sorted(seen.tolist()) == list(range(1000))
    for b in batches[:3]:
        assert torch.equal(b.labels, y[b.index])
        assert b.images.shape == (len(b), 3, 32, 32) and b.images.dtype == torch.float32


def test_seeded_order_and_augmentation(train):
    x, y = train
    a = [b.images for b in DeviceLoader(x, y, 100, seed=3)]
    b = [b.images for b in DeviceLoader(x, y, 100, seed=3)]
    c = [b.images for b in DeviceLoader(x, y, 100, seed=4)]
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_epochs_differ_and_state_restores_them(train):
    x, y = train
    loader = DeviceLoader(x, y, 100, needs={INDEX}, seed=0)
    first = [b.index for b in loader]
    state = loader.state_dict()
    second = [b.index for b in loader]
    assert not torch.equal(first[0], second[0])
    loader.load_state_dict(state)
    again = [b.index for b in loader]
    assert all(torch.equal(p, q) for p, q in zip(second, again))


def test_skip_replays_the_same_batches(train):
    x, y = train
    full = DeviceLoader(x, y, 100, needs={INDEX}, seed=7)
    part = DeviceLoader(x, y, 100, needs={INDEX}, seed=7)
    want = list(full)[4:]
    got = list(part.iterate(skip=4))
    assert len(got) == len(want)
    assert all(torch.equal(p.images, q.images) and torch.equal(p.index, q.index) for p, q in zip(got, want))


def test_test_split_is_normalised_only_and_in_order(tiny_cifar):
    x, y = load_cifar100(str(tiny_cifar), download_if_missing=False)["test"]
    a = [b.images for b in DeviceLoader(x, y, 64, train=False)]
    b = [b.images for b in DeviceLoader(x, y, 64, train=False, seed=9)]
    assert all(torch.equal(p, q) for p, q in zip(a, b))


def test_device_and_dataloader_paths_have_the_same_statistics(train):
    x, y = train
    dev = torch.cat([b.images for b in DeviceLoader(x, y, 250, seed=0)])
    tor = torch.cat([b.images for b in TorchLoader(x, y, 250, seed=0, num_workers=0)])
    assert dev.shape == tor.shape
    for dims in ((0, 2, 3),):
        assert torch.allclose(dev.mean(dims), tor.mean(dims), atol=0.05)
        assert torch.allclose(dev.std(dims), tor.std(dims), atol=0.05)


def test_bad_batch_size(train):
    with pytest.raises(ValueError):
        DeviceLoader(*train, 0)


def test_autoaugment_cutout_path_for_cifar100_aug(train):
    x, y = train
    torch.manual_seed(0)
    loader = TorchLoader(x[:64], y[:64], 32, seed=0, num_workers=0, autoaugment=True)
    batches = list(loader)
    assert len(batches) == 2 and batches[0].images.shape == (32, 3, 32, 32)
    assert torch.isfinite(batches[0].images).all()


def test_cutout_zeroes_a_clipped_square():
    from dataset.loader import Cutout
    torch.manual_seed(0)
    img = torch.ones(3, 32, 32)
    out = Cutout(16)(img)
    zeros = (out == 0).all(dim=0)
    assert 0 < int(zeros.sum()) <= 16 * 16
    rows, cols = zeros.any(dim=1).nonzero().flatten(), zeros.any(dim=0).nonzero().flatten()
    assert int(zeros.sum()) == len(rows) * len(cols)  # one axis-aligned rectangle
    assert torch.equal(img, torch.ones(3, 32, 32))  # input untouched


def test_test_batch_size_rule():
    """--test_batch_size wins; else --batch_size on the CPU and 500 on CUDA (fewer launches there)."""
    import argparse
    from dataset import CUDA_TEST_BATCH, make_loaders, test_batch_size
    opt = argparse.Namespace(batch_size=64, test_batch_size=None)
    assert test_batch_size(opt, "cpu") == 64
    assert test_batch_size(opt, "cuda") == test_batch_size(opt, torch.device("cuda:1")) == CUDA_TEST_BATCH == 500
    assert 10_000 % CUDA_TEST_BATCH == 0  # CIFAR-100's test set: no partial batch on CUDA
    opt.test_batch_size = 7
    assert test_batch_size(opt, "cpu") == test_batch_size(opt, "cuda") == 7
    x = torch.zeros(20, 3, 32, 32, dtype=torch.uint8)
    y = torch.arange(20) % 10
    opt = argparse.Namespace(batch_size=4, test_batch_size=8, loader="device", dataset="cifar100", seed=0)
    _, test = make_loaders(opt, {"train": (x, y), "test": (x, y)}, torch.device("cpu"))
    assert [len(b) for b in test] == [8, 8, 4]


def test_bad_test_batch_size_is_a_usage_error():
    from util.errors import UsageError
    import train_teacher
    with pytest.raises(UsageError, match="--test_batch_size must be positive"):
        train_teacher.parse_args(["--model", "resnet8", "--test_batch_size", "0"])


def test_cifar100_aug_applies_the_authors_policy_then_cutout_on_the_device():
    """DeviceLoader(autoaugment=True): crop/flip, CIFAR10Policy, Cutout 16, normalise, from its generator."""
    from dataset.augment import crop_flip, crop_flip_params, normalize
    from dataset.autoaugment import cifar10_policy, cutout
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.arange(40) % 4
    loader = DeviceLoader(images, labels, 16, train=True, seed=5, device="cpu", autoaugment=True)
    batch = next(iter(loader))
    ref = torch.Generator().manual_seed(5)
    order = torch.randperm(40, generator=ref)[:16]
    raw = images.index_select(0, order)
    offsets, flips = crop_flip_params(16, ref, raw.device)
    want = normalize(cutout(cifar10_policy(crop_flip(raw, offsets, flips), ref), ref, 16))
    assert torch.equal(batch.images, want)
    plain = next(iter(DeviceLoader(images, labels, 16, train=True, seed=5, device="cpu")))
    assert not torch.equal(plain.images, batch.images)
