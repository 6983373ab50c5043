"""The data sets: CIFAR-100 on the training device, ImageNet through DataLoader workers or
DALI; reading, augmentation, batches."""
import os

import torch

from dataset.cifar import DataError, load_cifar100, make_synthetic_cifar100, stratified_subset  # noqa: F401
from dataset.loader import DeviceLoader, TorchLoader  # noqa: F401


IMAGENET = "imagenet"
CIFAR100_CLASSES = 100


def is_imagenet(opt):
    return getattr(opt, "dataset", "cifar100") == IMAGENET


def num_classes(opt):
    """Classes of the data set, known before it is read: 100 for CIFAR-100, ImageNet's class
    folders (1000 for ImageNet) otherwise (one listing of train/, a one-line error if absent)."""
    if not is_imagenet(opt):
        return CIFAR100_CLASSES
    from dataset.imagenet import LAYOUT
    train = os.path.join(opt.data_folder, "train")
    if not os.path.isdir(train):
        from util.errors import UsageError
        raise UsageError(f"'{opt.data_folder}' is not an ImageNet folder: train/ is missing; expected {LAYOUT}")
    return len([e for e in os.listdir(train) if os.path.isdir(os.path.join(train, e)) and not e.startswith(".")])


def data_is_generated(opt):
    """Whether this run trains on a generated set (one already there, or one --generate_data
    is about to write): known before anything is read, so it is part of the run's identity."""
    if is_imagenet(opt):
        from dataset.imagenet import is_generated as imagenet_generated
        return imagenet_generated(opt.data_folder)
    from dataset.cifar import has_cifar100, is_generated
    return is_generated(opt.data_folder) or (bool(getattr(opt, "generate_data", False))
                                             and not has_cifar100(opt.data_folder))


def load_data(opt):
    """Read the data set named by the flags (generated first when --generate_data asks).

    CIFAR-100: {"train": (uint8 images, labels), "test": ...}; ImageNet: {"train": [(path,
    label)], "test": the val/ items, "classes": the class folder names}."""
    if is_imagenet(opt):
        from dataset.imagenet import scan_imagenet
        classes, train, val = scan_imagenet(opt.data_folder)
        return {"train": train, "test": val, "classes": classes}
    from dataset.cifar import has_cifar100
    if getattr(opt, "generate_data", False) and not has_cifar100(opt.data_folder):
        make_synthetic_cifar100(opt.data_folder)
        print(f"wrote a generated CIFAR-100-format data set to '{opt.data_folder}' (for trying the code, "
              f"not for results)")
    return load_cifar100(opt.data_folder)


# On CUDA an evaluation step is bound by kernel launches: 500 images a batch launch 8x fewer
# than 64, and 500 divides CIFAR-100's 10,000 test images (one static shape for compiled models).
CUDA_TEST_BATCH = 500


def test_batch_size(opt, device):
    """--test_batch_size, else --batch_size on the CPU (larger batches were slower there) and
    CUDA_TEST_BATCH on CUDA."""
    if getattr(opt, "test_batch_size", None):
        return opt.test_batch_size
    return CUDA_TEST_BATCH if torch.device(device).type == "cuda" else opt.batch_size


