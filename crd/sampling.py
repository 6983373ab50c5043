"""On-device negative sampling for CRD, batched over the whole batch.

Replaces RepDistiller's `CIFAR100InstanceSample.__getitem__` (numpy, one sample at a
time in data-loader workers): for each sample, column 0 is the positive and the
other `nce_k` columns are indices of samples of OTHER classes, drawn without
replacement unless that pool is smaller than `nce_k`.
"""
import torch

MODES = ("exact", "relax")
_MASKED_KEY = 2.0  # larger than any torch.rand key, so same-class candidates sort last


class NegativeSampler:
    """Draws CRD contrast indices (B, 1 + nce_k) on the device holding `labels`.

    mode "exact": the positive is the sample itself; mode "relax": a random sample of
    the same class (possibly itself). Without replacement, each row keys every
    training sample with a uniform random number, pushes its own class to the end and
    keeps the `nce_k` smallest keys (a uniform random subset of the pool).
    """

    def __init__(self, labels, nce_k, mode="exact"):
        labels = torch.as_tensor(labels)
        if labels.dim() != 1 or labels.numel() == 0 or labels.is_floating_point():
            raise ValueError("labels must be a non-empty 1-D integer tensor of training labels")
        if int(nce_k) <= 0:
            raise ValueError(f"nce_k must be a positive number of negatives, got {nce_k}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.nce_k, self.mode = int(nce_k), mode

        # Contiguous class ids, samples sorted by class (stable), per-class start/count.
        _, class_of = torch.unique(labels.long(), return_inverse=True)
        counts = torch.bincount(class_of)
        if counts.numel() < 2:
            raise ValueError("labels hold a single class: CRD needs at least two classes for negatives")
        self.class_of = class_of
        self.by_class = torch.argsort(class_of, stable=True)
        self.class_count = counts
        self.class_start = torch.cumsum(counts, 0) - counts
        # Static per-dataset decisions (one host read at construction, none per batch).
        pool_size = labels.numel() - counts
        self.any_with_replacement = bool((pool_size < self.nce_k).any())
        self.all_with_replacement = bool((pool_size < self.nce_k).all())

    @property
    def device(self):
        return self.class_of.device

    @property
    def n_data(self):
        return self.class_of.numel()

    def to(self, device):
        """Move the index tables to `device` (in place, like nn.Module.to); returns self."""
        for name in ("class_of", "by_class", "class_count", "class_start"):
            setattr(self, name, getattr(self, name).to(device))
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
        count = self.class_count[cls]
        offset = (self._uniform(cls.shape, generator) * count).long().clamp_max_(count - 1)
        return self.by_class[self.class_start[cls] + offset]

    def _other_classes(self, cls, generator):
        if self.all_with_replacement:
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
