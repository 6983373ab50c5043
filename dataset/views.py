"""PACKD's multi-view batches, built with tensor ops on the training device.

The PACKD authors' CIFAR-100 dataset (`CIFAR100InstanceSamplePACKD`) returns, per
sample, the plain augmented image followed by `mixup_num` "positive" views. Each
positive view mixes a fresh augmentation of the sample with a fresh augmentation of a
same-class partner (drawn with replacement, so it may be the sample itself), optionally
rotated by a multiple of 90 degrees before augmentation. The mixing is done on
normalised images, after the crop/flip. Here the whole batch is built at once on the
device, every random number drawn from one `torch.Generator`.

Variants of the authors' code, selected by the same flags:
  mixup_num == -1 : a single mixed view replaces the plain one; lambda ~ U(0, 1)
                    (mixup_ratio is ignored there, as in their code).
  mixup_rotate < -1 (with mixup_num >= 1): lambda = 0, the view is the partner alone.
"""
import torch

from dataset.augment import augment
from util.class_index import ClassIndex
from util.errors import UsageError

ROTATIONS = 4  # multiples of 90 degrees: np.random.randint(4) in the authors' code


class MultiViewBuilder:
    """`build(index, generator)` -> (B, V, 3, 32, 32) normalised views, view 0 the plain one.

    images_uint8: the whole training split (N, 3, H, W) uint8 on the training device.
    labels: (N,) int64 class of each image (partners are drawn from the anchor's class).
    V = 1 + mixup_num for mixup_num >= 0, and 1 for mixup_num == -1.
    """

    def __init__(self, images_uint8, labels, mixup_num=3, mixup_ratio=0.0, mixup_rotate=3, classes=None):
        if int(mixup_num) != mixup_num or mixup_num < -1:
            raise UsageError(f"--mixup_num must be an integer >= -1 (-1: one mixed view only), got {mixup_num}")
        if images_uint8.dim() != 4 or images_uint8.dtype != torch.uint8:
            raise ValueError(f"MultiViewBuilder needs uint8 images (N, C, H, W), got {images_uint8.dtype} "
                             f"{tuple(images_uint8.shape)}")
        if images_uint8.shape[-1] != images_uint8.shape[-2]:
            raise ValueError("MultiViewBuilder needs square images (views may be rotated by 90 degrees)")
        if labels.dim() != 1 or labels.shape[0] != images_uint8.shape[0]:
            raise ValueError(f"labels must be (N,) with N = {images_uint8.shape[0]} images, got {tuple(labels.shape)}")
        if not 0.0 <= mixup_ratio <= 1.0:
            raise UsageError(f"--mixup_ratio must lie in [0, 1], got {mixup_ratio}")
        self.images = images_uint8
        self.labels = labels.to(images_uint8.device, torch.int64)
        self.mixup_num = int(mixup_num)
        self.mixup_ratio = float(mixup_ratio)
        self.mixup_rotate = int(mixup_rotate)
        # Same-class partner lookup on the device (shared with the negative sampler when given).
        self.classes = classes if classes is not None else ClassIndex(self.labels)

    @property
    def num_views(self):
        return 1 + self.mixup_num if self.mixup_num >= 0 else 1

    @property
    def mixed_per_sample(self):
        return self.mixup_num if self.mixup_num >= 0 else 1

    def sample_partners(self, anchor, generator):
        """For each anchor (dataset index), a uniformly drawn sample of its class."""
        return self.classes.draw_same_class(self.classes.class_of[anchor], generator)

    @staticmethod
    def rotate(images, turns):
        """Rotate each image by turns[i] x 90 degrees in the (H, W) plane, as np.rot90 on HWC."""
        out = images
        for k in range(1, ROTATIONS):
            out = torch.where((turns == k).view(-1, 1, 1, 1), torch.rot90(images, k, dims=(-2, -1)), out)
        return out

    def build(self, index, generator=None, return_info=False):
        """Views of the samples at `index` (B,), shape (B, V, 3, H, W), normalised float32.

        return_info=True also returns {"partners", "rotations", "lam"}, each (B, M) for the
        M mixed views of every sample (M = mixup_num, or 1 when mixup_num == -1).
        """
        device = self.images.device
        index = index.to(device)
        anchors = self.images.index_select(0, index)
        batch = anchors.shape[0]
        views = []
        if self.mixup_num >= 0:
            views.append(augment(anchors, generator).unsqueeze(1))  # view 0 first: the plain view
        m = self.mixed_per_sample
        info = {"partners": index.new_empty((batch, 0)), "rotations": index.new_empty((batch, 0)),
                "lam": torch.empty((batch, 0), device=device)}
        if m > 0:
            anchor_index = index.repeat_interleave(m)
            partners = self.sample_partners(anchor_index, generator)
            if self.mixup_rotate > 0:
                turns = torch.randint(0, ROTATIONS, partners.shape, generator=generator, device=device)
            else:
                turns = torch.zeros_like(partners)
            partner_views = augment(self.rotate(self.images.index_select(0, partners), turns), generator)
            anchor_views = augment(self.images.index_select(0, anchor_index), generator)
            lam = torch.rand(partners.shape, generator=generator, device=device)
            if self.mixup_num == -1:
                pass  # lambda ~ U(0, 1): the authors' single-view branch ignores mixup_ratio
            elif self.mixup_rotate < -1:
                lam = torch.zeros_like(lam)  # the authors' "partner only" setting
            else:
                lam = self.mixup_ratio + (1.0 - self.mixup_ratio) * lam
            w = lam.view(-1, 1, 1, 1)
            mixed = w * anchor_views + (1.0 - w) * partner_views
            views.append(mixed.view(batch, m, *mixed.shape[1:]))
            info = {"partners": partners.view(batch, m), "rotations": turns.view(batch, m), "lam": lam.view(batch, m)}
        out = torch.cat(views, dim=1)
        return (out, info) if return_info else out
