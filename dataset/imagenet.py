"""ImageNet as an ImageFolder: `<root>/train/<wnid>/*.JPEG`, `<root>/val/<wnid>/*.JPEG`.

The recipe of RepDistiller-CRD's and the PACKD authors' ImageNet scripts: training images
get `RandomResizedCrop(224)` (scale 0.08-1, aspect 3/4-4/3, bilinear, antialiased) and a
horizontal flip, evaluation images `Resize(256)` + `CenterCrop(224)`; both are normalised
with the ImageNet mean/std.

`ImageNetLoader` is the DataLoader path: worker processes decode JPEGs (torchvision.io,
libjpeg-turbo) and crop/resize/flip them to uint8 224x224; the batch travels to the
device as uint8 (4x fewer bytes than float, pinned on CUDA) and is normalised there. The
epoch's order and every sample's augmentation seed are drawn in the main process from
seeded generators, so the batches do not depend on the number of workers, and a resumed
epoch (`iterate(skip)`) is the same without decoding the skipped batches.
`dataset/imagenet_dali.py` is the same interface on NVIDIA DALI (both build on `BaseImageNetLoader`).

PACKD's views (`needs` with VIEWS, `MixedViews`): each sample also brings mixed views
made as the authors' `ImageNetPACKDDataset` makes them: a same-class partner (drawn with
replacement), rotated by k x 90 degrees as PIL's `Image.rotate` does, augmented on its own,
and mixed with the sample's plain view, lambda * plain + (1 - lambda) * partner with
lambda = 0.1 + 0.9 * U(0, 1). Partners, rotations and lambdas are drawn in the main
process from a seeded generator of their own; the workers decode and augment the partners;
the mixing runs on the device after normalisation, as theirs.
"""
import gzip
import hashlib
import json
import math
import os
import random
import warnings

import numpy as np
import torch

from dataset.batch import Batch, CONTRAST_INDEX, VIEWS
from dataset.generated import mark_generated
from dataset.loader import attach_sample_extras, rank_seed
from util.class_index import ClassIndex
from util.errors import UsageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP = 224           # training crop and evaluation centre crop
RESIZE = 256         # evaluation: shorter side resized to this before the centre crop
SCALE = (0.08, 1.0)  # RandomResizedCrop's defaults
RATIO = (3 / 4, 4 / 3)
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
LAYOUT = "<root>/train/<wnid>/*.JPEG and <root>/val/<wnid>/*.JPEG (classes = sorted folder names)"
# Written at the root of a generated set: such a set can never pass for ImageNet.
GENERATED_MARKER = "GENERATED_NOT_IMAGENET.txt"
_SCAN_CACHE_VERSION = 1


# -- the folder -----------------------------------------------------------------------
def _layout_error(root, what):
    return UsageError(f"'{root}' is not an ImageNet folder: {what}; expected {LAYOUT}")


def _class_folders(split_dir):
    """Sorted (name, mtime_ns) of the sub-folders of `split_dir` (hidden ones ignored)."""
    with os.scandir(split_dir) as it:
        found = [(e.name, e.stat().st_mtime_ns) for e in it if e.is_dir() and not e.name.startswith(".")]
    return sorted(found)


def _images_in(folder):
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTENSIONS)
                      and e.is_file())


def _default_cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "packd", "imagenet_scan")


def _read_cache(path, signature):
    try:
        with gzip.open(path, "rt") as fh:
            cached = json.load(fh)
    except (OSError, ValueError, EOFError):
        return None
    if cached.get("version") != _SCAN_CACHE_VERSION or cached.get("signature") != signature:
        return None
    return cached["names"]


def _write_cache(path, signature, names):
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        with gzip.open(tmp, "wt", compresslevel=1) as fh:
            json.dump({"version": _SCAN_CACHE_VERSION, "signature": signature, "names": names}, fh)
        os.replace(tmp, path)
    except OSError:  # a cache only: a read-only home or a full disk costs a rescan next time
        pass


