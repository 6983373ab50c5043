"""Training samples grouped by class, on the device: the table behind every same-class or
other-class draw (CRD's negatives and relax positives, PACKD's mixing partners)."""
import torch


class ClassIndex:
    """For N labelled samples: each sample's class (contiguous ids), the sample positions
    sorted by class (stable), and where each class's block starts and how long it is.

    No Python lists: a draw is a few gathers, so it batches on the device.
    """

    def __init__(self, labels):
        labels = torch.as_tensor(labels)
        if labels.dim() != 1 or labels.numel() == 0 or labels.is_floating_point():
            raise ValueError("labels must be a non-empty 1-D integer tensor of training labels")
        _, self.class_of = torch.unique(labels.long(), return_inverse=True)
        self.class_count = torch.bincount(self.class_of)
        self.by_class = torch.argsort(self.class_of, stable=True)
        self.class_start = torch.cumsum(self.class_count, 0) - self.class_count

    @property
    def device(self):
        return self.class_of.device

    @property
    def n_data(self):
        return self.class_of.numel()

    @property
    def num_classes(self):
        return self.class_count.numel()

    def to(self, device):
        """Move the tables to `device` (in place, like nn.Module.to); returns self."""
        for name in ("class_of", "by_class", "class_count", "class_start"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def draw_same_class(self, cls, generator=None):
        """One uniform draw (with replacement) from the class of each entry of `cls`."""
        count = self.class_count[cls]
        u = torch.rand(cls.shape, generator=generator, device=self.device)
        offset = torch.minimum((u * count).long(), count - 1)  # floor, guarding u*count rounding up
        return self.by_class[self.class_start[cls] + offset]
