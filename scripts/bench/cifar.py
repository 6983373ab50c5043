"""The default rows' data: uint8 noise of CIFAR-100's shape and size, held on the device.

What `run.py` asks of a data set (`imagenet.ImageNetData` answers the same for JPEG folders):
the data, its loaders, the epochs a run is projected with, the data path alone and its lines.
Here nothing is written or deleted, and an epoch is as long as the loaders'.
"""
from .data import synthetic_cifar100
from .data_path import time_data_path
from .report import DATA_NOTE, data_path_lines


class CifarData:
    """Synthetic CIFAR-100 (`data.synthetic_cifar100`) through `dataset.make_loaders`."""

    def __init__(self, args, opt):
        self.args, self.opt = args, opt

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def load(self, procs, log):
        return synthetic_cifar100(self.args.n_data, self.args.n_test, self.opt.seed)  # the same on every rank (seeded)

    def loaders(self, data, device, needs, procs):
        from dataset import make_loaders
        return make_loaders(self.opt, data, device, needs, procs.rank, procs.world_size)

    def fields(self):
        return {}

    def notes(self):
        return [DATA_NOTE]

    def lines(self):
        return []

    def epoch_batches(self, train_loader, test_loader):
        """(training steps, test batches) of an epoch of the projected run: the loaders'."""
        return len(train_loader), len(test_loader)

    def time_data_path(self, opt, data, device, train_loader, needs):
        return time_data_path(self.args, opt, data, device, train_loader, needs)

    def data_path_lines(self, out):
        return data_path_lines(out, self.opt.distill)
