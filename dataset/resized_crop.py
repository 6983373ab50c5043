"""Resize and RandomResizedCrop of uint8 image batches on the device, Pillow's bilinear filter
pixel for pixel, and `Transfer32`, the linear probe's 32 x 32 transforms built from them.

The PACKD authors' probe (eval_rep.py) brings STL-10 / Tiny-ImageNet images to 32 x 32 with
torchvision's transforms on PIL images, one image at a time in DataLoader workers. Here a whole
batch is cropped, resized and flipped with a few batched matrix products where the data lives,
and every output pixel equals Pillow's (tests/dataset/test_resized_crop.py compares them).
"""
import math

import torch

SIZE = 32                                   # the CIFAR models' input
CROP_SCALE = (0.08, 1.0)                    # torchvision RandomResizedCrop defaults
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
CROP_ATTEMPTS = 10

# ------------------------------------------------------------------------------------------
# Pillow's bilinear resampling, batched
# ------------------------------------------------------------------------------------------
PRECISION_BITS = 22  # Pillow's fixed-point coefficients for 8-bit images (32 - 8 - 2)


def pil_bilinear_weights(in_size, out_size, start, length):
    """(N, out_size, in_size) float64: Pillow's fixed-point bilinear coefficients (integers,
    scaled by 2**22) that resample the span [start, start + length) of an axis of `in_size`
    pixels to `out_size` pixels, zero outside the span.

    As Pillow's `precompute_coeffs` for a crop then `resize` (what torchvision does for PIL
    images): scale = length / out, support = max(scale, 1), a triangle filter of that width
    centred at (i + 0.5) * scale, normalised, then rounded to 22-bit fixed point.
    """
    f64 = torch.float64
    length = length.to(f64).view(-1, 1, 1)
    scale = length / out_size
    filterscale = scale.clamp(min=1.0)
    center = (torch.arange(out_size, device=start.device, dtype=f64).view(1, -1, 1) + 0.5) * scale
    xmin = torch.floor(center - filterscale + 0.5).clamp(min=0)
    xmax = torch.minimum(torch.floor(center + filterscale + 0.5), length)
    x = torch.arange(in_size, device=start.device, dtype=f64).view(1, 1, -1) - start.to(f64).view(-1, 1, 1)
    weights = (1.0 - ((x - center + 0.5) * (1.0 / filterscale)).abs()).clamp(min=0.0)
    weights = weights * ((x >= xmin) & (x < xmax))
    weights = weights / weights.sum(-1, keepdim=True)
    return torch.floor(weights * 2.0 ** PRECISION_BITS + 0.5)


_WEIGHT_TABLES = {}


def placed_weights(in_size, out_size, start, length):
    """`pil_bilinear_weights` for many spans, from a table of every span length computed once per
    axis size and device: the weights of a span of length L starting at 0, shifted to `start`."""
    key = (in_size, out_size, str(start.device))
    if key not in _WEIGHT_TABLES:
        lengths = torch.arange(in_size + 1, device=start.device).clamp(min=1)
        _WEIGHT_TABLES[key] = pil_bilinear_weights(in_size, out_size, torch.zeros_like(lengths), lengths)
    table = _WEIGHT_TABLES[key].index_select(0, length)                        # (N, out, in), span at 0
    shift = torch.arange(in_size, device=start.device).view(1, -1) - start.view(-1, 1)  # (N, in)
    placed = table.gather(2, shift.clamp(min=0).unsqueeze(1).expand(-1, out_size, -1))
    return placed.mul_((shift >= 0).unsqueeze(1))


def _apply_pass(products):
    """Fixed-point sums -> uint8 values (as float64), Pillow's rounding and clipping, in place."""
    return products.add_(2.0 ** (PRECISION_BITS - 1)).div_(2.0 ** PRECISION_BITS).floor_().clamp_(0, 255)