def scan_imagenet(root, cache_dir=None):
    """-> (classes, train_items, val_items): the sorted class folder names of train/, and lists
    of (path, label) in sorted order (label = position of the folder name in `classes`).

    Checks the layout and raises a one-line `UsageError` naming it when train/ or val/ is
    missing, a class folder holds no image, or val/ has classes that train/ lacks (val/ may
    lack classes). The listing (1.28 M names for ImageNet, a while on a network file system)
    is cached in `cache_dir` (default ~/.cache/packd/imagenet_scan; False: no cache), keyed by
    the folder's path and the modification times of its split and class folders, which change
    whenever a file is added, removed or renamed in them.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise _layout_error(root, "no such folder")
    splits = {}
    for split in ("train", "val"):
        split_dir = os.path.join(root, split)
        if not os.path.isdir(split_dir):
            raise _layout_error(root, f"it has no {split}/ folder")
        folders = _class_folders(split_dir)
        if not folders:
            loose = _images_in(split_dir)
            hint = (f" ({len(loose)} images lie directly in {split}/: sort them into one folder per class)"
                    if loose else "")
            raise _layout_error(root, f"{split}/ holds no class folders{hint}")
        splits[split] = (os.stat(split_dir).st_mtime_ns, folders)
    classes = [name for name, _ in splits["train"][1]]
    extra = sorted(set(name for name, _ in splits["val"][1]) - set(classes))
    if extra:
        shown = ", ".join(extra[:3]) + (", ..." if len(extra) > 3 else "")
        raise _layout_error(root, f"val/ has {len(extra)} class(es) that train/ lacks ({shown})")

    signature = {"root": os.path.abspath(root), **{s: [m, f] for s, (m, f) in splits.items()}}
    signature = json.loads(json.dumps(signature))  # tuples -> lists, as read back
    cache_path = None
    if cache_dir is not False:
        key = hashlib.sha256(os.path.abspath(root).encode()).hexdigest()[:20]
        cache_path = os.path.join(cache_dir or _default_cache_dir(), f"{key}.json.gz")
    names = _read_cache(cache_path, signature) if cache_path else None
    if names is None:
        names = {}
        for split, (_, folders) in splits.items():
            names[split] = {}
            for name, _ in folders:
                files = _images_in(os.path.join(root, split, name))
                if not files:
                    raise _layout_error(root, f"class folder '{os.path.join(root, split, name)}' holds no "
                                              f"images ({'/'.join(IMAGE_EXTENSIONS)})")
                names[split][name] = files
        if cache_path:
            _write_cache(cache_path, signature, names)
    label = {name: i for i, name in enumerate(classes)}

    def items(split):
        return [(os.path.join(root, split, name, f), label[name]) for name in sorted(names[split])
                for f in names[split][name]]

    return classes, items("train"), items("val")


def is_generated(root):
    """True when the set in `root` was written by `write_generated_imagenet`."""
    return os.path.isfile(os.path.join(root, GENERATED_MARKER))


def write_generated_imagenet(root, classes=4, per_class=6, val_per_class=2, size=(64, 80), seed=0):
    """Write a small *learnable* JPEG set in the ImageNet layout (for tests and offline runs).

    Class k is folder `n%08d` % k; every class has a blocky random colour pattern, and each
    image is that pattern (stretched to `size` = (height, width)) with noise and a random
    shift, saved as JPEG (quality 90). A marker file at the root says it is not ImageNet.
    Refuses a folder that holds anything but a generated set. Returns `root`.
    """
    from PIL import Image
    root = os.fspath(root)
    if os.path.isdir(root) and os.listdir(root) and not is_generated(root):
        raise UsageError(f"'{root}' is not empty and holds no generated set; write the generated ImageNet-layout "
                         f"set into an empty or new folder")
    h, w = int(size[0]), int(size[1])
    g = np.random.default_rng(seed)
    templates = g.uniform(30, 225, size=(classes, 4, 5, 3))
    names = [f"n{k:08d}" for k in range(classes)]

    def draw(k):
        rows = np.minimum(np.arange(h) * 4 // h, 3)
        cols = np.minimum(np.arange(w) * 5 // w, 4)
        img = templates[k][rows][:, cols] + g.normal(0, 20, size=(h, w, 3))
        img = np.roll(img, tuple(g.integers(-h // 16, h // 16 + 1, size=2)), axis=(0, 1))
        return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))

    val_number = 0
    for split, count in (("train", per_class), ("val", val_per_class)):
        for k, name in enumerate(names):
            folder = os.path.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                if split == "train":
                    file = f"{name}_{i + 1}.JPEG"
                else:
                    val_number += 1
                    file = f"ILSVRC2012_val_{val_number:08d}.JPEG"
                draw(k).save(os.path.join(folder, file), quality=90)
    mark_generated(os.path.join(root, GENERATED_MARKER), "ImageNet folder layout", "ImageNet")
    return root


# -- per-sample work (in the DataLoader's workers) --------------------------------------
def random_resized_crop_params(height, width, rng, scale=SCALE, ratio=RATIO):
    """(top, left, h, w) exactly as torchvision's `RandomResizedCrop.get_params`, drawing from `rng`
    (a `random.Random`) instead of the global torch generator."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class PackedFiles:
    """Paths and labels packed in numpy buffers: no per-item Python objects, so the workers'
    copy-on-write pages stay shared (a list of 1.28 M strings would be copied into every worker
    as its reference counts are touched)."""

    def __init__(self, items):
        encoded = [os.fsencode(path) for path, _ in items]
        self.offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(p) for p in encoded], out=self.offsets[1:])
        self.buffer = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
        self.labels = np.asarray([label for _, label in items], dtype=np.int64)

    def __len__(self):
        return len(self.labels)

    def path(self, i):
        return os.fsdecode(self.buffer[self.offsets[i]:self.offsets[i + 1]].tobytes())


