"""Tiny-ImageNet-200's folder layout: the reader, the generated-set writer, layout errors, the download."""
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from dataset.tiny_imagenet import (ARCHIVE, FOLDER, GENERATED_MARKER, MD5, URL, DataError, find_root, is_generated,
                                   load_tiny_imagenet, make_synthetic_tiny_imagenet, write_tiny_imagenet)
from tests.dataset.downloads import load_offline

WNIDS = ["n03444034", "n01443537", "n09999999"]  # unsorted, as the official wnids.txt


def random_set(per_class=2, val_per_class=1, seed=0):
    g = np.random.default_rng(seed)
    k = len(WNIDS)
    tr_y = np.repeat(np.arange(k), per_class)
    va_y = np.repeat(np.arange(k), val_per_class)
    smooth = lambda n: np.clip(g.normal(128, 40, size=(n, 3, 8, 8)), 0, 255).repeat(8, 2).repeat(8, 3)  # noqa: E731
    return smooth(len(tr_y)).astype(np.uint8), tr_y, smooth(len(va_y)).astype(np.uint8), va_y


@pytest.fixture
def tiny(tmp_path):
    tr_x, tr_y, va_x, va_y = random_set()
    root = write_tiny_imagenet(str(tmp_path), WNIDS, tr_x, tr_y, va_x, va_y)
    return tmp_path, root, (tr_x, tr_y, va_x, va_y)


def decode(path):
    with Image.open(path) as img:
        return torch.from_numpy(np.asarray(img.convert("RGB")).transpose(2, 0, 1).copy())


def test_round_trip_in_the_official_layout(tiny):
    folder, root, (tr_x, tr_y, va_x, va_y) = tiny
    assert root == os.path.join(str(folder), FOLDER)
    for path in ("wnids.txt", "words.txt", "val/val_annotations.txt", "val/images/val_0.JPEG",
                 "train/n03444034/images/n03444034_0.JPEG", "train/n03444034/n03444034_boxes.txt",
                 "test/images/test_0.JPEG"):
        assert os.path.isfile(os.path.join(root, path)), path
    data = load_tiny_imagenet(str(folder), download_if_missing=False, workers=2)
    assert data["classes"] == sorted(WNIDS)
    x, y = data["train"]
    assert x.dtype == torch.uint8 and x.shape == (6, 3, 64, 64) and y.tolist() == tr_y.tolist()
    assert data["test"][0].shape == (3, 3, 64, 64) and data["test"][1].tolist() == va_y.tolist()
    # the pixels are Pillow's decoding of the files, close to what was written (JPEG is lossy)
    classes = sorted(WNIDS)
    assert torch.equal(x[0], decode(os.path.join(root, "train", classes[0], "images", f"{classes[0]}_0.JPEG")))
    assert (x.float() - torch.from_numpy(tr_x).float()).abs().mean() < 8
    assert (data["test"][0].float() - torch.from_numpy(va_x).float()).abs().mean() < 8


def test_labels_are_imagefolders(tiny):
    """Class i is the i-th sorted wnid, as torchvision's ImageFolder over train/ (the authors' reader)."""
    from torchvision.datasets import ImageFolder
    folder, root, _ = tiny
    reference = ImageFolder(os.path.join(root, "train"))
    data = load_tiny_imagenet(str(folder), download_if_missing=False)
    assert reference.classes == data["classes"]
    assert [label for _, label in reference.samples] == data["train"][1].tolist()
    first = decode(reference.samples[0][0])
    assert torch.equal(first, data["train"][0][0])


def test_data_folder_may_be_the_set_itself(tiny):
    folder, root, _ = tiny
    assert find_root(str(folder)) == root and find_root(root) == root
    a = load_tiny_imagenet(str(folder), download_if_missing=False)
    b = load_tiny_imagenet(root, download_if_missing=False)
    assert torch.equal(a["train"][0], b["train"][0]) and torch.equal(a["test"][1], b["test"][1])


def test_val_sorted_into_class_folders_reads_the_same(tiny):
    """The layout ImageFolder needs for val/ (how the authors' script must have seen it)."""
    folder, root, _ = tiny
    before = load_tiny_imagenet(str(folder), download_if_missing=False)
    with open(os.path.join(root, "val", "val_annotations.txt")) as fh:
        for line in fh:
            name, wnid = line.split("\t")[:2]
            os.makedirs(os.path.join(root, "val", wnid, "images"), exist_ok=True)
            shutil.move(os.path.join(root, "val", "images", name), os.path.join(root, "val", wnid, "images", name))
    os.unlink(os.path.join(root, "val", "val_annotations.txt"))
    os.rmdir(os.path.join(root, "val", "images"))
    after = load_tiny_imagenet(str(folder), download_if_missing=False)
    order = lambda d: sorted(zip(d["test"][1].tolist(), d["test"][0].sum(dim=(1, 2, 3)).tolist()))  # noqa: E731
    assert order(before) == order(after)


def test_greyscale_images_become_rgb(tiny):
    folder, root, _ = tiny
    path = os.path.join(root, "val", "images", "val_0.JPEG")
    Image.fromarray(np.full((64, 64), 77, dtype=np.uint8), mode="L").save(path, "JPEG")
    data = load_tiny_imagenet(str(folder), download_if_missing=False)
    assert data["test"][0].shape[1] == 3 and data["test"][0][0].float().mean().round() == 77


