"""What the benchmark feeds the real code: noise of CIFAR-100's shape, and epochs cut short.

Speed does not depend on the pixel values or the teacher's weights, so uniform uint8
noise of CIFAR-100's size (50,000 training and 10,000 test images, 100 balanced classes)
stands in for the data set, and a loader cut to an epoch's first N batches lets the real
loop, evaluation and pre-training code run for a few steps instead of an epoch.
"""
import itertools

import torch

CIFAR100_TRAIN_SIZE = 50_000
CIFAR100_TEST_SIZE = 10_000
NUM_CLASSES = 100
IMAGE_SHAPE = (3, 32, 32)


def synthetic_cifar100(n_train, n_test, seed=0):
    """{"train": (uint8 (N,3,32,32), int64 labels), "test": ...}: uniform noise, balanced classes."""
    g = torch.Generator().manual_seed(seed)

    def split(n):
        images = torch.randint(0, 256, (n, *IMAGE_SHAPE), generator=g, dtype=torch.uint8)
        labels = torch.arange(n) % NUM_CLASSES
        return images, labels[torch.randperm(n, generator=g)]

    return {"train": split(n_train), "test": split(n_test)}


class FirstSteps:
    """The first `steps` batches of an epoch of `loader`, with the loader interface
    train_epoch / evaluate / pretrain use (len, iterate(skip), iteration)."""

    def __init__(self, loader, steps):
        self.loader = loader
        self.steps = min(int(steps), len(loader))

    def __len__(self):
        return self.steps

    def iterate(self, skip=0):
        return itertools.islice(self.loader.iterate(skip), max(self.steps - skip, 0))

    def __iter__(self):
        return self.iterate()
