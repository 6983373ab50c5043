"""STL-10's `stl10_binary/` files: the reader, the generated-set writer, layout errors, the download."""
import os

import numpy as np
import pytest
import torch

from dataset.stl10 import (FILES, FOLDER, GENERATED_MARKER, DataError, is_generated, load_stl10,
                           make_synthetic_stl10, write_stl10)
from tests.dataset.downloads import load_offline


def random_set(n_train=6, n_test=4, seed=0):
    g = np.random.default_rng(seed)
    return (g.integers(0, 256, size=(n_train, 3, 96, 96), dtype=np.uint8), g.integers(0, 10, size=n_train),
            g.integers(0, 256, size=(n_test, 3, 96, 96), dtype=np.uint8), g.integers(0, 10, size=n_test))


def test_images_and_labels_round_trip(tmp_path):
    tr_x, tr_y, te_x, te_y = random_set()
    write_stl10(str(tmp_path), tr_x, tr_y, te_x, te_y)
    data = load_stl10(str(tmp_path), download_if_missing=False)
    assert data["train"][0].dtype == torch.uint8 and data["train"][0].shape == (6, 3, 96, 96)
    assert torch.equal(data["train"][0], torch.from_numpy(tr_x))
    assert torch.equal(data["test"][0], torch.from_numpy(te_x))
    assert data["train"][1].dtype == torch.int64 and data["train"][1].tolist() == tr_y.tolist()
    assert data["test"][1].tolist() == te_y.tolist()
    assert len(data["classes"]) == 10


def test_files_are_the_official_format(tmp_path):
    """Column-major uint8 images and 1-based uint8 labels, as the real files: torchvision's own
    STL-10 reader gives the same images and 0-based labels."""
    tr_x, tr_y, te_x, te_y = random_set()
    root = write_stl10(str(tmp_path), tr_x, tr_y, te_x, te_y)
    assert sorted(os.listdir(root)) == sorted(list(FILES) + ["class_names.txt"])
    raw = np.fromfile(os.path.join(root, "train_X.bin"), dtype=np.uint8)
    assert raw.size == 6 * 3 * 96 * 96
    n, c, row, col = 2, 1, 5, 70  # the byte of (image n, channel c, column col, row row)
    assert raw[((n * 3 + c) * 96 + col) * 96 + row] == tr_x[n, c, row, col]
    assert np.fromfile(os.path.join(root, "train_y.bin"), dtype=np.uint8).tolist() == (tr_y + 1).tolist()
    from torchvision.datasets import STL10
    reader = STL10.__new__(STL10)
    reader.root, reader.base_folder = str(tmp_path), FOLDER
    images, labels = reader._STL10__loadfile("train_X.bin", "train_y.bin")
    assert np.array_equal(images, tr_x) and labels.tolist() == tr_y.tolist()


def test_generated_set_is_marked_learnable_and_balanced(tmp_path):
    make_synthetic_stl10(str(tmp_path), train_per_class=3, test_per_class=2)
    assert is_generated(str(tmp_path))
    assert os.path.isfile(os.path.join(tmp_path, FOLDER, GENERATED_MARKER))
    data = load_stl10(str(tmp_path), download_if_missing=False)
    assert torch.bincount(data["train"][1]).tolist() == [3] * 10
    assert torch.bincount(data["test"][1]).tolist() == [2] * 10
    # every class has its own colour: the per-image mean colour identifies the class
    x, y = data["train"]
    means = x.float().mean(dim=(2, 3))
    centres = torch.stack([means[y == k].mean(0) for k in range(10)])
    nearest = torch.cdist(means, centres).argmin(1)
    assert torch.equal(nearest, y)
    plain = tmp_path / "plain"
    write_stl10(str(plain), *random_set())
    assert not is_generated(str(plain))


@pytest.mark.parametrize("name", FILES)
def test_a_missing_file_is_named(tmp_path, name):
    root = write_stl10(str(tmp_path), *random_set())
    os.unlink(os.path.join(root, name))
    with pytest.raises(DataError) as e:
        load_stl10(str(tmp_path), download_if_missing=False)
    assert name in str(e.value) and "\n" not in str(e.value)


def test_truncated_images_and_label_mismatches(tmp_path):
    root = write_stl10(str(tmp_path), *random_set())
    x_path, y_path = os.path.join(root, "train_X.bin"), os.path.join(root, "train_y.bin")
    good = open(x_path, "rb").read()
    open(x_path, "wb").write(good[:-100])
    with pytest.raises(DataError, match="not a whole number of 3x96x96 images"):
        load_stl10(str(tmp_path), download_if_missing=False)
    open(x_path, "wb").write(good)
    np.array([1, 2, 3], dtype=np.uint8).tofile(y_path)
    with pytest.raises(DataError, match="3 labels for the 6 images"):
        load_stl10(str(tmp_path), download_if_missing=False)
    np.array([0, 1, 2, 3, 4, 5], dtype=np.uint8).tofile(y_path)
    with pytest.raises(DataError, match=r"labels must lie in 1\.\.10, got 0\.\.5"):
        load_stl10(str(tmp_path), download_if_missing=False)


def test_no_data_offline_names_folder_and_archive(tmp_path):
    with pytest.raises(DataError) as e:
        load_stl10(str(tmp_path), download_if_missing=False)
    assert os.path.join(str(tmp_path), FOLDER) in str(e.value) and "stl10_binary.tar.gz" in str(e.value)


def test_failed_download_is_one_line_and_leaves_no_empty_folder(tmp_path, monkeypatch):
    msg, calls = load_offline(monkeypatch, load_stl10, str(tmp_path / "new" / "data"))
    assert "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz" in msg
    from torchvision.datasets import STL10
    assert calls == [(STL10.url, STL10.filename, STL10.tgz_md5)]
    assert not (tmp_path / "new").exists()


def test_download_extracts_the_archive(tmp_path, monkeypatch):
    """The official archive extracts to stl10_binary/; a mocked download writes a set there."""
    import torchvision.datasets.utils as tvu
    tr_x, tr_y, te_x, te_y = random_set()
    monkeypatch.setattr(tvu, "download_and_extract_archive",
                        lambda url, folder, **kw: write_stl10(folder, tr_x, tr_y, te_x, te_y))
    data = load_stl10(str(tmp_path / "data"))
    assert torch.equal(data["train"][0], torch.from_numpy(tr_x))


def test_an_archive_of_the_wrong_md5_is_refused(tmp_path):
    (tmp_path / "stl10_binary.tar.gz").write_bytes(b"not the archive")
    with pytest.raises(DataError, match="does not match the official md5"):
        load_stl10(str(tmp_path), download_if_missing=False)
