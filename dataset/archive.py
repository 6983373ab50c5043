"""A small data set's official archive, fetched or unpacked only when its folder holds no data.

CIFAR-100, STL-10 and Tiny-ImageNet are read from their extracted files; this is the one
way they get there: an archive already in the data folder is md5-checked and unpacked, else
torchvision downloads it (md5-checked too). Every failure is a one-line `DataError` that says
where to put the archive by hand; a failed download leaves no empty folders behind.
"""
import os
import tarfile
import zipfile

from util.errors import UsageError


class DataError(UsageError):
    """A data set that is missing, corrupt or malformed; the message says what to do."""


def _missing_folders(path):
    """The folders `os.makedirs(path)` would create, deepest first."""
    out = []
    path = os.path.abspath(path)
    while not os.path.exists(path):
        out.append(path)
        path = os.path.dirname(path)
    return out


def _remove_if_empty(folders):
    """Undo `os.makedirs` for the folders a failed download left empty (a partial file is kept
    out of them by torchvision's temp names; anything else in them stays)."""
    for folder in folders:
        try:
            os.rmdir(folder)
        except OSError:
            return


def download(url, data_folder, filename, md5, folder, not_found):
    """Fetch `url` as `filename` and extract it into `data_folder` (md5 checked). Offline, a DNS
    failure, an md5 mismatch, ...: a one-line DataError, `not_found` ("CIFAR-100 not found in
    '...'") followed by the cause and how to place the archive, or its extracted `folder`, by hand."""
    from torchvision.datasets.utils import download_and_extract_archive
    created = _missing_folders(data_folder)
    os.makedirs(data_folder, exist_ok=True)
    try:
        download_and_extract_archive(url, data_folder, filename=filename, md5=md5)
    except Exception as e:  # offline, DNS failure, md5 mismatch, ...
        _remove_if_empty(created)
        detail = str(e).splitlines()[0] if str(e) else "no detail"
        raise DataError(
            f"{not_found} and the download failed ({type(e).__name__}: {detail}); place '{filename}' from {url} in "
            f"'{data_folder}' (or its extracted '{folder}/' folder) and run again, or add --generate_data to try the "
            f"code on a small generated set (not for results)") from None


def extract(archive, data_folder, md5):
    """Unpack `archive` (.zip, else .tar.gz) into `data_folder` once its md5 is the official one."""
    from torchvision.datasets.utils import check_integrity
    if not check_integrity(archive, md5):
        raise DataError(f"'{archive}' does not match the official md5; delete it and download again")
    if archive.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(data_folder)
    else:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(data_folder, filter="data")


def unpack_or_download(data_folder, filename, unpack, fetch, not_found):
    """Bring a missing set into `data_folder`: `unpack(path, data_folder)` the archive `filename`
    when it lies there, else `fetch(data_folder)` (None: no download), else DataError(not_found).

    The two are callables so that each reader looks up its archive's address and md5 (from
    torchvision, a slow import) only when it needs them."""
    archive = os.path.join(data_folder, filename)
    if os.path.isfile(archive):
        unpack(archive, data_folder)
    elif fetch is not None:
        fetch(data_folder)
    else:
        raise DataError(not_found)
