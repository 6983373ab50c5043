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


def packd_args(base, teacher, save, *extra):
    return ["--path_t", str(teacher), "--model_t", "resnet34_imagenet", "--distill", "packd", "--nce_k", "4",
            "--head_cache_dir", str(save / "heads"), *common(base, save), *extra]


def test_packd_resnet34_to_resnet18_and_a_resume_mid_epoch(world, tmp_path):
    """The authors' ImageNet form: no head stage, no forward-only epoch, KL over all views, the
    queue. Then the same run stopped by SIGTERM after step 1 and resumed ends bit for bit alike
    (the views, the queue and its negative draws replay exactly)."""
    base, teacher = world
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KD_TEST_", "RANK", "WORLD_SIZE", "LOCAL_RANK",
                                                                    "MASTER_"))}

    def run_script(save, *extra, **hooks):  # one thread: fast here, and the same arithmetic in every run
        cmd = [sys.executable, os.path.join(root, "tests", "fault_hooks.py"), os.path.join(root, "train_student.py"),
               *packd_args(base, teacher, tmp_path / save, "--deterministic", *extra)]
        return subprocess.run(cmd, cwd=tmp_path, env={**env, "OMP_NUM_THREADS": "1", **hooks}, capture_output=True,
                              text=True, timeout=600)

    straight = run_script("straight")
    assert straight.returncode == 0, straight.stdout[-2000:] + straight.stderr[-2000:]
    assert "cls=1*CE(all views) + div=1*KL(T=3, all views) + kd=0.8*PACKD(queue of 25000" in straight.stdout
    run, = (tmp_path / "straight" / "student_model").iterdir()
    assert run.name == "S:resnet18_imagenet_T:resnet34_imagenet_imagenet_packd_r:1.0_a:1.0_b:0.8_mix:1_1"
    rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
    assert len(rows) == 1 and "forward_only" not in rows[0]
    assert {"loss_cls", "loss_div", "loss_kd"} <= set(rows[0]) and "loss_div_aug" not in rows[0]
    assert all(torch.isfinite(torch.tensor(rows[0][k])) for k in ("loss_cls", "loss_div", "loss_kd"))
    info = json.load(open(run / "run.json"))
    assert (info["kd_T"], info["mixup_num"], info["mixup_ratio"], info["kl_views"], info["epochs"]) == \
        (3, 1, 0.1, "joint", 1)
    assert not (tmp_path / "straight" / "heads").exists()  # no teacher head at ImageNet
    state = torch.load(run / "latest.pth", map_location="cpu", weights_only=True)["distiller"]
    assert not any(k.startswith("teacher_head.") for k in state)
    labels = state["criterion.queue.labels"]
    assert labels.shape == (25000,) and int(state["criterion.draws"]) == 2  # 50000 // (8 * 2) batches of 8
    written = labels[labels >= 0]
    assert sorted(written.tolist()) == [k for k in range(CLASSES) for _ in range(4)]  # every image once
    rows = state["criterion.queue.rows"][labels >= 0]
    assert torch.allclose(rows.norm(dim=1), torch.ones(len(rows)), atol=1e-5)

    stopped = run_script("stopped", KD_TEST_SIGNAL_AT="1:1")
    assert stopped.returncode == 128 + 15, stopped.stderr[-2000:]
    resumed = run_script("stopped", "--resume", "auto")
    assert resumed.returncode == 0 and "epoch 1, step 1" in resumed.stdout, resumed.stderr[-2000:]
    a, b = [torch.load(next((tmp_path / d / "student_model").iterdir()) / "resnet18_imagenet_last.pth",
                       map_location="cpu", weights_only=True) for d in ("straight", "stopped")]
    for part in ("model", "distiller"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part} {k} differs"


def test_packd_two_processes_hold_one_queue(world, tmp_path):
    """torchrun, 2 processes (gloo): every rank ends with the same state, the queue written with the
    global batch (tests/fault_hooks.py dumps each rank's distiller state)."""
    base, teacher = world
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dump = tmp_path / "dump"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           os.path.join(root, "tests", "fault_hooks.py"), os.path.join(root, "train_student.py"),
           *packd_args(base, teacher, tmp_path)]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KD_TEST_", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_"))}
    proc = subprocess.run(cmd, cwd=tmp_path, env={**env, "OMP_NUM_THREADS": "1", "KD_TEST_DUMP_DIR": str(dump)},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    start = [torch.load(dump / f"rank{r}_start.pth", weights_only=True) for r in (0, 1)]
    end = [torch.load(dump / f"rank{r}.pth", weights_only=True) for r in (0, 1)]
    for key in end[0]:
        assert torch.equal(end[0][key], end[1][key]), f"{key} differs between the ranks"
    labels = end[0]["criterion.queue.labels"]
    assert (start[0]["criterion.queue.labels"] == -1).all()
    assert sorted(labels[labels >= 0].tolist()) == [k for k in range(CLASSES) for _ in range(4)]
    assert int(end[0]["criterion.queue.head"]) == 16 and int(end[0]["criterion.draws"]) == 2


@pytest.mark.parametrize("method", ["kd", "crd"])
def test_two_processes_on_imagenet(method, world, tmp_path):
    base, teacher = world
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           os.path.join(root, "train_student.py"), "--path_t", str(teacher), "--model_t", "resnet34_imagenet",
           "--distill", method, "--nce_k", "4", *common(base, tmp_path)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_"))}
    proc = subprocess.run(cmd, cwd=tmp_path, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    run, = (tmp_path / "student_model").iterdir()
    assert json.load(open(run / "run.json"))["world_size"] == 2 and (run / "summary.json").exists()