def make_loaders(opt, data, device, needs=(), rank=0, world_size=1):
    """Train and test loaders for `opt`, providing what the method `needs`.

    The providers are chosen by need, never by method name: negatives for contrast
    indices (CRD, PACKD), a view builder for extra views (PACKD).
    """
    from dataset.batch import CONTRAST_INDEX, VIEWS
    from util.class_index import ClassIndex
    from util.errors import UsageError
    if is_imagenet(opt):
        return make_imagenet_loaders(opt, data, device, needs, rank, world_size)
    train_x, train_y = data["train"]
    test_x, test_y = data["test"]
    few_ratio = getattr(opt, "few_ratio", 1.0)
    if few_ratio != 1.0:
        keep = stratified_subset(train_y, few_ratio)
        train_x, train_y = train_x[keep], train_y[keep]
    negatives = views = None
    classes = ClassIndex(train_y).to(device) if {CONTRAST_INDEX, VIEWS} & set(needs) else None
    if CONTRAST_INDEX in needs:
        from dataset.negatives import NegativeSampler
        negatives = NegativeSampler(classes, opt.nce_k, mode=getattr(opt, "mode", "exact"))
    if VIEWS in needs:
        from dataset.views import MultiViewBuilder
        views = MultiViewBuilder(train_x.to(device), train_y.to(device), mixup_num=opt.mixup_num,
                                 mixup_ratio=opt.mixup_ratio, mixup_rotate=opt.mixup_rotate, classes=classes)
    autoaugment = opt.dataset == "cifar100_aug"
    if autoaugment and VIEWS in needs:
        raise UsageError("--dataset cifar100_aug is for plain training (the authors' teacher option); a method "
                         "that builds its own views (packd) distils on --dataset cifar100")
    if opt.loader == "torch" and world_size > 1:
        raise UsageError("--loader torch runs in one process; under torchrun use the default --loader device")
    if opt.loader == "torch":
        if autoaugment:
            print("note: --loader torch uses torchvision's AutoAugment for cifar100_aug (fill 0, its own magnitudes); "
                  "the default --loader device applies the PACKD authors' CIFAR10Policy (fill 128)")
        train = TorchLoader(train_x, train_y, opt.batch_size, train=True, needs=needs, negatives=negatives,
                            views=views, seed=opt.seed, device=device, num_workers=opt.num_workers,
                            autoaugment=autoaugment)
    else:
        train = DeviceLoader(train_x, train_y, opt.batch_size, train=True, needs=needs, negatives=negatives,
                             views=views, seed=opt.seed, device=device, autoaugment=autoaugment, rank=rank,
                             world_size=world_size)
    test_batch = test_batch_size(opt, device)
    test_batch += (-test_batch) % world_size  # a global batch that splits evenly over the ranks
    test = DeviceLoader(test_x, test_y, test_batch, train=False, device=device, rank=rank, world_size=world_size)
    return train, test


def imagenet_loader_kind(opt, device):
    """--loader for ImageNet: as given (torch | dali), else DALI on CUDA when it is installed
    (nvJPEG decoding on the GPU), else the DataLoader path."""
    if opt.loader in ("torch", "dali"):
        return opt.loader
    if opt.loader not in (None, "auto"):
        from util.errors import UsageError
        raise UsageError(f"--loader {opt.loader} is for CIFAR-100; ImageNet reads JPEGs with --loader torch or dali")
    if torch.device(device).type == "cuda":
        try:
            import nvidia.dali  # noqa: F401
            return "dali"
        except ImportError:
            pass
    return "torch"


def make_imagenet_loaders(opt, data, device, needs, rank, world_size):
    """ImageNet train/val loaders (each rank its slice of one seeded order), negatives drawn on
    the device with replacement at this scale (`NegativeSampler` picks it by size), and PACKD's
    mixed views (`MixedViews`) for a method that needs views: built by the DataLoader path, so
    `--loader auto` takes it for such a method and `--loader dali` refuses it."""
    from dataset.batch import CONTRAST_INDEX, VIEWS
    kind = imagenet_loader_kind(opt, device)
    if VIEWS in needs and kind == "dali":  # DALI cannot build PACKD's views
        if opt.loader == "dali":
            from util.errors import UsageError
            raise UsageError("--loader dali builds no PACKD views (same-class partners, PIL-style rotations, "
                             "mixing); use --loader torch, the default for methods that need views")
        kind = "torch"
    if kind == "dali":
        from dataset.imagenet_dali import DALIImageNetLoader as Loader
    else:
        from dataset.imagenet import ImageNetLoader as Loader
    negatives, extra = None, {}
    if {CONTRAST_INDEX, VIEWS} & set(needs):
        labels = torch.tensor([label for _, label in data["train"]], dtype=torch.long)
    if CONTRAST_INDEX in needs:
        from dataset.negatives import NegativeSampler
        negatives = NegativeSampler(labels, opt.nce_k, mode=getattr(opt, "mode", "exact")).to(device)
    if VIEWS in needs and kind != "dali":  # views: partners drawn on the CPU, in the main process
        from dataset.imagenet import MixedViews
        extra["views"] = MixedViews(labels, mixup_num=opt.mixup_num, mixup_ratio=opt.mixup_ratio,
                                    mixup_rotate=opt.mixup_rotate)
    common = dict(seed=opt.seed, device=device, num_workers=opt.num_workers, rank=rank, world_size=world_size)
    train = Loader(data["train"], opt.batch_size, train=True, needs=needs, negatives=negatives, **common, **extra)
    test = Loader(data["test"], opt.batch_size, train=False, **common)
    return train, test
