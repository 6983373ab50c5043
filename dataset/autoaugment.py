"""The PACKD authors' CIFAR AutoAugment policy and Cutout, batched on the device.

For `--dataset cifar100_aug` the authors' teachers (`train_teacher.py`, smuelpeng/PACKD)
train on

    RandomCrop(32, padding=4) -> RandomHorizontalFlip -> CIFAR10Policy() -> ToTensor
    -> Cutout(n_holes=1, length=16) -> Normalize(CIFAR-100 mean, std)

with `CIFAR10Policy, Cutout` imported from a `dataset/auto_augmentation.py` that their
repository does not contain. The import path and the pair of names are those of SenseTime's
`prototype/data/auto_augmentation.py` (ModelTC/Prototype; the authors' data path is
`/mnt/lustre/share/prototype_cifar/`), a copy of DeepVoltaire/AutoAugment's `autoaugment.py`
plus the Cutout of uoguelph-mlrg/Cutout. We follow that copy:

- 25 sub-policies `(p1, op1, magnitude index 1, p2, op2, magnitude index 2)`, one drawn
  uniformly per image; op k is applied when U(0, 1) < p_k, op 1 before op 2. The table is
  `CIFAR10_POLICY` below. (Sub-policy 17 reads `(0.2, equalize, 8, 0.8, equalize, 4)` there,
  as in the AutoAugment paper and torchvision; some copies of DeepVoltaire's file have 0.6.)
- Magnitudes: `np.linspace` over 10 steps: shearX/Y 0..0.3, translateX/Y 0..150/331 of the
  image size (in pixels: magnitude * 32), rotate 0..30 degrees, color/contrast/sharpness/
  brightness 0..0.9 (enhance factor 1 +- magnitude), posterize bits round(linspace(8, 4)),
  solarize threshold linspace(256, 0); autocontrast, equalize, invert take none.
- Signs: shear, translate, color, contrast, sharpness and brightness draw a sign +-1
  (`random.choice([-1, 1])`). Rotate does NOT: the copy calls `rotate_with_fill(img,
  magnitude)`, always counter-clockwise (its signed variant is commented out), so
  `cifar10_policy` rotates by +magnitude; `apply_op` accepts a sign for rotate anyway.
- Fill: geometric ops fill with 128 (`fillcolor=(128, 128, 128)`; rotate composites onto a
  hard-coded 128 grey, the same thing here).

Every op reproduces Pillow's arithmetic (checked pixel for pixel against Pillow 13 in
tests/dataset/test_autoaugment.py):

- shearX/Y: `Image.transform(AFFINE, (1, m, 0, 0, 1, 0) / (1, 0, 0, m, 1, 0), BICUBIC)`.
  Pillow samples at pixel centres ((x + 0.5, y + 0.5) through the matrix), fills where the
  source point lies outside [0, W) x [0, H), clamps the 4x4 taps at the border, uses the
  cubic-convolution kernel with a = -1 evaluated in double precision, and truncates
  (not rounds) the result to uint8. A shear moves along one axis only, so the fraction along
  the other axis is exactly 0 and the 4x4 filter reduces exactly to its 4 taps along the
  shear axis, which is what is computed here (float64, Pillow's order of operations).
- translateX/Y: the same transform with NEAREST (Pillow's default): its scale-affine path,
  source pixel floor(x + 0.5 + shift), `shift = magnitude * 32 * sign`, fill outside.
- rotate: `img.convert("RGBA").rotate(angle)` (NEAREST, centre (16, 16), matrix rounded
  to 15 decimals) composited onto grey: Pillow's 16.16 fixed-point affine path, reproduced
  in integers.
- The maps of the geometric ops depend only on (op, magnitude index, sign, image size), so
  they are computed once per device on the host, in Pillow's own double/integer arithmetic,
  and applied to a batch with one gather.
- color/contrast/brightness/sharpness: `Image.blend(degenerate, img, factor)`, i.e.
  `float32(deg) + float32(factor) * float32(img - deg)`, clipped and truncated; degenerate =
  grey `L = (19595 R + 38470 G + 7471 B + 2^15) >> 16` (color), its mean rounded,
  `int(mean + 0.5)` (contrast), black (brightness), the SMOOTH 3x3 filter (kernel
  [1 1 1; 1 5 1; 1 1 1] / 13 in float32, summed row by row, +0.5 and truncated; border
  pixels unfiltered) (sharpness).
- posterize `x & ~(2^(8-bits) - 1)`; solarize `x if x < threshold else 255 - x`; invert
  `255 - x`; autocontrast and equalize per channel, as `ImageOps` (autocontrast: lut
  `int(x * 255/(hi-lo) - lo * 255/(hi-lo))`, identity when hi <= lo; equalize: step =
  (pixels - count of the top value) // 255, lut `(step // 2 + pixels below x) // step`
  clipped to 255, identity when one value or step == 0).

Remaining differences from the authors' pipeline:
- Randomness comes from one `torch.Generator` instead of Python's `random` in DataLoader
  workers (same distribution, other numbers); a sign is drawn for every image and op, used
  or not.
- Pillow version: the arithmetic is that of current Pillow (tested with 13.0). Older releases
  computed the grey level as `(299 R + 587 G + 114 B) / 1000` rounded down and summed the
  SMOOTH filter in another order and rounding; which Pillow the authors ran is not recorded,
  so against theirs color, contrast and sharpness may differ by 1 in some pixels.

Cutout (`cutout`): the authors' Cutout runs after ToTensor and before Normalize: a centre
drawn uniformly over all H x W pixels, the square [cy - 8, cy + 8) x [cx - 8, cx + 8) clipped
to the image, multiplied by 0 (so a hole is 0 in [0, 1] space, -mean/std after normalising;
at most 16 x 16, smaller at the border). Zeroing commutes with the /255 scaling, so `cutout`
may be applied to the uint8 batch or to [0, 1] floats, but before `normalize`.

The authors' order on the device: `crop_flip` (dataset/augment.py) -> `cifar10_policy` ->
`cutout` -> `normalize`; the policy sees the zero-padded crop, as theirs does.

Random numbers drawn, in order: `cifar10_policy` draws the sub-policy index (B,), then
U(0, 1) (2, B), then signs (2, B); `cutout` draws the centre rows (B,), then columns (B,).
"""
import math