def test_generated_set_is_marked(tmp_path):
    root = make_synthetic_tiny_imagenet(str(tmp_path), num_classes=4, train_per_class=2, val_per_class=1)
    assert os.path.isfile(os.path.join(root, GENERATED_MARKER)) and is_generated(str(tmp_path))
    data = load_tiny_imagenet(str(tmp_path), download_if_missing=False)
    assert len(data["classes"]) == 4 and torch.bincount(data["train"][1]).tolist() == [2] * 4
    tr_x, tr_y, va_x, va_y = random_set()
    write_tiny_imagenet(str(tmp_path / "plain"), WNIDS, tr_x, tr_y, va_x, va_y)
    assert not is_generated(str(tmp_path / "plain"))


def _remove(path):
    shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)


def _edit(path, old, new):
    with open(path) as fh:
        text = fh.read()
    with open(path, "w") as fh:
        fh.write(text.replace(old, new, 1))


BREAKAGES = {
    "no wnids.txt": (lambda r: _remove(os.path.join(r, "wnids.txt")), "wnids.txt"),
    "no train/": (lambda r: _remove(os.path.join(r, "train")), "train"),
    "no val/": (lambda r: _remove(os.path.join(r, "val")), "val"),
    "a class folder missing": (lambda r: _remove(os.path.join(r, "train", "n09999999")), "n09999999"),
    "a folder not in wnids.txt": (lambda r: os.makedirs(os.path.join(r, "train", "n00000001", "images")), "n00000001"),
    "no images/ in a class": (lambda r: _remove(os.path.join(r, "train", "n01443537", "images")),
                              os.path.join("n01443537", "images")),
    "an empty class": (lambda r: [_remove(os.path.join(r, "train", "n01443537", "images", f))
                                  for f in os.listdir(os.path.join(r, "train", "n01443537", "images"))],
                       "holds no images"),
    "no val_annotations.txt": (lambda r: _remove(os.path.join(r, "val", "val_annotations.txt")),
                               "val_annotations.txt"),
    "no val/images/": (lambda r: _remove(os.path.join(r, "val", "images")), os.path.join("val", "images")),
    "an annotated image missing": (lambda r: _remove(os.path.join(r, "val", "images", "val_1.JPEG")), "val_1.JPEG"),
    "an unannotated image": (lambda r: shutil.copy(os.path.join(r, "val", "images", "val_0.JPEG"),
                                                   os.path.join(r, "val", "images", "val_99.JPEG")), "val_99.JPEG"),
    "an unknown class in val": (lambda r: _edit(os.path.join(r, "val", "val_annotations.txt"), "\tn",
                                                "\tn77777777_"), "is not in wnids.txt"),
    "a malformed annotation": (lambda r: _edit(os.path.join(r, "val", "val_annotations.txt"), "\t", " "),
                               "line 1"),
    "a corrupt image": (lambda r: open(os.path.join(r, "val", "images", "val_2.JPEG"), "wb").write(b"\xff\xd8junk"),
                        "val_2.JPEG"),
    "an image of another size": (lambda r: Image.new("RGB", (32, 32)).save(
        os.path.join(r, "train", "n03444034", "images", "n03444034_1.JPEG")), "n03444034_1.JPEG"),
}


@pytest.mark.parametrize("case", list(BREAKAGES))
def test_broken_layouts_are_one_line_errors_naming_what_is_wrong(tiny, case):
    folder, root, _ = tiny
    breakage, named = BREAKAGES[case]
    breakage(root)
    with pytest.raises(DataError) as e:
        load_tiny_imagenet(str(folder), download_if_missing=False)
    msg = str(e.value)
    assert "\n" not in msg and named in msg, msg


def test_no_data_offline_names_folder_and_archive(tmp_path):
    with pytest.raises(DataError) as e:
        load_tiny_imagenet(str(tmp_path), download_if_missing=False)
    assert str(tmp_path) in str(e.value) and ARCHIVE in str(e.value)


def test_failed_download_is_one_line_and_leaves_no_empty_folder(tmp_path, monkeypatch):
    msg, calls = load_offline(monkeypatch, load_tiny_imagenet, str(tmp_path / "new" / "data"))
    assert URL in msg
    assert calls == [("http://cs231n.stanford.edu/tiny-imagenet-200.zip", "tiny-imagenet-200.zip", MD5)]
    assert not (tmp_path / "new").exists()


def test_download_extracts_the_zip(tmp_path, monkeypatch):
    """The official zip extracts to tiny-imagenet-200/; a mocked download writes a set there."""
    import torchvision.datasets.utils as tvu
    tr_x, tr_y, va_x, va_y = random_set()
    monkeypatch.setattr(tvu, "download_and_extract_archive",
                        lambda url, folder, **kw: write_tiny_imagenet(folder, WNIDS, tr_x, tr_y, va_x, va_y))
    data = load_tiny_imagenet(str(tmp_path / "data"))
    assert data["train"][1].tolist() == tr_y.tolist()


def test_a_zip_of_the_wrong_md5_is_refused(tmp_path):
    (tmp_path / ARCHIVE).write_bytes(b"not the archive")
    with pytest.raises(DataError, match="does not match the official md5"):
        load_tiny_imagenet(str(tmp_path), download_if_missing=False)
