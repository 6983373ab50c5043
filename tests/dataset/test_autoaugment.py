"""The batched AutoAugment policy and Cutout against the authors' PIL code.

The reference below is a per-image transcription of the ops of the authors' CIFAR10Policy
(SenseTime prototype's copy of DeepVoltaire/AutoAugment, fillcolor (128, 128, 128)), with the
random sign passed in instead of drawn by `random.choice([-1, 1])`. Every op is compared pixel
for pixel: the batched code reproduces Pillow's arithmetic exactly (see the module docstring).
"""
import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

import dataset.autoaugment as aa
from dataset.autoaugment import CUTOUT_LENGTH, apply_op, cifar10_policy, cutout

FILLCOLOR = (128, 128, 128)

# The authors' table: SubPolicy(p1, op1, magnitude_idx1, p2, op2, magnitude_idx2, fillcolor)
AUTHORS_CIFAR10_POLICY = [
    (0.1, "invert", 7, 0.2, "contrast", 6), (0.7, "rotate", 2, 0.3, "translateX", 9),
    (0.8, "sharpness", 1, 0.9, "sharpness", 3), (0.5, "shearY", 8, 0.7, "translateY", 9),
    (0.5, "autocontrast", 8, 0.9, "equalize", 2), (0.2, "shearY", 7, 0.3, "posterize", 7),
    (0.4, "color", 3, 0.6, "brightness", 7), (0.3, "sharpness", 9, 0.7, "brightness", 9),
    (0.6, "equalize", 5, 0.5, "equalize", 1), (0.6, "contrast", 7, 0.6, "sharpness", 5),
    (0.7, "color", 7, 0.5, "translateX", 8), (0.3, "equalize", 7, 0.4, "autocontrast", 8),
    (0.4, "translateY", 3, 0.2, "sharpness", 6), (0.9, "brightness", 6, 0.2, "color", 8),
    (0.5, "solarize", 2, 0.0, "invert", 3), (0.2, "equalize", 0, 0.6, "autocontrast", 0),
    (0.2, "equalize", 8, 0.8, "equalize", 4), (0.9, "color", 9, 0.6, "equalize", 6),
    (0.8, "autocontrast", 4, 0.2, "solarize", 8), (0.1, "brightness", 3, 0.7, "color", 0),
    (0.4, "solarize", 5, 0.9, "autocontrast", 3), (0.9, "translateY", 9, 0.7, "translateY", 9),
    (0.9, "autocontrast", 2, 0.8, "solarize", 3), (0.8, "equalize", 8, 0.1, "invert", 3),
    (0.7, "translateY", 9, 0.9, "autocontrast", 1),
]

AUTHORS_RANGES = {
    "shearX": np.linspace(0, 0.3, 10), "shearY": np.linspace(0, 0.3, 10),
    "translateX": np.linspace(0, 150 / 331, 10), "translateY": np.linspace(0, 150 / 331, 10),
    "rotate": np.linspace(0, 30, 10), "color": np.linspace(0.0, 0.9, 10),
    "posterize": np.round(np.linspace(8, 4, 10), 0).astype(int), "solarize": np.linspace(256, 0, 10),
    "contrast": np.linspace(0.0, 0.9, 10), "sharpness": np.linspace(0.0, 0.9, 10),
    "brightness": np.linspace(0.0, 0.9, 10), "autocontrast": [0] * 10, "equalize": [0] * 10, "invert": [0] * 10,
}


def _rotate_with_fill(img, magnitude):
    rot = img.convert("RGBA").rotate(magnitude)
    return Image.composite(rot, Image.new("RGBA", rot.size, (128,) * 4), rot).convert(img.mode)