import numpy as np
import torch

CUTOUT_LENGTH = 16
FILL = 128
NUM_MAGNITUDES = 10

# (p1, op1, magnitude index 1, p2, op2, magnitude index 2): the authors' CIFAR10Policy
CIFAR10_POLICY = (
    (0.1, "invert", 7, 0.2, "contrast", 6),
    (0.7, "rotate", 2, 0.3, "translateX", 9),
    (0.8, "sharpness", 1, 0.9, "sharpness", 3),
    (0.5, "shearY", 8, 0.7, "translateY", 9),
    (0.5, "autocontrast", 8, 0.9, "equalize", 2),
    (0.2, "shearY", 7, 0.3, "posterize", 7),
    (0.4, "color", 3, 0.6, "brightness", 7),
    (0.3, "sharpness", 9, 0.7, "brightness", 9),
    (0.6, "equalize", 5, 0.5, "equalize", 1),
    (0.6, "contrast", 7, 0.6, "sharpness", 5),
    (0.7, "color", 7, 0.5, "translateX", 8),
    (0.3, "equalize", 7, 0.4, "autocontrast", 8),
    (0.4, "translateY", 3, 0.2, "sharpness", 6),
    (0.9, "brightness", 6, 0.2, "color", 8),
    (0.5, "solarize", 2, 0.0, "invert", 3),
    (0.2, "equalize", 0, 0.6, "autocontrast", 0),
    (0.2, "equalize", 8, 0.8, "equalize", 4),
    (0.9, "color", 9, 0.6, "equalize", 6),
    (0.8, "autocontrast", 4, 0.2, "solarize", 8),
    (0.1, "brightness", 3, 0.7, "color", 0),
    (0.4, "solarize", 5, 0.9, "autocontrast", 3),
    (0.9, "translateY", 9, 0.7, "translateY", 9),
    (0.9, "autocontrast", 2, 0.8, "solarize", 3),
    (0.8, "equalize", 8, 0.1, "invert", 3),
    (0.7, "translateY", 9, 0.9, "autocontrast", 1),
)