class _Samples(torch.utils.data.Dataset):
    """`dataset[(i, seed)]` -> uint8 (3, crop, crop): the training crop and flip drawn from `seed`,
    or the evaluation crop. Decoded by torchvision.io (libjpeg-turbo; greyscale, CMYK and PNG files
    come out RGB), resized by torchvision's antialiased bilinear kernel on uint8 tensors: the ops of
    the recipe's transforms on tensors, ~25% faster per image than PIL here.

    `dataset[(i, seed, partners, turns)]` (PACKD's views) -> uint8 (1 + M, 3, crop, crop): the
    sample's crop (the same as `dataset[(i, seed)]`) followed by each partner image rotated by
    turns[k] x 90 degrees (`rotate_like_pil`) and given a crop and flip of its own, drawn from the
    same seeded stream after the sample's."""

    def __init__(self, files, train, crop=CROP, resize=RESIZE):
        self.files, self.train, self.crop, self.resize = files, train, crop, resize

    def __len__(self):
        return len(self.files)

    def __getitem__(self, key):
        from torchvision.transforms.v2 import functional as F
        i, seed = key[0], key[1]
        image = decode_rgb(self.files.path(i))
        if not self.train:
            return F.center_crop(F.resize(image, [self.resize], antialias=True), [self.crop, self.crop])
        rng = random.Random(seed)
        out = self._train_crop(image, rng)
        if len(key) == 2:
            return out
        crops = [out]
        for j, turns in zip(key[2], key[3]):
            crops.append(self._train_crop(rotate_like_pil(decode_rgb(self.files.path(j)), turns), rng))
        return torch.stack(crops)

    def _train_crop(self, image, rng):
        """RandomResizedCrop(crop) + RandomHorizontalFlip, drawn from `rng`."""
        from torchvision.transforms.v2 import functional as F
        top, left, h, w = random_resized_crop_params(image.shape[-2], image.shape[-1], rng)
        out = F.resized_crop(image, top, left, h, w, [self.crop, self.crop], antialias=True)
        return out.flip(-1) if rng.random() < 0.5 else out


ROTATIONS = 4  # np.random.randint(4) * 90 degrees in the authors' ImageNetPACKDDataset