def pil_op(img, op, magnitude, sign):
    """One op of the authors' SubPolicy on a PIL image; `sign` replaces random.choice([-1, 1]).
    (The authors' rotate takes no sign; `sign` is applied here to test apply_op's signed rotate.)"""
    w, h = img.size
    if op == "shearX":
        return img.transform(img.size, Image.AFFINE, (1, magnitude * sign, 0, 0, 1, 0), Image.BICUBIC,
                             fillcolor=FILLCOLOR)
    if op == "shearY":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, magnitude * sign, 1, 0), Image.BICUBIC,
                             fillcolor=FILLCOLOR)
    if op == "translateX":
        return img.transform(img.size, Image.AFFINE, (1, 0, magnitude * w * sign, 0, 1, 0), fillcolor=FILLCOLOR)
    if op == "translateY":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, magnitude * h * sign), fillcolor=FILLCOLOR)
    if op == "rotate":
        return _rotate_with_fill(img, magnitude * sign)
    if op == "color":
        return ImageEnhance.Color(img).enhance(1 + magnitude * sign)
    if op == "posterize":
        return ImageOps.posterize(img, int(magnitude))
    if op == "solarize":
        return ImageOps.solarize(img, magnitude)
    if op == "contrast":
        return ImageEnhance.Contrast(img).enhance(1 + magnitude * sign)
    if op == "sharpness":
        return ImageEnhance.Sharpness(img).enhance(1 + magnitude * sign)
    if op == "brightness":
        return ImageEnhance.Brightness(img).enhance(1 + magnitude * sign)
    if op == "autocontrast":
        return ImageOps.autocontrast(img)
    if op == "equalize":
        return ImageOps.equalize(img)
    if op == "invert":
        return ImageOps.invert(img)
    raise KeyError(op)


def to_pil(image):
    return Image.fromarray(image.permute(1, 2, 0).numpy())


def from_pil(img):
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)


def make_images():
    """Deterministic 32x32 test images: sine patterns, seeded noise, smooth noise, edge cases."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    images = []
    for k in range(6):
        channels = [127.5 + 127.5 * torch.sin(xx * (0.2 + 0.15 * k + 0.05 * c) + yy * (0.3 - 0.04 * k) + c)
                    for c in range(3)]
        images.append(torch.stack(channels).round().clamp(0, 255).to(torch.uint8))
    images += list(torch.randint(0, 256, (8, 3, 32, 32), generator=g, dtype=torch.uint8))
    smooth = torch.nn.functional.avg_pool2d(torch.randint(0, 256, (3, 3, 36, 36), generator=g).float(), 5, 1)
    images += list(smooth.round().to(torch.uint8))
    images.append(torch.full((3, 32, 32), 77, dtype=torch.uint8))  # one level: autocontrast/equalize identity
    images.append((100 + torch.randint(0, 3, (3, 32, 32), generator=g)).to(torch.uint8))  # narrow range
    two = torch.full((3, 32, 32), 10, dtype=torch.uint8)
    two[:, :3] = 200
    images.append(two)  # two levels
    bright = torch.randint(0, 256, (3, 32, 32), generator=g, dtype=torch.uint8)
    bright[:, :, :29] = 255
    images.append(bright)  # equalize: step == 0
    return torch.stack(images)


IMAGES = make_images()
PIL_IMAGES = [to_pil(im) for im in IMAGES]


@pytest.mark.parametrize("op", aa.OPS)
def test_each_op_matches_pil(op):
    # Exact for every op, including the geometric ones: the maps are built in Pillow's own
    # double / 16.16 fixed-point arithmetic, and the blends and filters are evaluated in float32
    # / float64 in Pillow's order of operations with its truncations.
    n = len(IMAGES)
    for magnitude_index in (0, 1, 5, 9):
        for sign in (-1, 1):
            magnitude = AUTHORS_RANGES[op][magnitude_index]
            want = torch.stack([from_pil(pil_op(img, op, magnitude, sign)) for img in PIL_IMAGES])
            got = apply_op(IMAGES, op, magnitude_index, torch.full((n,), sign))
            assert got.dtype == torch.uint8 and got.shape == IMAGES.shape
            diff = (got.int() - want.int()).abs()
            assert int(diff.max()) == 0, (f"{op} magnitude {magnitude_index} sign {sign}: "
                                          f"{int((diff > 0).sum())} values differ, max {int(diff.max())}")


def test_per_image_magnitudes_and_signs():
    n = len(IMAGES)
    mags = torch.arange(n) % 10
    signs = torch.where(torch.arange(n) % 3 == 0, 1, -1)
    for op in ("shearX", "translateY", "rotate", "contrast", "posterize", "solarize", "sharpness"):
        got = apply_op(IMAGES, op, mags, signs)
        want = torch.stack([from_pil(pil_op(img, op, AUTHORS_RANGES[op][int(m)], int(s)))
                            for img, m, s in zip(PIL_IMAGES, mags, signs)])
        assert torch.equal(got, want), op


def test_magnitude_tables_are_the_authors():
    for op, values in AUTHORS_RANGES.items():
        assert aa.MAGNITUDES[op] == list(values), op
    assert aa.MAGNITUDES["posterize"] == [8, 8, 7, 7, 6, 6, 5, 5, 4, 4]
    assert [tuple(p) for p in aa.CIFAR10_POLICY] == AUTHORS_CIFAR10_POLICY
    assert "rotate" not in aa.SIGNED_IN_POLICY  # the authors' rotate has no random sign


def test_fill_value_of_geometric_ops():
    x = torch.full((2, 3, 32, 32), 7, dtype=torch.uint8)
    out = apply_op(x, "translateX", 9, torch.tensor([1, -1]))
    # magnitude 150/331 * 32 = 14.5 px: the source is x + 15 (sign +1), so the last 15 columns are fill
    assert (out[0, :, :, 17:] == 128).all() and (out[0, :, :, :17] == 7).all()
    assert (out[1, :, :, :15] == 128).all() and (out[1, :, :, 15:] == 7).all()
    assert (apply_op(x, "translateX", 9, fill=0)[:, :, :, 17:] == 0).all()
    assert torch.equal(apply_op(x, "translateY", 9, fill=(1, 2, 3))[0, :, 31, 0], torch.tensor([1, 2, 3],
                                                                                                   dtype=torch.uint8))


def test_bad_input():
    x = IMAGES[:2]
    with pytest.raises(ValueError):
        apply_op(x, "mirror", 0)
    with pytest.raises(ValueError):
        apply_op(x, "rotate", 10)
    with pytest.raises(ValueError):
        apply_op(x.float(), "invert", 0)
    with pytest.raises(ValueError):
        apply_op(x, "rotate", 1, torch.ones(3))
    with pytest.raises(ValueError):
        cifar10_policy(x[:, :1], torch.Generator())
    with pytest.raises(ValueError):
        apply_op(x, "translateX", 3, fill=300)
    with pytest.raises(ValueError):
        cutout(x[0], torch.Generator())
    before = x.clone()
    apply_op(x, "equalize", 0)
    assert torch.equal(x, before)


def pil_policy(img, choice, draws, signs):
    """The authors' SubPolicy.__call__ with its random numbers given."""
    p1, op1, m1, p2, op2, m2 = AUTHORS_CIFAR10_POLICY[choice]
    if draws[0] < p1:
        img = pil_op(img, op1, AUTHORS_RANGES[op1][m1], signs[0] if op1 != "rotate" else 1)
    if draws[1] < p2:
        img = pil_op(img, op2, AUTHORS_RANGES[op2][m2], signs[1] if op2 != "rotate" else 1)
    return img