def resized_crop(images, top, left, height, width, out_h=SIZE, out_w=SIZE, vertical_first=None):
    """Crop box (top, left, height, width) of each uint8 image (N, C, H, W), resized to out_h x out_w
    with Pillow's bilinear filter: one pass along each axis, the first rounded to 8 bits, as
    Pillow's `ImagingResample`. Float64 products of integers are exact, so each image is Pillow's
    pixel for pixel. Returns uint8 (N, C, out_h, out_w).

    Pillow up to 12 (the PACKD authors' time) always resamples horizontally first, which is the
    default here. Pillow 13 (python-pillow/Pillow#9549) takes the vertical pass first when the
    height shrinks much more than the width, which moves some pixels by one level;
    `vertical_first` (bool (N,)) selects that order per image (tests/dataset/test_resized_crop.py
    checks both orders against the installed Pillow).
    """
    n, c, h, w = images.shape
    wx = placed_weights(w, out_w, left, width).transpose(1, 2)   # (N, W, out_w)
    wy = placed_weights(h, out_h, top, height)                   # (N, out_h, H)
    x = images.to(torch.float64)
    rows = _apply_pass(torch.bmm(x.view(n, c * h, w), wx))      # (N, C * H, out_w)
    rows = rows.view(n, c, h, out_w).transpose(1, 2).reshape(n, h, c * out_w)
    out = _apply_pass(torch.bmm(wy, rows)).view(n, out_h, c, out_w).transpose(1, 2)  # (N, C, out_h, out_w)
    if vertical_first is not None and bool(vertical_first.any()):
        v = vertical_first.nonzero().squeeze(1)
        cols = _apply_pass(torch.matmul(wy[v].unsqueeze(1), x[v]))                  # (V, C, out_h, W)
        out[v] = _apply_pass(torch.bmm(cols.view(len(v), c * out_h, w), wx[v]).view(len(v), c, out_h, out_w))
    return out.to(torch.uint8).contiguous()


# ------------------------------------------------------------------------------------------
# torchvision's RandomResizedCrop and Resize on top of it
# ------------------------------------------------------------------------------------------
def random_resized_crop_params(n, height, width, generator, device, scale=CROP_SCALE, ratio=CROP_RATIO,
                               attempts=CROP_ATTEMPTS):
    """torchvision's RandomResizedCrop.get_params for n images at once -> (top, left, h, w) int64 (n,).

    Per image: up to `attempts` draws of an area fraction in `scale` and a log-uniform aspect
    ratio in `ratio`; the first whose rounded box fits is used, at a uniform position; when
    none fits, the central crop (the whole image for square images)."""
    f64 = torch.float64
    area = height * width
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    target = area * (scale[0] + (scale[1] - scale[0]) * torch.rand(n, attempts, generator=generator, device=device,
                                                                     dtype=f64))
    aspect = torch.exp(lo + (hi - lo) * torch.rand(n, attempts, generator=generator, device=device, dtype=f64))
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)
    found = fits.any(dim=1)
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = int(round(height * max(ratio))), height
    else:
        fw, fh = width, height
    w = torch.where(found, w.gather(1, first).squeeze(1), torch.full_like(w[:, 0], fw))
    h = torch.where(found, h.gather(1, first).squeeze(1), torch.full_like(h[:, 0], fh))
    u = torch.rand(n, 2, generator=generator, device=device, dtype=f64)
    top = torch.where(found, torch.floor(u[:, 0] * (height - h + 1)), torch.floor((height - h) / 2))
    left = torch.where(found, torch.floor(u[:, 1] * (width - w + 1)), torch.floor((width - w) / 2))
    return top.long(), left.long(), h.long(), w.long()


def resize_output_size(height, width, size=SIZE):
    """torchvision's Resize(size) for an int size: the shorter side becomes `size`."""
    short, long = min(height, width), max(height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if height <= width else (new_long, new_short)


class Transfer32:
    """The authors' transforms on uint8 batches on the device, normalised with the data set's statistics."""

    def __init__(self, mean, std, device):
        self.mean = torch.tensor(mean, device=device, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device, dtype=torch.float32).view(1, 3, 1, 1)

    def normalize(self, images):
        """ToTensor + Normalize: uint8 -> [0, 1] -> (x - mean) / std."""
        return (images.to(torch.float32).div_(255.0) - self.mean) / self.std

    def train(self, images, generator):
        """RandomResizedCrop(32) + RandomHorizontalFlip + normalise."""
        n, _, h, w = images.shape
        top, left, ch, cw = random_resized_crop_params(n, h, w, generator, images.device)
        out = resized_crop(images, top, left, ch, cw)
        flip = torch.rand(n, generator=generator, device=images.device) < 0.5
        out = torch.where(flip.view(n, 1, 1, 1), out.flip(-1), out)
        return self.normalize(out)

    def test(self, images):
        """Resize(32) + normalise."""
        n, _, h, w = images.shape
        oh, ow = resize_output_size(h, w)
        zeros = torch.zeros(n, dtype=torch.long, device=images.device)
        out = resized_crop(images, zeros, zeros, torch.full_like(zeros, h), torch.full_like(zeros, w), oh, ow)
        return self.normalize(out)

