"""Batches for the training loop.

`DeviceLoader` keeps the whole split on the training device as uint8 and builds each
batch with tensor ops there: a seeded permutation per epoch, crop/flip/normalise,
and whatever the method asked for (sample indices, negatives, extra views). There is
no DataLoader, no worker process and no per-sample Python.

`TorchLoader` is the classic path (torchvision transforms in DataLoader workers), kept
for comparison and as a fallback. Both yield `Batch` objects on the training device.
"""
import math

import torch

from dataset.batch import Batch, CONTRAST_INDEX, INDEX, VIEWS
from util.errors import UsageError
from dataset.augment import CIFAR100_MEAN, CIFAR100_STD, augment, normalize


def attach_sample_extras(batch, index, needs, negatives, generator):
    """Add what a method needs per sample: its dataset index and/or its CRD/PACKD negatives."""
    if INDEX in needs:
        batch.index = index
    if CONTRAST_INDEX in needs:
        batch.contrast_index = negatives.sample(index, generator)
    return batch


class DeviceLoader:
    """Iterates over one split held on `device`; the last partial batch is kept.

    extras: optional providers for what a method `needs` beyond images and labels:
      negatives.sample(index, generator) -> (B, 1 + K) contrast indices,
      views.build(index, generator)      -> (B, V, 3, 32, 32) views (view 0 plain).
    All randomness comes from one torch.Generator on the device, saved with a checkpoint.
    """

    def __init__(self, images, labels, batch_size, train=True, needs=(), negatives=None, views=None,
                 seed=0, device=None, autoaugment=False, rank=0, world_size=1):
        if batch_size <= 0:
            raise ValueError(f"--batch_size must be positive, got {batch_size}")
        device = torch.device(device) if device is not None else images.device
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.batch_size = batch_size
        self.train = train
        self.needs = frozenset(needs)
        if CONTRAST_INDEX in self.needs and negatives is None:
            raise ValueError("this method needs negatives: pass a negative sampler")
        if VIEWS in self.needs and views is None:
            raise ValueError("this method needs extra views: pass a view builder")
        self.negatives = negatives
        self.views = views
        self.autoaugment = autoaugment  # the PACKD authors' CIFAR10Policy + Cutout (cifar100_aug)
        self.device = device
        # Under torch.distributed (world_size > 1) `batch_size` is the global batch: every rank
        # draws the same permutation (order_generator, seeded alike) and takes its slice of each
        # global batch; its augmentation/negatives/views draw from a generator of its own.
        self.rank, self.world_size, self.seed = int(rank), int(world_size), seed
        if self.world_size > 1 and batch_size % self.world_size:
            raise UsageError(f"--batch_size {batch_size} is the global batch and must divide evenly over "
                             f"{self.world_size} processes; pick a multiple of {self.world_size}")
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(rank_seed(seed, self.rank) if self.world_size > 1 else seed)
        self.order_generator = None
        if self.world_size > 1:
            self.order_generator = torch.Generator(device=device)
            self.order_generator.manual_seed(seed)

    def __len__(self):
        return math.ceil(len(self.labels) / self.batch_size)

    @property
    def num_samples(self):
        return len(self.labels)

    def unsharded(self):
        """The loader one process would use (whole batches, generator seeded as one process),
        for a stage that rank 0 runs alone under torchrun (PACKD's head, AB/FT/FSP init)."""
        return DeviceLoader(self.images, self.labels, self.batch_size, self.train, self.needs, self.negatives,
                            self.views, seed=self.seed, device=self.device, autoaugment=self.autoaugment)

    def state_dict(self):
        state = {"generator": self.generator.get_state()}
        if self.order_generator is not None:
            state["order_generator"] = self.order_generator.get_state()
        return state

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"].cpu())
        if self.order_generator is not None:
            self.order_generator.set_state(state["order_generator"].cpu())

    def __iter__(self):
        return self.iterate()

    def iterate(self, skip=0):
        """Yield the epoch's batches; the first `skip` are drawn (same random numbers) but not yielded.

        A run resumed in the middle of an epoch replays the epoch's random draws from the
        generator state saved at its start, so it sees exactly the batches it would have seen.
        """
        n = len(self.labels)
        if self.train:
            order = torch.randperm(n, generator=self.order_generator or self.generator, device=self.device)
        else:
            order = torch.arange(n, device=self.device)
        for step in range(len(self)):
            index = self._my_part(order, order[step * self.batch_size:(step + 1) * self.batch_size])
            batch = self._make(index)
            if step >= skip:
                yield batch

    def _my_part(self, order, index):
        """This rank's slice of a global batch. A last batch smaller than the number of ranks
        is topped up from the start of the epoch's order, so no rank ever gets an empty batch."""
        if self.world_size == 1:
            return index
        if self.train and index.numel() < self.world_size:  # evaluation may leave a rank empty
            index = torch.cat([index, order[:self.world_size - index.numel()]])
        return index.tensor_split(self.world_size)[self.rank]

    def _make(self, index):
        # index_select, not images[index]: advanced indexing of uint8 rows is ~8x slower on CPU
        raw = self.images.index_select(0, index)
        batch = Batch(images=None, labels=self.labels.index_select(0, index))
        if VIEWS in self.needs:
            batch.views = self.views.build(index, self.generator)
            batch.images = batch.views[:, 0]
        elif self.train:
            batch.images = augment(raw, self.generator, autoaugment=self.autoaugment)
        else:
            batch.images = normalize(raw)
        return attach_sample_extras(batch, index, self.needs, self.negatives, self.generator)


