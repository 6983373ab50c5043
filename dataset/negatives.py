"""On-device negative sampling for CRD and PACKD, batched over the whole batch.

Replaces RepDistiller's `CIFAR100InstanceSample.__getitem__` (numpy, one sample at a
time in data-loader workers): for each sample, column 0 is the positive and the
other `nce_k` columns are indices of samples of OTHER classes, drawn without
replacement unless that pool is smaller than `nce_k`.
"""
import torch

from util.class_index import ClassIndex
from util.errors import UsageError

MODES = ("exact", "relax")
MAX_KEYS = 2 ** 24  # 64 MiB of float32 keys per batch; CIFAR-100 at batch 64 uses 3.2 M
_MASKED_KEY = 2.0  # larger than any torch.rand key, so same-class candidates sort last


class NegativeSampler:
    """Draws CRD contrast indices (B, 1 + nce_k) on the device holding `labels`.

    mode "exact": the positive is the sample itself; mode "relax": a random sample of
    the same class (possibly itself). Without replacement, each row keys every
    training sample with a uniform random number, pushes its own class to the end and
    keeps the `nce_k` smallest keys (a uniform random subset of the pool).
    """

    def __init__(self, labels, nce_k, mode="exact"):
        """labels: the training labels, or a `util.class_index.ClassIndex` shared with other samplers."""
        if int(nce_k) <= 0:
            raise UsageError(f"--nce_k must be a positive number of negatives, got {nce_k}")
        if mode not in MODES:
            raise UsageError(f"--mode must be one of {MODES}, got {mode!r}")
        self.nce_k, self.mode = int(nce_k), mode
        self.classes = labels if isinstance(labels, ClassIndex) else ClassIndex(labels)
        if self.classes.num_classes < 2:
            raise UsageError("the labels hold a single class: CRD/PACKD need at least two classes for negatives")
        # Static per-dataset decisions (one host read at construction, none per batch).
        pool_size = self.classes.n_data - self.classes.class_count
        self.any_with_replacement = bool((pool_size < self.nce_k).any())
        self.all_with_replacement = bool((pool_size < self.nce_k).all())

    @property
    def device(self):
        return self.classes.device

    @property
    def n_data(self):
        return self.classes.n_data

    # The class table's tensors, under the names the sampling code reads.
    class_of = property(lambda self: self.classes.class_of)
    by_class = property(lambda self: self.classes.by_class)
    class_count = property(lambda self: self.classes.class_count)
    class_start = property(lambda self: self.classes.class_start)

    def to(self, device):
        """Move the index tables to `device` (in place, like nn.Module.to); returns self."""
        self.classes.to(device)
        return self

    def sample(self, index, generator=None):
        """index (B,) dataset positions -> LongTensor (B, 1 + nce_k) on the labels' device."""
        index = torch.as_tensor(index).to(device=self.device, dtype=torch.long).reshape(-1)
        cls = self.class_of[index]
        if self.mode == "exact":
            positive = index
        else:
            positive = self._same_class(cls, generator)
        negatives = self._other_classes(cls, generator)
        return torch.cat([positive.unsqueeze(1), negatives], dim=1)

    # -- internals -------------------------------------------------------------------
    def _uniform(self, shape, generator):
        return torch.rand(shape, generator=generator, device=self.device)

    def _same_class(self, cls, generator):
        """One uniform draw from each row's own class (relax-mode positive)."""
        return self.classes.draw_same_class(cls, generator)

    def _other_classes(self, cls, generator):
        # Without replacement every row keys the whole data set: (B, n_data) random numbers.
        # Past MAX_KEYS (ImageNet: 1.28 M rows) draw with replacement instead: duplicates are
        # then as rare as nce_k / n_data, and the step stays O(B * nce_k).
        if self.all_with_replacement or cls.numel() * self.n_data > MAX_KEYS:
            return self._other_classes_with_replacement(cls, generator)
        keys = self._uniform((cls.numel(), self.n_data), generator)
        keys.masked_fill_(self.class_of.unsqueeze(0) == cls.unsqueeze(1), _MASKED_KEY)
        # sorted=False: the order of negatives does not matter to CRD and is ~2x faster.
        negatives = keys.topk(self.nce_k, dim=1, largest=False, sorted=False).indices
        if self.any_with_replacement:
            small_pool = (self.n_data - self.class_count[cls]) < self.nce_k
            fallback = self._other_classes_with_replacement(cls, generator)
            negatives = torch.where(small_pool.unsqueeze(1), fallback, negatives)
        return negatives

    def _other_classes_with_replacement(self, cls, generator):
        """nce_k uniform draws with replacement from each row's other-class pool.

        A position p in [0, pool) of the class-sorted order skips the row's own class
        block: p -> p + count if p >= start.
        """
        count = self.class_count[cls].unsqueeze(1)
        start = self.class_start[cls].unsqueeze(1)
        pool = self.n_data - count
        position = (self._uniform((cls.numel(), self.nce_k), generator) * pool).long()
        position = torch.minimum(position, pool - 1)
        position = position + count * (position >= start)
        return self.by_class[position]