def policy_reference(images, generator):
    """The authors' policy per image (PIL), with the random numbers cifar10_policy draws."""
    choice, draws, signs = (t.cpu() for t in aa._policy_draws(len(images), generator, generator.device))
    return torch.stack([from_pil(pil_policy(to_pil(im), int(c), draws[:, i].tolist(), signs[:, i].tolist()))
                        for i, (im, c) in enumerate(zip(images.cpu(), choice))])


def test_policy_matches_the_authors_subpolicies_given_the_same_draws():
    x = IMAGES.repeat(8, 1, 1, 1)
    want = policy_reference(x, torch.Generator().manual_seed(3))
    got = cifar10_policy(x, torch.Generator().manual_seed(3))
    assert torch.equal(got, want)
    choice, draws, _ = aa._policy_draws(len(x), torch.Generator().manual_seed(3), x.device)
    fired = {AUTHORS_CIFAR10_POLICY[int(c)][1 + 3 * stage] for stage in (0, 1) for c, u in zip(choice, draws[stage])
             if u < AUTHORS_CIFAR10_POLICY[int(c)][3 * stage]}
    assert fired == set(aa.OPS) - {"shearX"}  # every op of the policy took part


def test_policy_selects_rows_with_where_as_on_cuda(monkeypatch):
    x = IMAGES.repeat(2, 1, 1, 1)
    gathered = cifar10_policy(x, torch.Generator().manual_seed(5))
    monkeypatch.setattr(aa, "_gather_rows", lambda device: False)
    assert torch.equal(cifar10_policy(x, torch.Generator().manual_seed(5)), gathered)


def test_policy_is_deterministic_and_keeps_shape_and_dtype():
    x = IMAGES.clone()
    a = cifar10_policy(x, torch.Generator().manual_seed(11))
    b = cifar10_policy(x, torch.Generator().manual_seed(11))
    c = cifar10_policy(x, torch.Generator().manual_seed(12))
    assert a.dtype == torch.uint8 and a.shape == x.shape and a.device == x.device
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(x, IMAGES)  # input untouched
    assert not torch.equal(a, x)


