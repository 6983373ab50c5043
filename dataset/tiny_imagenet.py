"""Tiny-ImageNet-200 in its official folder layout, decoded into uint8 tensors.

    tiny-imagenet-200/
        wnids.txt                              the class ids (WordNet ids), one a line
        train/<wnid>/images/<wnid>_<k>.JPEG    500 images of 64 x 64 per class
        val/images/val_<k>.JPEG                10,000 images ...
        val/val_annotations.txt                ... labelled here: file, wnid, box (tab-separated)

Class i is the i-th wnid in sorted order, which is what torchvision's `ImageFolder` over
`train/` (the PACKD authors' reader) assigns. A `val/` already sorted into class folders
(`val/<wnid>/...`, how `ImageFolder` must see it to label validation images) is read too.
Images are decoded with Pillow and converted to RGB (a few Tiny-ImageNet images are
greyscale), as `ImageFolder`'s loader does. Used by `eval_rep.py` (linear-probe transfer).

The official zip (cs231n.stanford.edu, md5-checked) is downloaded only when no set is found.
`--data_folder` may name the set itself (a folder holding wnids.txt, train/, val/) or a
folder holding `tiny-imagenet-200/`. Generated test sets carry `GENERATED_MARKER`.
"""
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from dataset import archive
from dataset.archive import DataError
from dataset.generated import class_colours, mark_generated, synthetic_images

FOLDER = "tiny-imagenet-200"
URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
ARCHIVE = "tiny-imagenet-200.zip"
MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
NUM_CLASSES = 200
IMAGE_SIZE = 64
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
ANNOTATIONS = os.path.join("val", "val_annotations.txt")
# Written beside a generated set's files: such a set can never pass for Tiny-ImageNet.
GENERATED_MARKER = "GENERATED_NOT_TINY_IMAGENET.txt"


def find_root(data_folder):
    """The set's own folder: `data_folder` when it holds wnids.txt or train/, else `data_folder/tiny-imagenet-200`."""
    if any(os.path.exists(os.path.join(data_folder, p)) for p in ("wnids.txt", "train")):
        return data_folder
    return os.path.join(data_folder, FOLDER)


def has_tiny_imagenet(data_folder):
    root = find_root(data_folder)
    return any(os.path.exists(os.path.join(root, p)) for p in ("wnids.txt", "train", "val"))


def is_generated(data_folder):
    """True when the set in `data_folder` was written by `make_synthetic_tiny_imagenet`."""
    return os.path.isfile(os.path.join(find_root(data_folder), GENERATED_MARKER))


def download(data_folder):
    """Fetch and extract the official zip into `data_folder` (md5 checked); one-line DataError offline."""
    archive.download(URL, data_folder, ARCHIVE, MD5, FOLDER, not_found=f"Tiny-ImageNet not found in '{data_folder}'")


def _extract(path, data_folder):
    archive.extract(path, data_folder, MD5)


