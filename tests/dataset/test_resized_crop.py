"""Pillow's bilinear resized crops, batched on the device (dataset/resized_crop.py), against
torchvision's transforms on PIL images (what the PACKD authors' eval_rep_base.py runs), and the
linear probe's 32 x 32 transforms built from them."""
import numpy as np
import PIL
import pytest
import torch
from PIL import Image

from dataset.resized_crop import Transfer32, random_resized_crop_params, resized_crop
from dataset.transfer_sets import DATASETS


def pillow_resamples_vertically_first(h, w, out=32):
    """The pass order the installed Pillow takes for an h x w crop resized to out x out. Up to
    Pillow 12 always horizontal first; Pillow 13 (python-pillow/Pillow#9549) goes vertical first
    when the height shrinks much more than the width: measured on every crop of up to 96 x 96
    resized to 32 x 32, exactly when h > out and 2 w < h + out."""
    if int(PIL.__version__.split(".")[0]) < 13:
        return torch.zeros_like(h, dtype=torch.bool)
    return (h > out) & (2 * w < h + out)


@pytest.mark.parametrize("size", [96, 64])
def test_random_resized_crops_are_pillows_pixel_for_pixel(size):
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode
    g = np.random.default_rng(size)
    images = g.integers(0, 256, size=(60, 3, size, size), dtype=np.uint8)
    images[:30] = np.clip(np.cumsum(g.integers(-20, 21, size=(30, 3, size, size)), axis=-1) + 128, 0, 255)
    gen = torch.Generator().manual_seed(0)
    top, left, h, w = random_resized_crop_params(60, size, size, gen, "cpu")
    vertical = pillow_resamples_vertically_first(h, w)
    ours = resized_crop(torch.from_numpy(images), top, left, h, w, vertical_first=vertical)
    default = resized_crop(torch.from_numpy(images), top, left, h, w)
    for k in range(60):
        pil = Image.fromarray(images[k].transpose(1, 2, 0))
        ref = TF.resized_crop(pil, int(top[k]), int(left[k]), int(h[k]), int(w[k]), [32, 32],
                              InterpolationMode.BILINEAR)
        ref = torch.from_numpy(np.asarray(ref).transpose(2, 0, 1).copy())
        assert torch.equal(ours[k], ref), (k, h[k], w[k])
        # the authors' Pillow (horizontal pass first) differs by at most one level where the order differs
        assert (default[k].int() - ref.int()).abs().max() <= (1 if vertical[k] else 0)


@pytest.mark.parametrize("name,size", [("STL-10", 96), ("TinyImageNet200", 64)])
def test_test_transform_is_resize_totensor_normalize(name, size):
    import torchvision.transforms as T
    spec = DATASETS[name]
    reference = T.Compose([T.Resize(32), T.ToTensor(), T.Normalize(spec["mean"], spec["std"])])
    images = np.random.default_rng(1).integers(0, 256, size=(5, 3, size, size), dtype=np.uint8)
    ours = Transfer32(spec["mean"], spec["std"], "cpu").test(torch.from_numpy(images))
    for k in range(5):
        ref = reference(Image.fromarray(images[k].transpose(1, 2, 0)))
        assert torch.allclose(ours[k], ref, atol=1e-6)


def test_crop_parameters_follow_torchvisions_distribution():
    from torchvision.transforms import RandomResizedCrop
    n = 4000
    gen = torch.Generator().manual_seed(0)
    top, left, h, w = random_resized_crop_params(n, 96, 96, gen, "cpu")
    assert (h >= 1).all() and (w >= 1).all() and (top >= 0).all() and (left >= 0).all()
    assert (top + h <= 96).all() and (left + w <= 96).all()
    torch.manual_seed(0)
    ref = torch.tensor([RandomResizedCrop.get_params(torch.empty(3, 96, 96), [0.08, 1.0], [3 / 4, 4 / 3])
                        for _ in range(n)], dtype=torch.float64)
    ours = torch.stack([top, left, h, w], 1).double()
    assert torch.allclose(ours.mean(0), ref.mean(0), rtol=0.04)
    assert torch.allclose(ours.std(0), ref.std(0), rtol=0.06)
    # no attempt fits: the whole (square) image, as torchvision's fallback
    top, left, h, w = random_resized_crop_params(5, 96, 96, gen, "cpu", scale=(1.5, 2.0))
    assert h.tolist() == [96] * 5 and w.tolist() == [96] * 5 and top.tolist() == [0] * 5


def test_train_transform_flips_half_and_normalises():
    images = torch.zeros(400, 3, 96, 96, dtype=torch.uint8)
    images[:, :, :, :48] = 255  # left half white
    spec = DATASETS["STL-10"]
    out = Transfer32(spec["mean"], spec["std"], "cpu").train(images, torch.Generator().manual_seed(0))
    assert out.shape == (400, 3, 32, 32) and out.min() >= -1 and out.max() <= 1
    left_brighter = out[:, :, :, :16].mean(dim=(1, 2, 3)) > out[:, :, :, 16:].mean(dim=(1, 2, 3))
    right_brighter = out[:, :, :, :16].mean(dim=(1, 2, 3)) < out[:, :, :, 16:].mean(dim=(1, 2, 3))
    assert 0.3 < left_brighter.float().mean() and 0.3 < right_brighter.float().mean()