def test_subpolicies_are_uniform_and_ops_fire_with_their_probability():
    n = 50_000
    choice, draws, signs = aa._policy_draws(n, torch.Generator().manual_seed(0), torch.device("cpu"))
    counts = torch.bincount(choice, minlength=25)
    assert counts.numel() == 25 and counts.min() > 0.85 * n / 25 and counts.max() < 1.15 * n / 25
    chi2 = float(((counts - n / 25) ** 2 / (n / 25)).sum())
    assert chi2 < 80  # 24 degrees of freedom: mean 24, sd 7
    assert set(signs.unique().tolist()) == {-1, 1} and abs(float(signs.float().mean())) < 0.03
    for k, (p1, _, _, p2, _, _) in enumerate(AUTHORS_CIFAR10_POLICY):
        rows = choice == k
        for stage, p in ((0, p1), (1, p2)):
            assert abs(float((draws[stage][rows] < p).float().mean()) - p) < 0.05


def test_cutout_zeroes_one_clipped_square_per_image():
    n = 400
    x = torch.ones(n, 3, 32, 32)
    out = cutout(x, torch.Generator().manual_seed(0))
    assert CUTOUT_LENGTH == 16 and out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(x, torch.ones(n, 3, 32, 32))  # input untouched
    zero = out == 0
    assert torch.equal(zero, zero[:, :1].expand_as(zero))  # the same hole in every channel
    hole = zero[:, 0]
    full = 0
    for i in range(n):
        rows = hole[i].any(dim=1).nonzero().flatten()
        cols = hole[i].any(dim=0).nonzero().flatten()
        assert len(rows) > 0
        assert int(hole[i].sum()) == len(rows) * len(cols)  # one axis-aligned rectangle
        assert torch.equal(rows, torch.arange(rows[0], rows[-1] + 1))
        assert torch.equal(cols, torch.arange(cols[0], cols[-1] + 1))
        assert 8 <= len(rows) <= 16 and 8 <= len(cols) <= 16
        # a side shorter than 16 only where the square was clipped at the border
        assert len(rows) == 16 or rows[0] == 0 or rows[-1] == 31
        assert len(cols) == 16 or cols[0] == 0 or cols[-1] == 31
        full += len(rows) == 16 and len(cols) == 16
    assert 0.1 * n < full < 0.4 * n  # centre uniform over 32 x 32: P(no clipping) = (17/32)^2 = 0.28


def test_cutout_matches_the_authors_rule_given_the_centre():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(1)) + 0.5
    out = cutout(x, g)
    g = torch.Generator().manual_seed(4)
    cy, cx = torch.randint(32, (64, 1), generator=g), torch.randint(32, (64, 1), generator=g)
    for i in range(64):
        y, x0 = int(cy[i]), int(cx[i])
        mask = np.ones((32, 32), np.float32)
        mask[np.clip(y - 8, 0, 32):np.clip(y + 8, 0, 32), np.clip(x0 - 8, 0, 32):np.clip(x0 + 8, 0, 32)] = 0.0
        assert torch.equal(out[i], x[i] * torch.from_numpy(mask))


def test_cutout_on_uint8_equals_cutout_on_floats():
    x = IMAGES
    a = cutout(x, torch.Generator().manual_seed(2)).float() / 255
    b = cutout(x.float() / 255, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    dev = torch.device("cuda")
    x = IMAGES.to(dev)
    n = len(IMAGES)
    signs = torch.where(torch.arange(n) % 2 == 0, 1, -1)
    for op in aa.OPS:
        for m in (0, 5, 9):
            cpu = apply_op(IMAGES, op, m, signs)
            assert torch.equal(apply_op(x, op, m, signs.to(dev)).cpu(), cpu), (op, m)
    batch = x.repeat(4, 1, 1, 1)
    a = cifar10_policy(batch, torch.Generator(device=dev).manual_seed(0))
    assert a.device.type == "cuda" and a.dtype == torch.uint8
    assert torch.equal(a, cifar10_policy(batch, torch.Generator(device=dev).manual_seed(0)))
    assert torch.equal(a.cpu(), policy_reference(batch, torch.Generator(device=dev).manual_seed(0)))
    holes = cutout(torch.ones(64, 3, 32, 32, device=dev), torch.Generator(device=dev).manual_seed(0)) == 0
    assert holes.device.type == "cuda" and torch.equal(holes, holes[:, :1].expand_as(holes))
    per_image = holes[:, 0].sum(dim=(1, 2))
    assert bool((per_image >= 64).all()) and bool((per_image <= 256).all())
