import torch

from dataset.augment import CIFAR100_MEAN, CIFAR100_STD, augment, crop_flip, crop_flip_params, normalize


def test_crop_is_a_window_of_the_zero_padded_image():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, 256, (64, 3, 32, 32), dtype=torch.uint8)  # no zeros: padding is recognisable
    offsets, flips = crop_flip_params(64, g, x.device)
    assert offsets.min() >= 0 and offsets.max() <= 8
    out = crop_flip(x, offsets, flips)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(64):
        dy, dx = offsets[i].tolist()
        want = padded[i, :, dy:dy + 32, dx:dx + 32]
        want = want.flip(-1) if flips[i] else want
        assert torch.equal(out[i], want)


def test_offsets_and_flips_cover_their_range():
    g = torch.Generator().manual_seed(1)
    offsets, flips = crop_flip_params(4000, g, torch.device("cpu"))
    assert set(offsets.flatten().tolist()) == set(range(9))
    assert 0.45 < flips.float().mean() < 0.55


def test_normalisation_uses_cifar100_statistics():
    x = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    x[0, :, 0, 0] = 255
    y = normalize(x)
    for c in range(3):
        assert torch.isclose(y[0, c, 0, 0], torch.tensor((1 - CIFAR100_MEAN[c]) / CIFAR100_STD[c]))
        assert torch.isclose(y[0, c, 1, 1], torch.tensor(-CIFAR100_MEAN[c] / CIFAR100_STD[c]))


def test_augment_is_seeded():
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    a = augment(x, torch.Generator().manual_seed(5))
    b = augment(x, torch.Generator().manual_seed(5))
    c = augment(x, torch.Generator().manual_seed(6))
    assert a.dtype == torch.float32 and torch.equal(a, b) and not torch.equal(a, c)
