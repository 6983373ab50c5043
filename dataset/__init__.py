"""CIFAR-100 on the training device: reading, augmentation, batches."""
import torch

from dataset.cifar import DataError, load_cifar100, make_synthetic_cifar100, stratified_subset  # noqa: F401
from dataset.loader import DeviceLoader, TorchLoader  # noqa: F401


def load_data(opt):
    """Read the data set named by the flags (generated first when --generate_data asks)."""
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


def make_loaders(opt, data, device, needs=()):
    """Train and test loaders for `opt`, providing what the method `needs`.

    The providers are chosen by need, never by method name: negatives for contrast
    indices (CRD, PACKD), a view builder for extra views (PACKD).
    """
    from distiller_zoo._base import CONTRAST_INDEX, VIEWS
    train_x, train_y = data["train"]
    test_x, test_y = data["test"]
    few_ratio = getattr(opt, "few_ratio", 1.0)
    if few_ratio != 1.0:
        keep = stratified_subset(train_y, few_ratio)
        train_x, train_y = train_x[keep], train_y[keep]
    negatives = views = None
    if CONTRAST_INDEX in needs:
        from crd.sampling import NegativeSampler
        negatives = NegativeSampler(train_y, opt.nce_k, mode=getattr(opt, "mode", "exact")).to(device)
    if VIEWS in needs:
        from dataset.views import MultiViewBuilder
        views = MultiViewBuilder(train_x.to(device), train_y.to(device), mixup_num=opt.mixup_num,
                                 mixup_ratio=opt.mixup_ratio, mixup_rotate=opt.mixup_rotate)
    use_torch = opt.loader == "torch" or opt.dataset == "cifar100_aug"
    if use_torch:
        train = TorchLoader(train_x, train_y, opt.batch_size, train=True, needs=needs, negatives=negatives,
                            views=views, seed=opt.seed, device=device, num_workers=opt.num_workers,
                            autoaugment=opt.dataset == "cifar100_aug")
    else:
        train = DeviceLoader(train_x, train_y, opt.batch_size, train=True, needs=needs, negatives=negatives,
                             views=views, seed=opt.seed, device=device)
    test = DeviceLoader(test_x, test_y, test_batch_size(opt, device), train=False, device=device)
    return train, test