# Magnitude of each op per index, as the authors' SubPolicy builds them (np.linspace, 10 steps)
MAGNITUDES = {
    "shearX": np.linspace(0, 0.3, 10).tolist(),
    "shearY": np.linspace(0, 0.3, 10).tolist(),
    "translateX": np.linspace(0, 150 / 331, 10).tolist(),
    "translateY": np.linspace(0, 150 / 331, 10).tolist(),
    "rotate": np.linspace(0, 30, 10).tolist(),
    "color": np.linspace(0.0, 0.9, 10).tolist(),
    "posterize": [int(v) for v in np.round(np.linspace(8, 4, 10), 0)],
    "solarize": np.linspace(256, 0, 10).tolist(),
    "contrast": np.linspace(0.0, 0.9, 10).tolist(),
    "sharpness": np.linspace(0.0, 0.9, 10).tolist(),
    "brightness": np.linspace(0.0, 0.9, 10).tolist(),
    "autocontrast": [0] * 10,
    "equalize": [0] * 10,
    "invert": [0] * 10,
}
OPS = tuple(MAGNITUDES)
# ops whose magnitude gets a random sign in the authors' policy (rotate: none, see above)
SIGNED_IN_POLICY = frozenset({"shearX", "shearY", "translateX", "translateY",
                              "color", "contrast", "sharpness", "brightness"})

_CACHE = {}


def _cached(key, build):
    if key not in _CACHE:
        _CACHE[key] = build()
    return _CACHE[key]


def _map_index(magnitude_index, signs):
    """Row of a per-(magnitude, sign) table: 2 * magnitude index + (sign > 0)."""
    return magnitude_index * 2 + (signs > 0).long()


# ---------------------------------------------------------------------------------------------
# geometric ops: maps computed on the host in Pillow's arithmetic, applied with a gather


def _coord(v):
    """Pillow's COORD: -1 below zero, else truncation."""
    return -1 if v < 0.0 else int(v)


def _translate_map(op, shift, h, w):
    """Source pixel (flat, -1 = fill) of each output pixel: Pillow's ImagingScaleAffine."""
    a = (1.0, 0.0, shift, 0.0, 1.0, 0.0) if op == "translateX" else (1.0, 0.0, 0.0, 0.0, 1.0, shift)
    cols, rows = [], []
    xo = a[2] + a[0] * 0.5
    for _ in range(w):
        cols.append(_coord(xo))
        xo += a[0]
    yo = a[5] + a[4] * 0.5
    for _ in range(h):
        rows.append(_coord(yo))
        yo += a[4]
    cols, rows = np.array(cols), np.array(rows)
    ok = ((rows >= 0) & (rows < h))[:, None] & ((cols >= 0) & (cols < w))[None, :]
    return np.where(ok, rows[:, None] * w + cols[None, :], -1).reshape(-1)


def _rotate_map(angle, h, w):
    """Source pixel (flat, -1 = fill): Image.rotate(angle) with NEAREST, i.e. Pillow's
    affine_fixed (16.16 fixed point) for the inverse matrix Image.rotate builds."""
    angle = angle % 360.0
    if angle == 0:
        return np.arange(h * w)
    if angle in (90.0, 180.0, 270.0):
        raise ValueError("rotations by multiples of 90 degrees are not AutoAugment magnitudes")
    cx, cy = w / 2, h / 2
    rad = -math.radians(angle)
    a = [round(math.cos(rad), 15), round(math.sin(rad), 15), 0.0,
         round(-math.sin(rad), 15), round(math.cos(rad), 15), 0.0]
    a[2], a[5] = a[0] * -cx + a[1] * -cy + a[2], a[3] * -cx + a[4] * -cy + a[5]
    a[2] += cx
    a[5] += cy

    def fix(v):
        return math.floor(v * 65536.0 + 0.5)

    a0, a1, a3, a4 = fix(a[0]), fix(a[1]), fix(a[3]), fix(a[4])
    a2 = fix(a[2] + a[0] * 0.5 + a[1] * 0.5)
    a5 = fix(a[5] + a[3] * 0.5 + a[4] * 0.5)
    y = np.arange(h, dtype=np.int64)[:, None]
    x = np.arange(w, dtype=np.int64)[None, :]
    xin = (a2 + y * a1 + x * a0) >> 16
    yin = (a5 + y * a4 + x * a3) >> 16
    ok = (xin >= 0) & (xin < w) & (yin >= 0) & (yin < h)
    return np.where(ok, yin * w + xin, -1).reshape(-1)


