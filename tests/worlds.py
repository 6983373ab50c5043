"""The small world most end-to-end tests train in: a generated CIFAR-100 set and a random
resnet8 teacher, saved where the PACKD authors' layout puts teachers (save_t/<folder>/)."""
import torch

TEACHER_FOLDER = "resnet8_cifar100_lr_0.05_decay_0.0005_trial_0"


def write_tiny_world(base, data="data", train_per_class=2, test_per_class=1):
    """-> (data folder, teacher checkpoint path, the teacher's state_dict), written under `base`."""
    from dataset.cifar import make_synthetic_cifar100
    from models import model_dict
    data_folder = base / data
    make_synthetic_cifar100(str(data_folder), train_per_class=train_per_class, test_per_class=test_per_class)
    torch.manual_seed(0)
    state = model_dict["resnet8"](num_classes=100).state_dict()
    teacher = base / "save_t" / TEACHER_FOLDER / "ckpt_epoch_240.pth"
    teacher.parent.mkdir(parents=True)
    torch.save({"model": state}, teacher)
    return data_folder, teacher, state