def rotate_like_pil(image, turns):
    """uint8 (C, H, W) rotated counter-clockwise by `turns` x 90 degrees exactly as PIL's
    `Image.rotate(turns * 90)` (the authors' call): the canvas keeps its size, so for 90 and 270
    degrees on a non-square image the rotated picture is cut at two sides and black at the
    other two (nearest-neighbour at the image centre; 180 degrees and square images are exact
    transposes). Tested pixel for pixel against Pillow."""
    turns = int(turns) % ROTATIONS
    if turns == 0:
        return image
    if turns == 2:
        return image.flip(-1).flip(-2)
    h, w = image.shape[-2:]
    if h == w:
        return torch.rot90(image, turns, dims=(-2, -1))
    # PIL maps output pixel (x, y) to source (xs, ys) through the centre (w/2, h/2), pixel centres
    # at +0.5, and truncates; in doubled coordinates everything stays an integer.
    y = torch.arange(h).view(-1, 1)
    x = torch.arange(w).view(1, -1)
    if turns == 1:
        xs2, ys2 = w + h - 1 - 2 * y, 2 * x + 1 - w + h
    else:
        xs2, ys2 = 2 * y + 1 + w - h, w + h - 1 - 2 * x
    xs, ys = xs2.div(2, rounding_mode="floor"), ys2.div(2, rounding_mode="floor")
    inside = (xs2 >= 0) & (xs < w) & (ys2 >= 0) & (ys < h)
    source = (ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1)).reshape(-1)  # (h * w,) flat source pixels
    # index_select: advanced indexing of uint8 was ~300x slower on the CPU here
    out = image.reshape(image.shape[0], -1).index_select(1, source).view(image.shape)
    return torch.where(inside, out, torch.zeros((), dtype=image.dtype))


class MixedViews:
    """PACKD's ImageNet views (the authors' `ImageNetPACKDDataset`): what to draw per sample.

    labels: the training labels (N,). Each sample gets `mixup_num` mixed views; view k mixes
    the sample's plain crop x with a crop of a same-class partner x_j (drawn uniformly with
    replacement, so possibly the sample itself) rotated by r x 90 degrees before its crop:
    view_k = lambda * x + (1 - lambda) * aug(rot(x_j)), lambda = ratio + (1 - ratio) * U(0, 1)
    (the authors: ratio 0.1, r ~ U{0..3}). Flags as on CIFAR: mixup_rotate <= 0 keeps partners
    upright; mixup_rotate < -1 sets lambda = 0 (the partner alone). The draws come from the
    loader's own seeded generator in the main process (`draw`); the mixing runs on the device.
    """

    def __init__(self, labels, mixup_num=1, mixup_ratio=0.1, mixup_rotate=3):
        if int(mixup_num) != mixup_num or mixup_num < 0:
            raise UsageError(f"--mixup_num must be 0 or more on ImageNet (the authors' ImageNet views always keep "
                             f"the plain view first), got {mixup_num}")
        if not 0.0 <= mixup_ratio <= 1.0:
            raise UsageError(f"--mixup_ratio must lie in [0, 1], got {mixup_ratio}")
        self.classes = labels if isinstance(labels, ClassIndex) else ClassIndex(torch.as_tensor(labels))
        self.mixup_num, self.mixup_ratio, self.mixup_rotate = int(mixup_num), float(mixup_ratio), int(mixup_rotate)

    @property
    def num_views(self):
        return 1 + self.mixup_num

    def draw(self, index, generator):
        """index (n,) anchors -> {"partners", "turns", "lam"}, each (n, mixup_num) on the CPU.

        Always the same three draws in this order (the stream does not depend on the flags)."""
        n, m = index.numel(), self.mixup_num
        anchors = index.reshape(-1).repeat_interleave(m)
        partners = self.classes.draw_same_class(self.classes.class_of[anchors], generator).view(n, m)
        turns = torch.randint(0, ROTATIONS, (n, m), generator=generator)
        lam = torch.rand((n, m), generator=generator)
        if self.mixup_rotate <= 0:
            turns = torch.zeros_like(turns)
        lam = torch.zeros_like(lam) if self.mixup_rotate < -1 else self.mixup_ratio + (1.0 - self.mixup_ratio) * lam
        return {"partners": partners, "turns": turns, "lam": lam}


def decode_rgb(path):
    """The image file at `path` as uint8 (3, H, W) RGB: torchvision.io (libjpeg-turbo), or PIL for
    a file it cannot read (and should a torchvision release drop its decoders, as 0.29 announces)."""
    try:
        with warnings.catch_warnings():  # torchvision 0.29: "decoding ... deprecated" on every call
            warnings.simplefilter("ignore", DeprecationWarning)
            from torchvision.io import ImageReadMode, decode_image, read_file
            return decode_image(read_file(path), mode=ImageReadMode.RGB)
    except (RuntimeError, ImportError):
        from PIL import Image
        try:
            with Image.open(path) as img:
                return torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1).contiguous()
        except Exception as e:
            raise UsageError(f"cannot decode '{path}' ({type(e).__name__}: {e}); replace or remove the file") from None


