"""What the readers of CIFAR-100, STL-10 and Tiny-ImageNet share in their tests: a download that fails as offline."""
import pytest

from dataset.archive import DataError


def load_offline(monkeypatch, load, data_folder):
    """`load(data_folder)` with torchvision's download failing as without a network -> (the
    DataError's message, checked to be one line naming the cause and --generate_data; the
    (url, filename, md5) of each download tried)."""
    import torchvision.datasets.utils as tvu
    calls = []

    def offline(url, folder, filename=None, md5=None, **kw):
        calls.append((url, filename, md5))
        raise OSError("network is unreachable")
    monkeypatch.setattr(tvu, "download_and_extract_archive", offline)
    with pytest.raises(DataError) as e:
        load(data_folder)
    msg = str(e.value)
    assert "\n" not in msg and "network is unreachable" in msg and "--generate_data" in msg
    return msg, calls
