import os
import pickle

import numpy as np
import pytest
import torch
from sklearn.model_selection import StratifiedShuffleSplit

from dataset.cifar import (DataError, FOLDER, load_cifar100, make_synthetic_cifar100, stratified_subset,
                           write_cifar100)
from tests.dataset.downloads import load_offline


def test_reads_the_pickle_layout(tiny_cifar):
    data = load_cifar100(str(tiny_cifar), download_if_missing=False)
    x, y = data["train"]
    assert x.dtype == torch.uint8 and x.shape == (1000, 3, 32, 32)
    assert y.dtype == torch.int64 and y.shape == (1000,)
    assert sorted(torch.bincount(y).tolist()) == [10] * 100
    assert data["test"][0].shape == (200, 3, 32, 32)
    for name in ("train", "test", "meta"):
        assert os.path.isfile(os.path.join(tiny_cifar, FOLDER, name))


def test_layout_matches_official_format(tiny_cifar):
    with open(os.path.join(tiny_cifar, FOLDER, "train"), "rb") as fh:
        entry = pickle.load(fh, encoding="latin1")
    assert set(entry) >= {"data", "fine_labels", "coarse_labels", "filenames", "batch_label"}
    assert entry["data"].dtype == np.uint8 and entry["data"].shape == (1000, 3072)
    with open(os.path.join(tiny_cifar, FOLDER, "meta"), "rb") as fh:
        meta = pickle.load(fh, encoding="latin1")
    assert len(meta["fine_label_names"]) == 100


def test_images_round_trip(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, size=(4, 3, 32, 32), dtype=np.uint8)
    write_cifar100(str(tmp_path), x, [0, 1, 2, 99], x[:2], [5, 6])
    data = load_cifar100(str(tmp_path), download_if_missing=False)
    assert torch.equal(data["train"][0], torch.from_numpy(x))
    assert data["train"][1].tolist() == [0, 1, 2, 99]


def test_missing_data_offline_names_folder_and_archive(tmp_path):
    with pytest.raises(DataError) as e:
        load_cifar100(str(tmp_path), download_if_missing=False)
    assert str(tmp_path) in str(e.value) and "cifar-100-python.tar.gz" in str(e.value)


def test_failed_download_is_one_clear_error(tmp_path, monkeypatch):
    msg, _ = load_offline(monkeypatch, load_cifar100, str(tmp_path))
    assert "cifar-100-python.tar.gz" in msg


def test_failed_download_leaves_no_empty_folder_behind(tmp_path, monkeypatch):
    load_offline(monkeypatch, load_cifar100, str(tmp_path / "new" / "data"))
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "mine.txt").write_text("x")
    load_offline(monkeypatch, load_cifar100, str(tmp_path / "kept"))
    assert (tmp_path / "kept" / "mine.txt").exists()  # a folder that was there stays


def test_generated_sets_carry_a_marker(tmp_path):
    from dataset.cifar import is_generated, make_synthetic_cifar100, write_cifar100
    make_synthetic_cifar100(str(tmp_path / "gen"), train_per_class=1, test_per_class=1)
    assert is_generated(str(tmp_path / "gen"))
    x = torch.zeros(100, 3, 32, 32, dtype=torch.uint8)
    write_cifar100(str(tmp_path / "plain"), x, torch.arange(100), x, torch.arange(100))
    assert not is_generated(str(tmp_path / "plain"))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "bad_labels", "bad_shape", "missing_test"])