class _EpochBatches(torch.utils.data.Sampler):
    """The DataLoader's batch sampler: the (index, seed) lists of this rank's batches of the
    current epoch, set by `ImageNetLoader.iterate` before each pass; only batches that are
    yielded are ever decoded."""

    def __init__(self):
        self.parts = []

    def __len__(self):
        return len(self.parts)

    def __iter__(self):
        for part in self.parts:
            index, seeds = part[0].tolist(), part[1].tolist()
            if len(part) == 2:
                yield list(zip(index, seeds))
            else:  # PACKD's views: each sample's partners and rotations
                mix = part[2]
                yield list(zip(index, seeds, mix["partners"].tolist(), mix["turns"].tolist()))


# -- the epoch plan, shared with the DALI loader ----------------------------------------
class EpochPlanner:
    """Order, sharding and seeds of an epoch, as `DeviceLoader` draws them.

    Train: one permutation per epoch from `order_generator` (seeded `seed`, the same on every
    rank); each rank takes its `tensor_split` slice of each global batch; a last global batch
    smaller than the number of ranks is topped up from the epoch's start. Every position of
    the epoch gets an augmentation seed from `sample_generator` (seeded `rank_seed(seed, rank)`
    under torchrun, else `seed`). Eval: the folder's order, nothing drawn.
    """

    def __init__(self, num_samples, batch_size, train, seed, rank, world_size):
        if batch_size <= 0:
            raise ValueError(f"--batch_size must be positive, got {batch_size}")
        self.n, self.batch_size, self.train = int(num_samples), int(batch_size), train
        self.seed, self.rank, self.world_size = seed, int(rank), int(world_size)
        if self.world_size > 1 and self.batch_size % self.world_size:
            raise UsageError(f"--batch_size {batch_size} is the global batch and must divide evenly over "
                             f"{self.world_size} processes; pick a multiple of {self.world_size}")
        self.order_generator = torch.Generator().manual_seed(seed)
        self.sample_generator = torch.Generator().manual_seed(
            rank_seed(seed, self.rank) if self.world_size > 1 else seed)

    def __len__(self):
        return math.ceil(self.n / self.batch_size)

    def state_dict(self):
        return {"order_generator": self.order_generator.get_state(),
                "sample_generator": self.sample_generator.get_state()}

    def load_state_dict(self, state):
        self.order_generator.set_state(state["order_generator"].cpu())
        self.sample_generator.set_state(state["sample_generator"].cpu())

    def epoch(self):
        """-> (parts, epoch_seed): this rank's (index, seeds) CPU int64 tensors for every step of
        the epoch (the generators advance by one epoch) and a seed for the epoch's other draws."""
        n, b, world = self.n, self.batch_size, self.world_size
        if self.train:
            order = torch.randperm(n, generator=self.order_generator)
            seeds = torch.randint(0, 2 ** 62, (n + world,), generator=self.sample_generator)
            epoch_seed = int(torch.randint(0, 2 ** 62, (1,), generator=self.sample_generator))
        else:
            order, seeds, epoch_seed = torch.arange(n), torch.zeros(n + world, dtype=torch.long), 0
        parts = []
        for step in range(len(self)):
            index, seed = order[step * b:(step + 1) * b], seeds[step * b:(step + 1) * b]
            if world > 1:
                short = world - index.numel()
                if self.train and short > 0:  # no rank gets an empty training batch
                    index = torch.cat([index, order[:short]])
                    seed = torch.cat([seed, seeds[n:n + short]])
                index, seed = index.tensor_split(world)[self.rank], seed.tensor_split(world)[self.rank]
            parts.append((index, seed))
        return parts, epoch_seed


def step_seed(epoch_seed, step):
    """The seed of one step's on-device draws (negatives): independent of where an epoch resumed."""
    return (int(epoch_seed) + 1_000_003 * (int(step) + 1)) % 2 ** 63


def normalize_on_device(x):
    """uint8 (B, 3, H, W) on the device -> float32 normalised with the ImageNet mean/std."""
    mean = torch.tensor([255 * m for m in IMAGENET_MEAN], device=x.device).view(1, 3, 1, 1)
    inv_std = torch.tensor([1 / (255 * s) for s in IMAGENET_STD], device=x.device).view(1, 3, 1, 1)
    return x.float().sub_(mean).mul_(inv_std)