def rank_seed(seed, rank):
    """A generator seed of its own for each rank, derived from the run's seed."""
    return (int(seed) * 1_000_003 + 7919 * (int(rank) + 1)) % 2 ** 63


class Cutout:
    """Zero one `length` x `length` square (clipped at the border) centred at a random pixel."""

    def __init__(self, length):
        self.length = length

    def __call__(self, img):
        h, w = img.shape[-2:]
        cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
        y0, y1 = max(cy - self.length // 2, 0), min(cy + self.length // 2, h)
        x0, x1 = max(cx - self.length // 2, 0), min(cx + self.length // 2, w)
        img = img.clone()
        img[..., y0:y1, x0:x1] = 0
        return img


class _IndexedDataset(torch.utils.data.Dataset):
    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(self.images[i]), self.labels[i], i


class TorchLoader:
    """The classic path: torchvision transforms per sample in DataLoader workers.

    Supports sample indices and negatives (drawn on the device after the transfer);
    extra views are built only by the device path.
    """

    def __init__(self, images, labels, batch_size, train=True, needs=(), negatives=None, views=None,
                 seed=0, device="cpu", num_workers=2, autoaugment=False):
        from torchvision.transforms import v2 as T
        if batch_size <= 0:
            raise ValueError(f"--batch_size must be positive, got {batch_size}")
        self.needs = frozenset(needs)
        if VIEWS in self.needs:
            raise ValueError("--loader torch cannot build this method's extra views; use --loader device")
        ops = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if train else []
        if train and autoaugment:
            # cifar100_aug on this comparison path: torchvision's CIFAR AutoAugment (fill 0, its own
            # magnitude bins) then Cutout 16; the device path has the PACKD authors' own policy
            ops.append(T.AutoAugment(T.AutoAugmentPolicy.CIFAR10))
        post = [Cutout(16)] if train and autoaugment else []
        transform = T.Compose(ops + [T.ToDtype(torch.float32, scale=True)] + post
                              + [T.Normalize(CIFAR100_MEAN, CIFAR100_STD)])
        self.device = torch.device(device)
        self.negatives = negatives
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self._shuffle_generator = torch.Generator().manual_seed(seed)
        self.loader = torch.utils.data.DataLoader(
            _IndexedDataset(images.cpu(), labels.cpu(), transform), batch_size=batch_size, shuffle=train,
            num_workers=num_workers, generator=self._shuffle_generator, pin_memory=self.device.type == "cuda",
            persistent_workers=num_workers > 0)
        self.batch_size = batch_size

    def __len__(self):
        return len(self.loader)

    @property
    def num_samples(self):
        return len(self.loader.dataset)

    def state_dict(self):
        return {"generator": self.generator.get_state(), "shuffle_generator": self._shuffle_generator.get_state()}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"].cpu())
        self._shuffle_generator.set_state(state["shuffle_generator"].cpu())

    def __iter__(self):
        return self.iterate()

    def iterate(self, skip=0):
        for step, (x, y, index) in enumerate(self.loader):
            if step < skip:
                continue
            index = index.to(self.device, non_blocking=True)
            batch = Batch(images=x.to(self.device, non_blocking=True), labels=y.to(self.device, non_blocking=True))
            yield attach_sample_extras(batch, index, self.needs, self.negatives, self.generator)
