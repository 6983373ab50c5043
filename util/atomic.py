"""Files written all or nothing: a temp file in the same folder, fsync, then rename.

A crash while writing leaves the previous file intact (the folder is fsynced too, so the
rename itself survives a power cut). A process killed mid-write leaves at most a
`.tmp_*` file, which `remove_stale_temp_files` clears on the next start.
"""
import json
import os
import tempfile

import torch

TEMP_PREFIX = ".tmp_"


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_folder(folder):
    """Make a rename durable; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path, suffix, mode, write):
    """Write `path` via a temp file in its folder + fsync + rename; the old file survives any failure."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=suffix, dir=folder)
    try:
        # mkstemp creates 0600 files: give the result the permissions a plain open() would
        os.chmod(tmp, 0o666 & ~_current_umask())
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def atomic_save(obj, path):
    """torch.save(obj, path), all or nothing."""
    _atomic_write(path, ".pth", "wb", lambda fh: torch.save(obj, fh))


def atomic_write_json(obj, path):
    """JSON (indented, sorted keys), all or nothing."""
    def write(fh):
        json.dump(obj, fh, indent=1, sort_keys=True)
        fh.write("\n")
    _atomic_write(path, ".json", "w", write)


def read_json_object(path):
    """The JSON object in `path`, or {} when the file is missing, unreadable or not an object
    (run.json / summary.json that a reader can do without)."""
    try:
        with open(path) as fh:
            value = json.load(fh)
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def atomic_write_text(text, path):
    """A text file, all or nothing."""
    _atomic_write(path, ".txt", "w", lambda fh: fh.write(text))


def remove_stale_temp_files(folder):
    """Delete the temp files a killed writer left behind in `folder`; returns their names."""
    if not os.path.isdir(folder):
        return []
    stale = [n for n in os.listdir(folder) if n.startswith(TEMP_PREFIX)]
    for name in stale:
        try:
            os.unlink(os.path.join(folder, name))
        except OSError:
            pass
    return stale