def view_seed(seed, rank=0, world_size=1):
    """The seed of the views' generator (partners, rotations, lambdas): per rank under torchrun,
    a stream apart from the order and crop generators (which then stay as without views)."""
    base = rank_seed(seed, rank) if int(world_size) > 1 else int(seed)
    return (base * 6364136223846793005 + 1442695040888963407) % 2 ** 63


class BaseImageNetLoader:
    """What `ImageNetLoader` and `dataset.imagenet_dali.DALIImageNetLoader` share: the check that
    negatives come with CONTRAST_INDEX, the split's packed files and labels, the `EpochPlanner`
    (and so the state), and a step's `Batch` made from its images, with the negatives drawn from
    a generator re-seeded every step. A subclass checks VIEWS itself, then decodes and augments
    its own way."""

    def __init__(self, items, batch_size, train, needs, negatives, seed, device, num_workers, rank, world_size,
                 crop, resize):
        self.needs = frozenset(needs)
        if CONTRAST_INDEX in self.needs and negatives is None:
            raise ValueError("this method needs negatives: pass a negative sampler")
        self.files = items if isinstance(items, PackedFiles) else PackedFiles(items)
        if len(self.files) == 0:
            raise UsageError("the ImageNet split holds no images")
        self.labels = torch.from_numpy(self.files.labels)
        self.batch_size, self.train, self.negatives = int(batch_size), train, negatives
        self.seed, self.rank, self.world_size = seed, int(rank), int(world_size)
        self.num_workers, self.crop, self.resize = int(num_workers), crop, resize
        self.device = self._resolve_device(device)
        self.planner = EpochPlanner(len(self.files), batch_size, train, seed, rank, world_size)
        self.generator = torch.Generator(device=self.device)  # negatives; re-seeded every step

    @staticmethod
    def _resolve_device(device):
        return torch.device(device)

    def __len__(self):
        return len(self.planner)

    @property
    def num_samples(self):
        return len(self.files)

    def state_dict(self):
        return self.planner.state_dict()

    def load_state_dict(self, state):
        self.planner.load_state_dict(state)

    def __iter__(self):
        return self.iterate()

    def _to_device(self, tensor):
        return tensor.to(self.device, non_blocking=True)

    def _make_batch(self, images, index, epoch_seed, step, views=None):
        """The Batch of step `step`: `images` (and `views`) already on the device, the samples'
        labels, and what `needs` asks for of the CPU positions `index`."""
        labels = self.labels.index_select(0, index)
        index, labels = self._to_device(index), self._to_device(labels)
        batch = Batch(images=images, labels=labels, views=views)
        if CONTRAST_INDEX in self.needs:
            self.generator.manual_seed(step_seed(epoch_seed, step))
        return attach_sample_extras(batch, index, self.needs, self.negatives, self.generator)


