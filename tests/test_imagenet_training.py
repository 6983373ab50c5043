"""ImageNet through the same entry points and loop, on a generated JPEG folder (CPU).

resnet34 -> resnet18 (torchvision layout), tiny: 4 classes, a few images, one epoch.
"""
import json
import os
import subprocess
import sys

import pytest
import torch

import train_student
import train_teacher
from util.errors import UsageError

pytestmark = pytest.mark.slow
CLASSES = 4


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from dataset.imagenet import write_generated_imagenet
    from models import imagenet_model_dict
    base = tmp_path_factory.mktemp("imagenet")
    write_generated_imagenet(str(base / "data"), classes=CLASSES, per_class=4, val_per_class=2)
    torch.manual_seed(0)
    teacher = base / "teachers" / "resnet34-333f7ec4.pth"  # torchvision's file name: a bare state_dict
    teacher.parent.mkdir()
    torch.save(imagenet_model_dict["resnet34_imagenet"](num_classes=CLASSES).state_dict(), teacher)
    return base, teacher


def common(base, save):
    return ["--dataset", "imagenet", "--data_folder", str(base / "data"), "--save_dir", str(save), "--epochs", "1",
            "--batch_size", "8", "--num_workers", "0", "--loader", "torch", "--device", "cpu", "--no_progress",
            "--no_tensorboard"]


def test_imagenet_recipe_is_the_default():
    opt = train_student.parse_args(["--path_t", "x.pth", "--dataset", "imagenet", "--data_folder", "d"])
    assert (opt.epochs, opt.learning_rate, opt.lr_decay_epochs, opt.weight_decay, opt.batch_size, opt.kd_T) == \
        (100, 0.1, [30, 60, 90], 1e-4, 256, 3)
    assert opt.model_s == "resnet18_imagenet" and opt.momentum == 0.9
    with pytest.raises(UsageError, match="for --dataset imagenet"):
        train_student.parse_args(["--path_t", "x.pth", "--dataset", "imagenet", "--model_s", "resnet8"])


def test_vanilla_imagenet_training(world, tmp_path):
    base, _ = world
    train_teacher.main(["--model", "resnet18_imagenet", *common(base, tmp_path)])
    run = tmp_path / "models" / "resnet18_imagenet_imagenet_lr_0.1_decay_0.0001_trial_0"
    info = json.load(open(run / "run.json"))
    assert info["generated_data"] is True and info["num_classes"] == CLASSES
    assert os.path.isfile(run / "summary.json")


@pytest.mark.parametrize("method", ["kd", "crd", "dkd"])
def test_distil_resnet34_to_resnet18(method, world, tmp_path):
    base, teacher = world
    train_student.main(["--path_t", str(teacher), "--model_t", "resnet34_imagenet", "--distill", method,
                        "--nce_k", "4", *common(base, tmp_path)])
    run, = (tmp_path / "student_model").iterdir()
    rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
    assert len(rows) == 1 and all(torch.isfinite(torch.tensor(rows[0]["train_loss"])) for _ in [0])
    assert json.load(open(run / "run.json"))["kd_T"] == 3


def test_a_teacher_of_another_class_count_is_one_line(world, tmp_path):
    from models import imagenet_model_dict
    base, _ = world
    other = tmp_path / "resnet34-1000.pth"
    torch.save(imagenet_model_dict["resnet34_imagenet"](num_classes=1000).state_dict(), other)
    with pytest.raises(UsageError, match="classifies 1000 classes, the data set has 4"):
        train_student.main(["--path_t", str(other), "--model_t", "resnet34_imagenet", *common(base, tmp_path)])


def test_packd_on_imagenet_is_refused_until_its_variant_exists(world, tmp_path):
    base, teacher = world
    with pytest.raises(UsageError, match="PACKD's ImageNet variant is not implemented"):
        train_student.main(["--path_t", str(teacher), "--model_t", "resnet34_imagenet", "--distill", "packd",
                            *common(base, tmp_path)])


def test_two_processes_on_imagenet(world, tmp_path):
    base, teacher = world
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           os.path.join(root, "train_student.py"), "--path_t", str(teacher), "--model_t", "resnet34_imagenet",
           "--distill", "crd", "--nce_k", "4", *common(base, tmp_path)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_"))}
    proc = subprocess.run(cmd, cwd=tmp_path, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    run, = (tmp_path / "student_model").iterdir()
    assert json.load(open(run / "run.json"))["world_size"] == 2 and (run / "summary.json").exists()