def _shear_map(op, m, h, w):
    """Pillow's generic affine transform with its bicubic filter, for a shear by m.

    Returns the 4 (clamped) flat source taps along the shear axis (4, HW), the fraction d along
    it and the in-image mask (HW,), per output pixel. The fraction across the axis is exactly 0, which
    makes Pillow's 4x4 filter return the 1-D cubic along the axis bit for bit.
    """
    a = (1.0, m, 0.0, 0.0, 1.0, 0.0) if op == "shearX" else (1.0, 0.0, 0.0, m, 1.0, 0.0)
    x = np.arange(w, dtype=np.float64)[None, :] + 0.5
    y = np.arange(h, dtype=np.float64)[:, None] + 0.5
    xin = a[0] * x + a[1] * y + a[2]
    yin = a[3] * x + a[4] * y + a[5]
    ok = (xin >= 0.0) & (xin < w) & (yin >= 0.0) & (yin < h)
    xin, yin = xin - 0.5, yin - 0.5
    k = np.arange(4)
    if op == "shearX":
        base = np.floor(xin)
        frac = xin - base
        cols = np.clip(base[..., None].astype(np.int64) - 1 + k, 0, w - 1)
        rows = np.broadcast_to(np.arange(h)[:, None, None], cols.shape)
    else:
        base = np.floor(yin)
        frac = yin - base
        rows = np.clip(base[..., None].astype(np.int64) - 1 + k, 0, h - 1)
        cols = np.broadcast_to(np.arange(w)[None, :, None], rows.shape)
    taps = (rows * w + cols).reshape(h * w, 4).T  # tap-major: (4, HW)
    return np.ascontiguousarray(taps), frac.reshape(-1), ok.reshape(-1)


def _geometry_table(op, h, w, device):
    """Per (magnitude index, sign) maps of a geometric op, stacked, on `device`."""
    def build():
        maps = []
        for magnitude in MAGNITUDES[op]:
            for sign in (-1, 1):
                if op in ("translateX", "translateY"):
                    maps.append(_translate_map(op, magnitude * (w if op == "translateX" else h) * sign, h, w))
                elif op == "rotate":
                    maps.append(_rotate_map(magnitude * sign, h, w))
                else:
                    maps.append(_shear_map(op, magnitude * sign, h, w))
        if op in ("shearX", "shearY"):
            taps, frac, ok = (np.stack(t) for t in zip(*maps))
            return (torch.from_numpy(taps).to(device), torch.from_numpy(frac).to(device),
                    torch.from_numpy(ok).to(device))
        return torch.from_numpy(np.stack(maps)).to(device)
    return _cached((op, h, w, str(device)), build)


def _fill_tensor(fill, channels, device):
    values = tuple(torch.as_tensor(fill).flatten().tolist())
    if len(values) not in (1, channels) or any(not 0 <= v <= 255 or v != int(v) for v in values):
        raise ValueError(f"fill must be one value in 0..255 or one per channel, got {fill}")
    return _cached(("fill", values, channels, str(device)), lambda: torch.tensor(
        values, dtype=torch.uint8, device=device).expand(channels).reshape(1, channels, 1))


def _nearest(images, op, magnitude_index, signs, fill):
    b, c, h, w = images.shape
    src = _geometry_table(op, h, w, images.device)[_map_index(magnitude_index, signs)]  # (B, HW)
    flat = images.reshape(b, c, h * w)
    out = flat.gather(2, src.clamp(min=0).unsqueeze(1).expand(b, c, h * w))
    out = torch.where((src >= 0).unsqueeze(1), out, _fill_tensor(fill, c, images.device))
    return out.view(b, c, h, w)


def _shear(images, op, magnitude_index, signs, fill):
    b, c, h, w = images.shape
    taps, frac, ok = _geometry_table(op, h, w, images.device)
    row = _map_index(magnitude_index, signs)
    taps, frac, ok = taps[row], frac[row], ok[row]  # (B, 4, HW), (B, HW), (B, HW)
    flat = images.reshape(b, c, h * w)
    v = flat.gather(2, taps.reshape(b, 1, 4 * h * w).expand(b, c, 4 * h * w)).view(b, c, 4, h * w)
    # On uint8 taps Pillow forms p1..p4 in integer arithmetic (exact here in int16) and only
    # the Horner step in double.
    v1, v2, v3, v4 = v.to(torch.int16).unbind(2)
    d = frac.unsqueeze(1)
    p1, p2, p3, p4 = (t.double() for t in (v2, -v1 + v3, 2 * (v1 - v2) + v3 - v4, -v1 + v2 - v3 + v4))
    out = p1 + d * (p2 + d * (p3 + d * p4))
    out = out.clamp_(0.0, 255.0).to(torch.uint8)  # v <= 0 -> 0, v >= 255 -> 255, else truncation
    out = torch.where(ok.unsqueeze(1), out, _fill_tensor(fill, c, images.device))
    return out.view(b, c, h, w)