class ImageNetLoader(BaseImageNetLoader):
    """Batches of an ImageNet-layout split from DataLoader workers; the interface of `DeviceLoader`.

    items: (path, label) pairs (`scan_imagenet`). `batch_size` is the global batch; under
    torchrun (`world_size` > 1) each rank yields its slice of one seeded permutation per
    epoch. The last partial batch is kept. Yields `Batch(images (b, 3, 224, 224) float32
    normalised, labels, index when `needs` has INDEX, contrast_index from
    `negatives.sample(index, generator)` when it has CONTRAST_INDEX, views when it has VIEWS)`
    on `device`.
    views (`MixedViews`, with VIEWS): batch.views is (b, 1 + mixup_num, 3, 224, 224), view 0 the
    plain crop (batch.images is that view, identical to the batch without VIEWS) and view k the
    sample's plain crop mixed with its k-th partner's. Partners, rotations and lambdas of the
    whole epoch are drawn from a generator of their own when the epoch starts.
    State: the order and sample generators (CPU), and the views' generator with VIEWS;
    negatives are drawn on the device from a generator re-seeded every step from the epoch's
    seed, so `iterate(skip)` replays exactly.
    """

    def __init__(self, items, batch_size, train=True, needs=(), negatives=None, seed=0, device="cpu",
                 num_workers=8, rank=0, world_size=1, prefetch_factor=4, crop=CROP, resize=RESIZE, views=None):
        needs = frozenset(needs)
        if VIEWS in needs and (views is None or not train):
            raise ValueError("this method needs extra views: pass MixedViews to a training loader")
        super().__init__(items, batch_size, train, needs, negatives, seed, device, num_workers, rank, world_size,
                         crop, resize)
        self.prefetch_factor = prefetch_factor
        self.views = views if VIEWS in self.needs else None
        self.view_generator = None
        if self.views is not None:
            self.view_generator = torch.Generator().manual_seed(view_seed(seed, rank, world_size))
        self._batches = _EpochBatches()
        cuda = self.device.type == "cuda"
        self.loader = torch.utils.data.DataLoader(
            _Samples(self.files, train, crop, resize), batch_sampler=self._batches, num_workers=self.num_workers,
            pin_memory=cuda, persistent_workers=self.num_workers > 0,
            prefetch_factor=prefetch_factor if self.num_workers > 0 else None)

    def unsharded(self):
        """The loader one process would use (whole batches, generators seeded as one process)."""
        return ImageNetLoader(self.files, self.batch_size, self.train, self.needs, self.negatives, seed=self.seed,
                              device=self.device, num_workers=self.num_workers, prefetch_factor=self.prefetch_factor,
                              crop=self.crop, resize=self.resize, views=self.views)

    def state_dict(self):
        state = super().state_dict()
        if self.view_generator is not None:
            state["view_generator"] = self.view_generator.get_state()
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        if self.view_generator is not None:
            self.view_generator.set_state(state["view_generator"].cpu())

    def plan(self):
        """-> (parts, epoch_seed): `EpochPlanner.epoch()`, each part with a third entry, the
        views' draws {"partners", "turns", "lam"} (b, mixup_num) of its samples, when the loader
        builds views. Advances the generators by one epoch (as `iterate` does)."""
        parts, epoch_seed = self.planner.epoch()
        if self.views is None:
            return parts, epoch_seed
        index = torch.cat([part[0] for part in parts])
        drawn = self.views.draw(index, self.view_generator)
        sizes = [part[0].numel() for part in parts]
        split = {k: v.split(sizes) for k, v in drawn.items()}
        return [(*part, {k: split[k][step] for k in split}) for step, part in enumerate(parts)], epoch_seed

    def iterate(self, skip=0):
        """Yield the epoch's batches from step `skip` on; the skipped ones are planned (same random
        numbers) but never read or decoded."""
        parts, epoch_seed = self.plan()
        todo = list(enumerate(parts))[skip:]
        self._batches.parts = [part for _, part in todo if part[0].numel()]
        it = iter(self.loader) if self._batches.parts else None
        for step, part in todo:
            index = part[0]
            mix = part[2] if len(part) > 2 else None
            if index.numel() == 0:  # evaluation under torchrun: this rank has no share of the last batch
                yield self._batch(torch.empty(0, 3, self.crop, self.crop, dtype=torch.uint8), index, epoch_seed,
                                  step)
                continue
            try:
                images = next(it)
            except UsageError as e:  # from a worker: its traceback is in the message; keep the one line
                raise UsageError(str(e).strip().splitlines()[-1].split("UsageError: ", 1)[-1]) from None
            yield self._batch(images, index, epoch_seed, step, mix)

    def _to_device(self, tensor):
        if self.device.type == "cuda":  # the DataLoader path pins what it sends
            tensor = tensor.pin_memory()
        return super()._to_device(tensor)

    def _batch(self, images, index, epoch_seed, step, mix=None):
        images = images.to(self.device, non_blocking=True)
        views = None
        if mix is not None:  # (b, 1 + M, 3, H, W) uint8: the plain crops, then the partners' crops
            b, v = images.shape[:2]
            views = normalize_on_device(images.flatten(0, 1)).view(b, v, *images.shape[2:])
            w = self._to_device(mix["lam"]).view(b, v - 1, 1, 1, 1)
            anchor = views[:, :1]
            # the authors: lam * img + (1 - lam) * partner, on normalised tensors
            views[:, 1:] = w * anchor + (1.0 - w) * views[:, 1:]
            images = views[:, 0]
        else:
            images = normalize_on_device(images)
        return self._make_batch(images, index, epoch_seed, step, views)
