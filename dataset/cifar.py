"""CIFAR-100 in its standard `cifar-100-python/` pickle layout, read into uint8 tensors.

The official archive is downloaded (md5-checked) only when the folder holds no data.
The extracted files are validated by shape, dtype and label range instead of md5, so
subsets and generated test sets in the same format load too.
"""
import math
import os
import pickle

import numpy as np
import torch

from dataset import archive
from dataset.archive import DataError
from dataset.generated import mark_generated
from util.errors import UsageError

FOLDER = "cifar-100-python"
ARCHIVE = "cifar-100-python.tar.gz"
NUM_CLASSES = 100
IMAGE_SHAPE = (3, 32, 32)
# Written beside a generated set's files: such a set can never pass for CIFAR-100.
GENERATED_MARKER = "GENERATED_NOT_CIFAR100.txt"


def _archive_source():
    # torchvision knows the official address and md5 of the archive; reuse them.
    from torchvision.datasets import CIFAR100
    return CIFAR100.url, CIFAR100.tgz_md5


def download(data_folder):
    """Fetch and extract the official archive into `data_folder` (md5 checked)."""
    url, md5 = _archive_source()
    archive.download(url, data_folder, ARCHIVE, md5, FOLDER,
                     not_found=f"CIFAR-100 not found in '{os.path.join(data_folder, FOLDER)}'")


def _extract(path, data_folder):
    archive.extract(path, data_folder, _archive_source()[1])