def _images_in(folder):
    """Image files under `folder` (recursively), sorted as ImageFolder walks them."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        found.extend(os.path.join(dirpath, f) for f in sorted(filenames) if f.lower().endswith(IMAGE_EXTENSIONS))
    return found


def read_wnids(root):
    path = os.path.join(root, "wnids.txt")
    try:
        with open(path) as fh:
            wnids = [line.strip() for line in fh if line.strip()]
    except OSError:
        raise DataError(f"missing file '{path}': a Tiny-ImageNet folder needs wnids.txt, train/ and val/") from None
    if not wnids:
        raise DataError(f"'{path}' lists no class ids")
    if len(set(wnids)) != len(wnids):
        raise DataError(f"'{path}' lists a class id twice")
    return wnids


def _train_files(root, classes):
    train = os.path.join(root, "train")
    if not os.path.isdir(train):
        raise DataError(f"missing folder '{train}': a Tiny-ImageNet folder needs wnids.txt, train/ and val/")
    present = {d for d in os.listdir(train) if os.path.isdir(os.path.join(train, d))}
    absent = [c for c in classes if c not in present]
    if absent:
        raise DataError(f"'{train}' lacks the class folder(s) {_some(absent)} listed in wnids.txt")
    extra = sorted(present - set(classes))
    if extra:
        raise DataError(f"'{train}' holds folder(s) {_some(extra)} not listed in wnids.txt")
    files, labels = [], []
    for label, wnid in enumerate(classes):
        folder = os.path.join(train, wnid, "images")
        if not os.path.isdir(folder):
            raise DataError(f"missing folder '{folder}' (train/<wnid>/images/ holds each class's images)")
        found = _images_in(folder)
        if not found:
            raise DataError(f"'{folder}' holds no images")
        files.extend(found)
        labels.extend([label] * len(found))
    return files, labels


def _val_files(root, classes):
    val = os.path.join(root, "val")
    if not os.path.isdir(val):
        raise DataError(f"missing folder '{val}': a Tiny-ImageNet folder needs wnids.txt, train/ and val/")
    index = {wnid: i for i, wnid in enumerate(classes)}
    annotations = os.path.join(root, ANNOTATIONS)
    if os.path.isfile(annotations):
        return _annotated_val(root, annotations, index)
    # val/ sorted into class folders (what ImageFolder needs): val/<wnid>/...
    sorted_into = sorted(d for d in os.listdir(val) if d in index and os.path.isdir(os.path.join(val, d)))
    if not sorted_into:
        raise DataError(f"missing file '{annotations}' (it labels val/images/; or sort val/ into class folders "
                        f"val/<wnid>/)")
    files, labels = [], []
    for wnid in sorted_into:
        found = _images_in(os.path.join(val, wnid))
        files.extend(found)
        labels.extend([index[wnid]] * len(found))
    if not files:
        raise DataError(f"the class folders of '{val}' hold no images")
    return files, labels


def _annotated_val(root, annotations, index):
    images = os.path.join(root, "val", "images")
    if not os.path.isdir(images):
        raise DataError(f"missing folder '{images}' (the images val_annotations.txt labels)")
    files, labels = [], []
    with open(annotations) as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 2:
                raise DataError(f"'{annotations}' line {number}: expected '<file>\\t<wnid>\\t<box>', "
                                f"got '{line.strip()[:80]}'")
            name, wnid = fields[0].strip(), fields[1].strip()
            if wnid not in index:
                raise DataError(f"'{annotations}' line {number}: class id '{wnid}' is not in wnids.txt")
            files.append(os.path.join(images, name))
            labels.append(index[wnid])
    if not files:
        raise DataError(f"'{annotations}' labels no images")
    absent = [os.path.basename(f) for f in files if not os.path.isfile(f)]
    if absent:
        raise DataError(f"'{images}' lacks {len(absent)} image(s) listed in val_annotations.txt, e.g. {_some(absent)}")
    listed = set(os.path.basename(f) for f in files)
    unlabelled = [os.path.basename(f) for f in _images_in(images) if os.path.basename(f) not in listed]
    if unlabelled:
        raise DataError(f"'{images}' holds {len(unlabelled)} image(s) val_annotations.txt does not label, "
                        f"e.g. {_some(unlabelled)}")
    return files, labels


def _some(names, k=3):
    shown = ", ".join(f"'{n}'" for n in names[:k])
    return shown + (f" (and {len(names) - k} more)" if len(names) > k else "")


def _decode(path):
    from PIL import Image
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except Exception as e:  # truncated file, not an image, ...
        raise DataError(f"cannot read image '{path}' ({type(e).__name__}): the file is corrupt; "
                        f"delete the set and extract it again") from None


def decode_images(files, workers=None):
    """uint8 (N, 3, H, W) of RGB images, decoded by Pillow in threads; all must share one size."""
    workers = workers or min(32, os.cpu_count() or 1)
    first = _decode(files[0])
    out = np.empty((len(files), *first.shape), dtype=np.uint8)
    chunk = max(1, -(-len(files) // (workers * 4)))

    def fill(start):
        for i in range(start, min(start + chunk, len(files))):
            pixels = _decode(files[i])
            if pixels.shape != first.shape:
                raise DataError(f"image '{files[i]}' is {pixels.shape[1]}x{pixels.shape[0]}, but '{files[0]}' is "
                                f"{first.shape[1]}x{first.shape[0]}: a Tiny-ImageNet split has one image size")
            out[i] = pixels

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(fill, s) for s in range(0, len(files), chunk)]:
            future.result()
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def load_tiny_imagenet(data_folder, download_if_missing=True, workers=None):
    """-> dict(train=(uint8 (N, 3, 64, 64), int64 labels), test=(the val split ...), classes=[sorted wnids]).

    The layout is checked before any image is decoded; every problem is a one-line DataError.
    """
    if not has_tiny_imagenet(data_folder):
        archive.unpack_or_download(
            data_folder, ARCHIVE, _extract, download if download_if_missing else None,
            not_found=f"Tiny-ImageNet not found in '{data_folder}' (no wnids.txt, train/ or val/ there or in "
                      f"'{os.path.join(data_folder, FOLDER)}'); place '{ARCHIVE}' or its extracted '{FOLDER}/' "
                      f"folder in '{data_folder}'")
    root = find_root(data_folder)
    classes = sorted(read_wnids(root))
    train_files, train_labels = _train_files(root, classes)
    val_files, val_labels = _val_files(root, classes)
    return {"train": (decode_images(train_files, workers), torch.tensor(train_labels, dtype=torch.int64)),
            "test": (decode_images(val_files, workers), torch.tensor(val_labels, dtype=torch.int64)),
            "classes": classes}


def write_tiny_imagenet(data_folder, wnids, train_images, train_labels, val_images, val_labels, quality=95):
    """Write uint8 images (N, 3, H, W) in the official `tiny-imagenet-200/` layout as JPEG files.

    `wnids` in the order wnids.txt lists them; labels index the *sorted* wnids (as the reader
    assigns them). Also writes words.txt, the per-class boxes files and a test/images/ folder.
    """
    root = os.path.join(data_folder, FOLDER)
    classes = sorted(wnids)
    from PIL import Image

    def save(image, path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(np.asarray(image, dtype=np.uint8).transpose(1, 2, 0)).save(path, "JPEG", quality=quality)

    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "wnids.txt"), "w") as fh:
        fh.write("".join(f"{w}\n" for w in wnids))
    with open(os.path.join(root, "words.txt"), "w") as fh:
        fh.write("".join(f"{w}\tgenerated class {w}\n" for w in wnids))
    count = {w: 0 for w in classes}
    boxes = {w: [] for w in classes}
    h, w_ = train_images.shape[-2:]
    for image, label in zip(train_images, train_labels):
        wnid = classes[int(label)]
        name = f"{wnid}_{count[wnid]}.JPEG"
        count[wnid] += 1
        save(image, os.path.join(root, "train", wnid, "images", name))
        boxes[wnid].append(f"{name}\t0\t0\t{w_ - 1}\t{h - 1}\n")
    for wnid in classes:
        os.makedirs(os.path.join(root, "train", wnid, "images"), exist_ok=True)
        with open(os.path.join(root, "train", wnid, f"{wnid}_boxes.txt"), "w") as fh:
            fh.write("".join(boxes[wnid]))
    lines = []
    for k, (image, label) in enumerate(zip(val_images, val_labels)):
        save(image, os.path.join(root, "val", "images", f"val_{k}.JPEG"))
        lines.append(f"val_{k}.JPEG\t{classes[int(label)]}\t0\t0\t{w_ - 1}\t{h - 1}\n")
    os.makedirs(os.path.join(root, "val", "images"), exist_ok=True)
    with open(os.path.join(root, ANNOTATIONS), "w") as fh:
        fh.write("".join(lines))
    for k, image in enumerate(val_images[:2]):  # the unlabelled test split: a few images, never read
        save(image, os.path.join(root, "test", "images", f"test_{k}.JPEG"))
    return root


def make_synthetic_tiny_imagenet(data_folder, num_classes=5, train_per_class=20, val_per_class=10, seed=0):
    """Write a small *learnable* data set in the Tiny-ImageNet layout (for tests and offline tries)."""
    rng = np.random.default_rng(seed)
    colours = class_colours(num_classes, seed)
    wnids = [f"n{90000000 + 1013 * k:08d}" for k in range(num_classes)]
    rng.shuffle(wnids)  # wnids.txt is not in sorted order in the official set either

    def draw(per_class):
        labels = np.repeat(np.arange(num_classes), per_class)
        rng.shuffle(labels)
        return synthetic_images(labels, colours, IMAGE_SIZE, rng), labels

    tr_x, tr_y = draw(train_per_class)
    va_x, va_y = draw(val_per_class)
    root = write_tiny_imagenet(data_folder, wnids, tr_x, tr_y, va_x, va_y)
    mark_generated(os.path.join(root, GENERATED_MARKER), "Tiny-ImageNet-200 layout", "Tiny-ImageNet")
    return root