def test_corrupt_files_are_rejected(tmp_path, damage):
    make_synthetic_cifar100(str(tmp_path), train_per_class=1, test_per_class=1)
    train = os.path.join(tmp_path, FOLDER, "train")
    if damage == "truncate":
        blob = open(train, "rb").read()
        open(train, "wb").write(blob[: len(blob) // 2])
    elif damage == "garbage":
        open(train, "wb").write(b"not a pickle at all")
    elif damage in ("bad_labels", "bad_shape"):
        entry = pickle.load(open(train, "rb"), encoding="latin1")
        if damage == "bad_labels":
            entry["fine_labels"][0] = 100
        else:
            entry["data"] = entry["data"][:, :100]
        pickle.dump(entry, open(train, "wb"))
    else:
        os.unlink(os.path.join(tmp_path, FOLDER, "test"))
    with pytest.raises(DataError) as e:
        load_cifar100(str(tmp_path), download_if_missing=False)
    assert "\n" not in str(e.value)


def test_download_uses_official_md5(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu
    seen = {}

    def fake(url, root, filename=None, md5=None, **k):
        seen.update(url=url, root=root, filename=filename, md5=md5)
        make_synthetic_cifar100(root, 1, 1)
    monkeypatch.setattr(tvu, "download_and_extract_archive", fake)
    load_cifar100(str(tmp_path))
    assert seen["md5"] == "eb9058c3a382ffc7106e4002c42a8d85"
    assert seen["filename"] == "cifar-100-python.tar.gz" and seen["url"].endswith("cifar-100-python.tar.gz")


def _authors_subset(labels, ratio):
    """The PACKD authors' --few-ratio code: the train part of sklearn's StratifiedShuffleSplit."""
    targets = [int(v) for v in labels]
    ss = StratifiedShuffleSplit(n_splits=1, test_size=1 - ratio, random_state=0)
    train_indices, _ = list(ss.split(np.array(targets)[:, np.newaxis], targets))[0]
    return train_indices


# 100 classes x 500 images, in a shuffled order like the real training file's.
CIFAR_LIKE = np.random.RandomState(2024).permutation(np.repeat(np.arange(100), 500))


# 0.7, 0.45 and 0.85: `1 - ratio` is inexact in floats (1 - 0.7 = 0.30000000000000004), which
# moves sklearn's ceil(test_size * n) by one image.
@pytest.mark.parametrize("ratio", [0.1, 0.25, 0.3, 0.5, 0.7, 0.9, 0.45, 0.85])
def test_stratified_subset_matches_authors_split_on_cifar_like_labels(ratio):
    keep = stratified_subset(torch.from_numpy(CIFAR_LIKE), ratio)
    expected = _authors_subset(CIFAR_LIKE, ratio)
    assert keep.dtype == torch.int64
    assert np.array_equal(keep.numpy(), expected)  # same indices, same order


def test_stratified_subset_follows_float_rounding_of_one_minus_ratio():
    keep = stratified_subset(torch.from_numpy(CIFAR_LIKE), 0.7)
    assert len(keep) == 34999  # 50000 - ceil(0.30000000000000004 * 50000), as sklearn computes
    assert len(set(keep.tolist())) == len(keep)
    assert sorted(np.bincount(CIFAR_LIKE[keep.numpy()]).tolist()) == [349] + [350] * 99


@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.7, 0.45, 0.8, 0.29, 0.51])
def test_stratified_subset_matches_authors_split_on_unbalanced_labels(ratio):
    # Unequal class sizes and gapped class ids. At 0.3 and 0.5 several classes tie for the
    # last places, so sklearn's `_approximate_mode` breaks the ties with its generator; at
    # 0.29 and 0.51 float rounding makes its second call (the held-out counts) draw too.
    sizes = [2, 3, 3, 5, 5, 5, 7, 7, 8, 11, 11, 13, 20]
    labels = np.random.RandomState(5).permutation(np.repeat(np.arange(len(sizes)) * 7, sizes))
    keep = stratified_subset(torch.from_numpy(labels), ratio)
    assert np.array_equal(keep.numpy(), _authors_subset(labels, ratio))


def test_stratified_subset_of_ratio_one_is_everything():
    labels = torch.from_numpy(CIFAR_LIKE[:1000])
    assert torch.equal(stratified_subset(labels, 1.0), torch.arange(1000))
    assert torch.equal(stratified_subset(labels, 1), torch.arange(1000))


@pytest.mark.parametrize("ratio", [0.0, -0.5, 1.5])
def test_stratified_subset_rejects_ratio_outside_unit_interval(ratio):
    with pytest.raises(ValueError, match="--few-ratio") as e:
        stratified_subset(torch.from_numpy(CIFAR_LIKE[:1000]), ratio)
    assert str(ratio) in str(e.value)


@pytest.mark.parametrize("ratio", [0.001, 0.999])
def test_stratified_subset_rejects_ratios_sklearn_rejects(ratio):
    # 0.001 keeps 50 images for 100 classes; 0.999 leaves out 51: sklearn refuses both.
    with pytest.raises(ValueError):
        _authors_subset(CIFAR_LIKE, ratio)
    with pytest.raises(ValueError, match="--few-ratio") as e:
        stratified_subset(torch.from_numpy(CIFAR_LIKE), ratio)
    assert "\n" not in str(e.value) and str(ratio) in str(e.value)


def test_stratified_subset_rejects_a_class_with_one_image():
    labels = np.array([0, 0, 1, 1, 2, 3, 3, 0, 1, 3])
    with pytest.raises(ValueError):
        _authors_subset(labels, 0.5)
    with pytest.raises(ValueError, match="--few-ratio"):
        stratified_subset(torch.from_numpy(labels), 0.5)