# ---------------------------------------------------------------------------------------------
# colour ops


def _factor_table(op, device):
    """float32(1 + magnitude * sign) per (magnitude index, sign): ImageEnhance's factor as the
    C float Image.blend receives."""
    def build():
        values = [1 + magnitude * sign for magnitude in MAGNITUDES[op] for sign in (-1, 1)]
        return torch.tensor(values, dtype=torch.float64).to(torch.float32).to(device)
    return _cached(("factor", op, str(device)), build)


def _blend(degenerate, images, factor):
    """Image.blend(degenerate, images, factor): in1 + alpha * (in2 - in1) in float32, clipped
    to [0, 255] and truncated. degenerate may broadcast against images."""
    base = degenerate.to(torch.float32)
    diff = (images.to(torch.int16) - degenerate.to(torch.int16)).to(torch.float32)
    out = base + factor.view(-1, 1, 1, 1) * diff
    return out.clamp_(0.0, 255.0).to(torch.uint8)


def _grey(images):
    """Pillow's RGB -> L: (19595 R + 38470 G + 7471 B + 0x8000) >> 16, as (B, 1, H, W) int32."""
    x = images.to(torch.int32)
    return (x[:, 0:1] * 19595 + x[:, 1:2] * 38470 + x[:, 2:3] * 7471 + 0x8000) >> 16


def _smooth(images):
    """ImageFilter.SMOOTH on each channel: Pillow's 3x3 float32 filter; border pixels unchanged."""
    k1 = np.float32(1) / np.float32(13)
    k5 = np.float32(5) / np.float32(13)
    x = images.to(torch.float32)

    def row(r, centre):  # kernel row over columns x-1, x, x+1 of image row r
        return (r[..., :-2] * k1 + r[..., 1:-1] * centre) + r[..., 2:] * k1

    below, mid, above = x[:, :, 2:], x[:, :, 1:-1], x[:, :, :-2]
    ss = torch.full_like(mid[..., 1:-1], 0.5)
    ss = ss + row(below, k1)
    ss = ss + row(mid, k5)
    ss = ss + row(above, k1)
    out = images.clone()
    out[:, :, 1:-1, 1:-1] = ss.clamp_(0.0, 255.0).to(torch.uint8)
    return out


def _color(images, magnitude_index, signs):
    factor = _factor_table("color", images.device)[_map_index(magnitude_index, signs)]
    return _blend(_grey(images), images, factor)


def _contrast(images, magnitude_index, signs):
    factor = _factor_table("contrast", images.device)[_map_index(magnitude_index, signs)]
    h, w = images.shape[-2:]
    total = _grey(images).sum(dim=(1, 2, 3), dtype=torch.int64).double()
    mean = total / torch.full_like(total, h * w)  # a true division, as ImageStat's sum / count
    degenerate = torch.floor(mean + 0.5).to(torch.int32).view(-1, 1, 1, 1)
    return _blend(degenerate, images, factor)


def _brightness(images, magnitude_index, signs):
    factor = _factor_table("brightness", images.device)[_map_index(magnitude_index, signs)]
    return _blend(torch.zeros((), dtype=torch.int32, device=images.device), images, factor)


def _sharpness(images, magnitude_index, signs):
    factor = _factor_table("sharpness", images.device)[_map_index(magnitude_index, signs)]
    return _blend(_smooth(images), images, factor)


def _posterize(images, magnitude_index, signs):
    masks = _cached(("posterize", str(images.device)), lambda: torch.tensor(
        [(~(2 ** (8 - bits) - 1)) & 0xFF for bits in MAGNITUDES["posterize"]], dtype=torch.uint8,
        device=images.device))
    return images & masks[magnitude_index].view(-1, 1, 1, 1)


def _solarize(images, magnitude_index, signs):
    # x < threshold for an integer x and a real threshold t <=> x < ceil(t)
    limits = _cached(("solarize", str(images.device)), lambda: torch.tensor(
        [math.ceil(t) for t in MAGNITUDES["solarize"]], dtype=torch.int16, device=images.device))
    below = images.to(torch.int16) < limits[magnitude_index].view(-1, 1, 1, 1)
    return torch.where(below, images, 255 - images)


