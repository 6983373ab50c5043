"""What a batch is: images and labels, plus what a method asked for.

A method lists the names below in its `needs`; the loaders fill exactly those fields, so
the data path never branches on a method's name.
"""
from dataclasses import dataclass, fields
from typing import Optional

import torch

# What a method may ask the data path for, beyond images and labels.
INDEX = "index"                    # batch.index: (B,) positions in the training set
CONTRAST_INDEX = "contrast_index"  # batch.contrast_index: (B, 1 + nce_k), column 0 the positive
VIEWS = "views"                    # batch.views: (B, V, 3, H, W), view 0 the plain augmentation
NEEDS = frozenset({INDEX, CONTRAST_INDEX, VIEWS})


@dataclass
class Batch:
    """One training (or test) batch, all tensors on the training device."""
    images: torch.Tensor                          # (B, 3, H, W) normalised float
    labels: torch.Tensor                          # (B,) int64
    index: Optional[torch.Tensor] = None
    contrast_index: Optional[torch.Tensor] = None
    views: Optional[torch.Tensor] = None

    def to(self, device, non_blocking=False):
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        return Batch(**{k: (v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v)
                        for k, v in kw.items()})

    def __len__(self):
        return self.labels.shape[0]
