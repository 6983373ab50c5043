"""The projection head the authors train on the frozen teacher (`models/wrapper.py`),
and the cache that lets runs sharing a teacher train it once."""
import contextlib
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from util.atomic import atomic_save
from util.errors import UsageError
from util.fingerprint import settings_digest

# The authors' projection multiplies the unit-norm teacher projection by 16 before the
# classifier (models/wrapper.py): a fixed logit scale for the cosine-style classifier.
PROJ_SCALE = 16.0
DEFAULT_HEAD_CACHE_DIR = "save_packd_t"


class TeacherProjection(nn.Module):
    """The head the authors put on the frozen teacher (models/wrapper.py).

    pooled (N, d) -> proj_head: Linear(d, feat_dim) -> ReLU -> Linear(feat_dim, feat_dim),
    L2-normalised and scaled by 16 -> classifier Linear(feat_dim, num_classes).
    Returns (scaled projection, classifier logits); PACKD distils from the projection.
    """

    def __init__(self, in_dim, feat_dim=128, num_classes=100):
        super().__init__()
        self.proj_head = nn.Sequential(nn.Linear(in_dim, feat_dim), nn.ReLU(inplace=True),
                                       nn.Linear(feat_dim, feat_dim))
        self.classifier = nn.Linear(feat_dim, num_classes)

    def forward(self, pooled):
        proj = F.normalize(self.proj_head(pooled.flatten(1)), dim=1) * PROJ_SCALE
        return proj, self.classifier(proj)


# Flags that shape the trained head (besides the teacher's weights and precision): its
# optimiser and epochs, its input (feature size, views per sample, data subset, batches).
HEAD_SETTINGS = ("t_epoch", "t_lr", "t_momentum", "t_weight_decay", "feat_dim", "mixup_num", "mixup_ratio",
                 "mixup_rotate", "few_ratio", "batch_size", "dataset", "generated_data")


def head_cache_key(teacher_weights, opt, teacher_bf16=False):
    """Everything that shapes a trained head, as a plain dict (stored in the cache file).

    Not the seed: as the authors, one head serves every trial of a teacher."""
    key = {"teacher_weights": str(teacher_weights), "teacher_precision": "bf16" if teacher_bf16 else "float32"}
    for name in HEAD_SETTINGS:
        value = getattr(opt, name, None)
        key[name] = value if value is None or isinstance(value, (bool, int, float, str)) else str(value)
    return key


def head_cache_path(cache_dir, teacher_name, key):
    """`<cache_dir>/<teacher>_<digest of key>_embed.pth`: the authors' name plus the settings,
    so a head trained under other settings is never picked up."""
    return os.path.join(cache_dir, f"{teacher_name}_{settings_digest(key)}_embed.pth")


def load_cached_head(path, key):
    """The state dict of a cached head; UsageError when the file records other settings."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated by hand, foreign pickle, ...
        raise UsageError(f"PACKD head cache '{path}' is unreadable ({type(e).__name__}); delete it to retrain "
                         f"the head") from None
    theirs = saved.get("key") if isinstance(saved, dict) else None
    if theirs != key:
        differ = sorted(k for k in key if not isinstance(theirs, dict) or theirs.get(k) != key[k])
        raise UsageError(f"PACKD head cache '{path}' was trained with other settings ({', '.join(differ)}); "
                         f"delete it to retrain the head")
    return saved["model"]


def save_cached_head(state, t_epoch, key, path):
    """Atomically: {"model": backbone.* + proj_head.* + classifier.* (the authors' layout),
    "epoch": t_epoch, "key": what shaped it}."""
    atomic_save({"model": state, "epoch": int(t_epoch), "key": key}, path)


@contextlib.contextmanager
def head_cache_lock(path, log=print):
    """Hold an exclusive lock on `<path>.lock` while the head is looked up or trained.

    Concurrent runs with the same teacher (a sweep with several jobs per GPU) then train
    the head once: the others wait, find the cache, and load it. The lock dies with its
    process. Without POSIX `flock` (Windows) there is no lock: each run may train the
    head, and the atomic write still keeps the cache whole.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"packd: another run is training the teacher head for {path}; waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