def _invert(images, magnitude_index, signs):
    return 255 - images


def _per_channel(images):
    b, c, h, w = images.shape
    return images.reshape(b * c, h * w)


def _autocontrast(images, magnitude_index, signs):
    flat = _per_channel(images)
    lo = flat.amin(dim=1, keepdim=True).to(torch.int64)
    hi = flat.amax(dim=1, keepdim=True).to(torch.int64)
    spread = (hi - lo).clamp(min=1).double()
    # tensor / tensor: torch computes `scalar / tensor` as scalar * (1 / tensor), not rounded as Python
    scale = torch.full_like(spread, 255.0) / spread
    offset = (-lo).double() * scale
    out = (flat.double() * scale + offset).clamp_(0.0, 255.0).to(torch.uint8)
    return torch.where(hi > lo, out, flat).view_as(images)


def _equalize(images, magnitude_index, signs):
    flat = _per_channel(images)
    rows, pixels = flat.shape
    index = flat.to(torch.int64) + 256 * torch.arange(rows, device=flat.device).unsqueeze(1)
    # 1-D scatter_add_: no host sync (bincount's on CUDA reads the max), deterministic on CUDA
    index = index.reshape(-1)
    hist = torch.zeros(rows * 256, dtype=torch.int64, device=flat.device)
    hist = hist.scatter_add_(0, index, torch.ones_like(index)).view(rows, 256)
    top = hist.gather(1, flat.amax(dim=1, keepdim=True).to(torch.int64))  # count of the highest value
    step = (pixels - top) // 255
    levels = (hist > 0).sum(dim=1, keepdim=True)
    below = torch.cumsum(hist, dim=1) - hist
    lut = ((step // 2 + below) // step.clamp(min=1)).clamp_(max=255)
    identity = (levels <= 1) | (step == 0)
    lut = torch.where(identity, torch.arange(256, device=flat.device), lut)
    return lut.gather(1, flat.to(torch.int64)).to(torch.uint8).view_as(images)


_GEOMETRIC = {"shearX": _shear, "shearY": _shear, "translateX": _nearest, "translateY": _nearest,
              "rotate": _nearest}
_PIXEL = {"color": _color, "posterize": _posterize, "solarize": _solarize, "contrast": _contrast,
          "sharpness": _sharpness, "brightness": _brightness, "autocontrast": _autocontrast,
          "equalize": _equalize, "invert": _invert}


def _run(images, op, magnitude_index, signs, fill):
    if op in _GEOMETRIC:
        return _GEOMETRIC[op](images, op, magnitude_index, signs, fill)
    return _PIXEL[op](images, magnitude_index, signs)


def _check_images(images):
    if not torch.is_tensor(images):
        raise ValueError(f"AutoAugment needs a uint8 tensor (B, 3, H, W), got {type(images).__name__}")
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"AutoAugment needs a uint8 batch (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")


def apply_op(images, op_name, magnitude_index, signs=None, fill=FILL):
    """One AutoAugment op on every image of a uint8 batch (B, 3, H, W), as the authors' PIL code.

    magnitude_index: int in 0..9 or a (B,) integer tensor (one index per image).
    signs: (B,) tensor of +-1 (or None: all +1), the direction of shear, translate, rotate and
    of the enhance factor 1 +- magnitude; ignored by the other ops. Deterministic.
    fill: value of pixels a geometric op brings in from outside (one value or one per channel).
    """
    _check_images(images)
    if op_name not in MAGNITUDES:
        raise ValueError(f"unknown AutoAugment op {op_name!r}; one of {', '.join(OPS)}")
    b, dev = images.shape[0], images.device
    magnitude_index = torch.as_tensor(magnitude_index, device=dev).to(torch.int64).expand(b)
    if bool(((magnitude_index < 0) | (magnitude_index >= NUM_MAGNITUDES)).any()):
        raise ValueError(f"magnitude_index must lie in 0..{NUM_MAGNITUDES - 1}")
    signs = torch.ones(b, dtype=torch.int64, device=dev) if signs is None else torch.as_tensor(signs, device=dev)
    if signs.shape != (b,):
        raise ValueError(f"signs must have shape ({b},), got {tuple(signs.shape)}")
    return _run(images, op_name, magnitude_index, signs, fill)


def _policy_tables(device):
    def build():
        index = {op: i for i, op in enumerate(OPS)}
        ops = torch.tensor([[index[p[1]] for p in CIFAR10_POLICY], [index[p[4]] for p in CIFAR10_POLICY]])
        probs = torch.tensor([[p[0] for p in CIFAR10_POLICY], [p[3] for p in CIFAR10_POLICY]], dtype=torch.float32)
        mags = torch.tensor([[p[2] for p in CIFAR10_POLICY], [p[5] for p in CIFAR10_POLICY]])
        return ops.to(device), probs.to(device), mags.to(device)
    return _cached(("policy", str(device)), build)


def _policy_draws(n, generator, device):
    """cifar10_policy's random numbers for n images: the sub-policy index (n,), U(0, 1) for
    each op (2, n) (op k runs when it is below p_k), a sign +-1 for each op (2, n)."""
    choice = torch.randint(len(CIFAR10_POLICY), (n,), generator=generator, device=device)
    draws = torch.rand((2, n), generator=generator, device=device)
    signs = torch.randint(0, 2, (2, n), generator=generator, device=device) * 2 - 1
    return choice, draws, signs


def cifar10_policy(images, generator, fill=FILL):
    """The authors' CIFAR10Policy on a uint8 batch (B, 3, H, W): per image one of the 25
    sub-policies, uniformly, then each of its two ops with its probability, magnitude and (for
    the signed ops) a random sign. Returns a new uint8 batch of the same shape (the input is
    left untouched).

    generator: a torch.Generator on the images' device, the only source of randomness.
    The ops run over the whole batch, one op kind at a time, selected per image with
    `torch.where` on CUDA (no host sync) and on the selected rows only elsewhere.
    """
    _check_images(images)
    b, dev = images.shape[0], images.device
    ops, probs, mags = _policy_tables(dev)
    choice, draws, signs = _policy_draws(b, generator, dev)
    plus = torch.ones(b, dtype=torch.int64, device=dev)
    out = images
    for stage in range(2):
        op_of, mag_of = ops[stage][choice], mags[stage][choice]
        applied = draws[stage] < probs[stage][choice]
        for op in dict.fromkeys(p[1 + 3 * stage] for p in CIFAR10_POLICY):
            mask = applied & (op_of == OPS.index(op))
            sign = signs[stage] if op in SIGNED_IN_POLICY else plus
            out = _masked(out, mask, op, mag_of, sign, fill)
    return images.clone() if out is images else out


def _gather_rows(device):
    """Run an op on the selected rows only (needs their count on the host), or on all rows
    and select with torch.where (no host sync: CUDA). Both give the same images."""
    return device.type != "cuda"


def _masked(images, mask, op, magnitude_index, signs, fill):
    """`op` on the images where `mask` holds; the others unchanged."""
    if not _gather_rows(images.device):
        return torch.where(mask.view(-1, 1, 1, 1), _run(images, op, magnitude_index, signs, fill), images)
    rows = mask.nonzero().squeeze(1)
    if rows.numel() == 0:
        return images
    done = _run(images.index_select(0, rows), op, magnitude_index.index_select(0, rows),
                signs.index_select(0, rows), fill)
    return images.index_copy(0, rows, done)


def cutout(images, generator, length=CUTOUT_LENGTH):
    """The authors' Cutout(n_holes=1, length) on a batch (B, C, H, W) of any dtype: per image a
    centre (cy, cx) uniform over the pixels, the square [cy - length//2, cy + length//2) x
    [cx - length//2, cx + length//2) clipped to the image set to 0. Apply before Normalize
    (as the authors do, after ToTensor). Returns a new tensor.
    """
    if images.dim() != 4:
        raise ValueError(f"cutout needs a batch (B, C, H, W), got {tuple(images.shape)}")
    b, _, h, w = images.shape
    dev = images.device
    cy = torch.randint(h, (b, 1), generator=generator, device=dev)
    cx = torch.randint(w, (b, 1), generator=generator, device=dev)
    half = length // 2
    rows = torch.arange(h, device=dev)
    cols = torch.arange(w, device=dev)
    in_rows = (rows >= (cy - half).clamp(0, h)) & (rows < (cy + half).clamp(0, h))  # (B, H)
    in_cols = (cols >= (cx - half).clamp(0, w)) & (cols < (cx + half).clamp(0, w))  # (B, W)
    hole = (in_rows.unsqueeze(2) & in_cols.unsqueeze(1)).unsqueeze(1)  # (B, 1, H, W)
    return images.masked_fill(hole, 0)
