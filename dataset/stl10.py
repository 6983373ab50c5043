"""STL-10 in its official `stl10_binary/` layout, read into uint8 tensors.

The labelled splits are four files: `train_X.bin` / `test_X.bin` (uint8, each image 3 x 96 x 96
stored column-major: channel, then column, then row) and `train_y.bin` / `test_y.bin` (one uint8
label per image, 1..10). They are read as torchvision's `STL10` reads them, so image i here is
torchvision's image i and label i - 1. Used by `eval_rep.py` (linear-probe transfer).

The official archive (2.6 GB, md5-checked; torchvision's address) is downloaded only when the
folder holds no data. The files are validated by size and label range instead of md5, so
generated test sets in the same format load too; those carry `GENERATED_MARKER`.
"""
import os

import numpy as np
import torch

from dataset import archive
from dataset.archive import DataError
from dataset.generated import PALETTE, class_colours, mark_generated, synthetic_images  # noqa: F401  (PALETTE: public here)

FOLDER = "stl10_binary"
NUM_CLASSES = 10
IMAGE_SHAPE = (3, 96, 96)
IMAGE_BYTES = int(np.prod(IMAGE_SHAPE))
SPLITS = ("train", "test")
FILES = tuple(f"{split}_{part}.bin" for split in SPLITS for part in ("X", "y"))
CLASS_NAMES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
# Written beside a generated set's files: such a set can never pass for STL-10.
GENERATED_MARKER = "GENERATED_NOT_STL10.txt"


def _archive_source():
    # torchvision knows the official address, file name and md5 of the archive; reuse them.
    from torchvision.datasets import STL10
    return STL10.url, STL10.filename, STL10.tgz_md5


def download(data_folder):
    """Fetch and extract the official archive into `data_folder` (md5 checked); one-line DataError offline."""
    url, filename, md5 = _archive_source()
    archive.download(url, data_folder, filename, md5, FOLDER,
                     not_found=f"STL-10 not found in '{os.path.join(data_folder, FOLDER)}'")


def _extract(path, data_folder):
    archive.extract(path, data_folder, _archive_source()[2])


def has_stl10(data_folder):
    """True when `data_folder` holds any of the labelled files (a partial set is then reported)."""
    root = os.path.join(data_folder, FOLDER)
    return any(os.path.isfile(os.path.join(root, f)) for f in FILES)


def is_generated(data_folder):
    """True when the set in `data_folder` was written by `make_synthetic_stl10`."""
    return os.path.isfile(os.path.join(data_folder, FOLDER, GENERATED_MARKER))


def _read_split(root, split):
    x_path, y_path = (os.path.join(root, f"{split}_{part}.bin") for part in ("X", "y"))
    missing = [os.path.basename(p) for p in (x_path, y_path) if not os.path.isfile(p)]
    if missing:
        raise DataError(f"'{root}' lacks {', '.join(missing)}: an STL-10 '{FOLDER}/' folder needs "
                        f"{', '.join(FILES)}; delete it and download again")
    size = os.path.getsize(x_path)
    if size == 0 or size % IMAGE_BYTES:
        raise DataError(f"'{x_path}' holds {size} bytes, not a whole number of 3x96x96 images "
                        f"({IMAGE_BYTES} bytes each): the file is truncated or not STL-10")
    labels = np.fromfile(y_path, dtype=np.uint8)
    n = size // IMAGE_BYTES
    if len(labels) != n:
        raise DataError(f"'{y_path}' holds {len(labels)} labels for the {n} images of '{x_path}'")
    if labels.min() < 1 or labels.max() > NUM_CLASSES:
        raise DataError(f"'{y_path}': labels must lie in 1..{NUM_CLASSES}, got {labels.min()}..{labels.max()}")
    # Column-major on disk: (N, C, W, H) -> (N, C, H, W), as torchvision's STL10.
    images = np.fromfile(x_path, dtype=np.uint8).reshape(n, 3, 96, 96).transpose(0, 1, 3, 2)
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels.astype(np.int64) - 1)


def load_stl10(data_folder, download_if_missing=True):
    """-> dict(train=(uint8 (N, 3, 96, 96), int64 labels 0..9), test=(...), classes=[names]).

    Downloads the official archive when the folder has no data and `download_if_missing`.
    """
    root = os.path.join(data_folder, FOLDER)
    if not has_stl10(data_folder):
        _, filename, _ = _archive_source()
        archive.unpack_or_download(data_folder, filename, _extract, download if download_if_missing else None,
                                   not_found=f"STL-10 not found in '{root}'; place '{filename}' or its extracted "
                                             f"'{FOLDER}/' folder in '{data_folder}'")
    out = {split: _read_split(root, split) for split in SPLITS}
    out["classes"] = _class_names(root)
    return out


def _class_names(root):
    path = os.path.join(root, "class_names.txt")
    try:
        with open(path) as fh:
            names = [line.strip() for line in fh if line.strip()]
    except OSError:
        return list(CLASS_NAMES)
    return names if len(names) == NUM_CLASSES else list(CLASS_NAMES)


def write_stl10(data_folder, train_images, train_labels, test_images, test_labels):
    """Write uint8 images (N, 3, 96, 96) and labels 0..9 in the exact `stl10_binary/` format."""
    root = os.path.join(data_folder, FOLDER)
    os.makedirs(root, exist_ok=True)
    for split, images, labels in (("train", train_images, train_labels), ("test", test_images, test_labels)):
        images = np.asarray(images, dtype=np.uint8)
        labels = np.asarray(labels)
        if images.shape[1:] != IMAGE_SHAPE or len(images) != len(labels):
            raise ValueError(f"{split}: need images (N, 3, 96, 96) and N labels, got {images.shape}, {labels.shape}")
        if labels.min() < 0 or labels.max() >= NUM_CLASSES:
            raise ValueError(f"{split}: labels must lie in 0..{NUM_CLASSES - 1}")
        np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tofile(os.path.join(root, f"{split}_X.bin"))
        (labels + 1).astype(np.uint8).tofile(os.path.join(root, f"{split}_y.bin"))
    with open(os.path.join(root, "class_names.txt"), "w") as fh:
        fh.write("\n".join(CLASS_NAMES) + "\n")
    return root


def make_synthetic_stl10(data_folder, train_per_class=20, test_per_class=10, seed=0):
    """Write a small *learnable* data set in the STL-10 format (for tests and offline tries)."""
    rng = np.random.default_rng(seed)
    colours = class_colours(NUM_CLASSES, seed)

    def draw(per_class):
        labels = np.repeat(np.arange(NUM_CLASSES), per_class)
        rng.shuffle(labels)
        return synthetic_images(labels, colours, IMAGE_SHAPE[1], rng), labels

    tr_x, tr_y = draw(train_per_class)
    te_x, te_y = draw(test_per_class)
    root = write_stl10(data_folder, tr_x, tr_y, te_x, te_y)
    mark_generated(os.path.join(root, GENERATED_MARKER), "STL-10 format", "STL-10")
    return root
