"""Short, stable digests that identify weights and settings (run identity, caches)."""
import hashlib
import json

import torch


def state_fingerprint(module):
    """SHA-256 (first 16 hex digits) of a module's state_dict: names, dtypes, shapes and values.

    It identifies weights whatever the file is called or where it lives (a teacher on
    resume, the teacher a PACKD head was trained on)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def settings_digest(settings, length=12):
    """SHA-256 of a JSON-able dict (sorted keys), first `length` hex digits."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