def _read_split(path, split):
    try:
        with open(path, "rb") as fh:
            entry = pickle.load(fh, encoding="latin1")
    except FileNotFoundError:
        raise DataError(f"missing file '{path}': the '{FOLDER}/' folder needs train, test and meta") from None
    except Exception as e:
        raise DataError(f"cannot read '{path}' ({type(e).__name__}): the file is corrupt or truncated; "
                        f"delete the '{FOLDER}/' folder and download again") from None
    if not isinstance(entry, dict) or "data" not in entry or "fine_labels" not in entry:
        raise DataError(f"'{path}' is not a CIFAR-100 {split} file (needs 'data' and 'fine_labels' entries)")
    data = np.asarray(entry["data"])
    labels = np.asarray(entry["fine_labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != int(np.prod(IMAGE_SHAPE)):
        raise DataError(f"'{path}': 'data' must be uint8 of shape (N, 3072), got {data.dtype} {tuple(data.shape)}")
    if labels.ndim != 1 or len(labels) != len(data):
        raise DataError(f"'{path}': {len(labels)} labels for {len(data)} images")
    if len(data) == 0:
        raise DataError(f"'{path}' holds no images")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise DataError(f"'{path}': labels must be integers in [0, {NUM_CLASSES}), got range "
                        f"[{labels.min()}, {labels.max()}]")
    images = torch.from_numpy(data.reshape(-1, *IMAGE_SHAPE).copy())
    return images, torch.from_numpy(labels.astype(np.int64))


def is_generated(data_folder):
    """True when the set in `data_folder` was written by `make_synthetic_cifar100`."""
    return os.path.isfile(os.path.join(data_folder, FOLDER, GENERATED_MARKER))


def has_cifar100(data_folder):
    root = os.path.join(data_folder, FOLDER)
    return all(os.path.isfile(os.path.join(root, f)) for f in ("train", "test"))


def load_cifar100(data_folder, download_if_missing=True):
    """-> dict(train=(images uint8 (N,3,32,32), labels int64), test=(...)).

    Downloads the official archive when the folder has no data and `download_if_missing`.
    """
    root = os.path.join(data_folder, FOLDER)
    if not has_cifar100(data_folder):
        archive.unpack_or_download(data_folder, ARCHIVE, _extract, download if download_if_missing else None,
                                   not_found=f"CIFAR-100 not found in '{root}'; place '{ARCHIVE}' or its extracted "
                                             f"'{FOLDER}/' folder in '{data_folder}'")
    return {split: _read_split(os.path.join(root, split), split) for split in ("train", "test")}


def write_cifar100(data_folder, train_images, train_labels, test_images, test_labels):
    """Write tensors/arrays in the exact `cifar-100-python/` pickle format."""
    root = os.path.join(data_folder, FOLDER)
    os.makedirs(root, exist_ok=True)

    def dump(name, images, labels):
        images = np.asarray(images, dtype=np.uint8).reshape(len(images), -1)
        labels = [int(v) for v in np.asarray(labels)]
        entry = {"filenames": [f"{name}_{i}.png" for i in range(len(labels))], "batch_label": f"{name} batch",
                 "fine_labels": labels, "coarse_labels": [v // 5 for v in labels], "data": images}
        with open(os.path.join(root, name), "wb") as fh:
            pickle.dump(entry, fh, protocol=2)

    dump("train", train_images, train_labels)
    dump("test", test_images, test_labels)
    meta = {"fine_label_names": [f"class_{i:02d}" for i in range(NUM_CLASSES)],
            "coarse_label_names": [f"super_{i:02d}" for i in range(NUM_CLASSES // 5)]}
    with open(os.path.join(root, "meta"), "wb") as fh:
        pickle.dump(meta, fh, protocol=2)
    return root


def make_synthetic_cifar100(data_folder, train_per_class=20, test_per_class=5, seed=0, noise=40.0):
    """Write a small *learnable* data set in the CIFAR-100 format (for tests, offline runs).

    Every class has a smooth random colour pattern; images are that pattern plus noise
    and a random shift, so a small CNN separates the classes within a few epochs.
    """
    g = np.random.default_rng(seed)
    coarse = g.uniform(40, 215, size=(NUM_CLASSES, 3, 4, 4))
    templates = coarse.repeat(8, axis=2).repeat(8, axis=3)  # (C, 3, 32, 32) blocky patterns

    def draw(per_class):
        labels = np.repeat(np.arange(NUM_CLASSES), per_class)
        g.shuffle(labels)
        imgs = templates[labels] + g.normal(0, noise, size=(len(labels), *IMAGE_SHAPE))
        shifts = g.integers(-2, 3, size=(len(labels), 2))
        for k in range(len(labels)):  # data preparation, not a training step
            imgs[k] = np.roll(imgs[k], tuple(shifts[k]), axis=(1, 2))
        return np.clip(imgs, 0, 255).astype(np.uint8), labels

    tr_x, tr_y = draw(train_per_class)
    te_x, te_y = draw(test_per_class)
    root = write_cifar100(data_folder, tr_x, tr_y, te_x, te_y)
    mark_generated(os.path.join(root, GENERATED_MARKER), "CIFAR-100 format", "CIFAR-100")
    return root


def _apportion(counts, total, rng):
    """Split `total` over classes in proportion to `counts`, as sklearn's `_approximate_mode`."""
    # Floors of the proportional shares, then one more for
    # the largest fractional parts; equal fractions are settled by `rng.choice(...,
    # replace=False)`, called (drawing from rng) once for every fraction level visited.
    share = counts / counts.sum() * total
    base = np.floor(share)
    missing = int(total - base.sum())
    if missing > 0:
        frac = share - base
        for level in np.unique(frac)[::-1]:
            tied = np.flatnonzero(frac == level)
            take = min(len(tied), missing)
            base[rng.choice(tied, size=take, replace=False)] += 1
            missing -= take
            if missing == 0:
                break
    return base.astype(int)


def stratified_subset(labels, ratio):
    """Indices of the class-balanced `ratio` of the training set that PACKD's --few-ratio keeps.

    The PACKD authors take the train part of
    `StratifiedShuffleSplit(n_splits=1, test_size=1 - ratio, random_state=0)`; this returns
    exactly those indices, in their order, so few-shot runs train on the authors' images.
    It redoes scikit-learn's steps (sizes, per-class counts with random tie-breaking, the
    same sequence of `RandomState(0)` draws) with numpy, so training does not need sklearn;
    tests/dataset/test_cifar.py checks it against sklearn itself.
    """
    if not 0 < ratio <= 1:
        raise UsageError(f"--few-ratio must be in (0, 1], got {ratio}")
    if ratio == 1:
        return torch.arange(len(labels))
    y = labels.detach().cpu().numpy()
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {tuple(y.shape)}")
    n = len(y)
    test_size = 1 - float(ratio)  # a Python float, as the authors compute it: 1 - 0.7 = 0.30000000000000004
    if not 0 < test_size < 1:
        raise UsageError(f"--few-ratio {ratio} is so small that 1 - ratio rounds to 1; use a larger --few-ratio")
    n_test = math.ceil(test_size * n)  # sklearn rounds the held-out part up ...
    n_train = n - n_test               # ... and keeps the rest
    classes, y_class, counts = np.unique(y, return_inverse=True, return_counts=True)
    k = len(classes)
    if k == 0:
        raise ValueError("--few-ratio needs a non-empty training set, got no labels")
    if counts.min() < 2:
        raise UsageError(f"--few-ratio needs at least 2 images in every class; classes "
                         f"{classes[counts < 2].tolist()} have fewer")
    if n_train < k:
        raise UsageError(f"--few-ratio {ratio} keeps {n_train} of {n} images, fewer than the {k} classes "
                         f"(the authors' split needs one per class); use a larger --few-ratio")
    if n_test < k:
        raise UsageError(f"--few-ratio {ratio} leaves out {n_test} of {n} images, fewer than the {k} classes "
                         f"(the authors' split needs one per class); use a smaller --few-ratio, or 1 for all")

    rng = np.random.RandomState(0)
    # Members of each class in ascending index order (a stable sort by class).
    members = np.split(np.argsort(y_class, kind="stable"), np.cumsum(counts)[:-1])
    n_keep = _apportion(counts, n_train, rng)
    _apportion(counts - n_keep, n_test, rng)  # the held-out counts: unused, but they draw from rng
    picked = []
    for c in range(k):
        order = rng.permutation(counts[c])
        picked.extend(members[c][order][:n_keep[c]])
    return torch.from_numpy(rng.permutation(np.asarray(picked, dtype=np.int64)))
