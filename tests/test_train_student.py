"""train_student.py end to end: every method for one epoch on a generated data set (CPU)."""
import json
import os

import pytest
import torch

import train_student
import train_teacher
from distiller_zoo import METHODS

pytestmark = pytest.mark.slow  # real training runs: the full suite runs them, -m 'not slow' skips them


@pytest.fixture(scope="module")
def teacher_ckpt(tiny_cifar, tmp_path_factory):
    """A resnet8 teacher trained for one epoch by train_teacher.py."""
    save = tmp_path_factory.mktemp("teacher")
    train_teacher.main(["--model", "resnet8", "--epochs", "1", "--batch_size", "100", "--data_folder",
                        str(tiny_cifar), "--save_dir", str(save), "--device", "cpu", "--no_progress",
                        "--no_tensorboard"])
    return save / "models" / "resnet8_cifar100_lr_0.05_decay_0.0005_trial_0" / "resnet8_last.pth"


def student_args(teacher, data, save, method, *extra):
    return ["--path_t", str(teacher), "--model_s", "resnet8", "--distill", method, "--epochs", "1",
            "--batch_size", "100", "--data_folder", str(data), "--save_dir", str(save), "--device", "cpu",
            "--no_progress", "--no_tensorboard", "--nce_k", "16", "--init_epochs", "1", "--t-epoch", "1",
            "--mixup_num", "1", "--head_cache_dir", str(save / "heads"), *extra]


def test_the_zoo_holds_the_fifteen_published_methods():
    assert set(METHODS) >= {"kd", "hint", "attention", "similarity", "correlation", "vid", "rkd", "pkt",
                            "abound", "factor", "fsp", "nst", "kdsvd", "crd", "packd"}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_runs_one_epoch(method, teacher_ckpt, tiny_cifar, tmp_path, capsys):
    train_student.main(student_args(teacher_ckpt, tiny_cifar, tmp_path, method))
    out = capsys.readouterr().out
    runs = os.listdir(tmp_path / "student_model")
    assert len(runs) == 1
    run = tmp_path / "student_model" / runs[0]
    w = METHODS[method].default_weights
    tags = "".join(f"_{t}" for t in METHODS[method].folder_tags(train_student.parse_args(
        student_args(teacher_ckpt, tiny_cifar, tmp_path, method))))
    assert runs[0] == (f"S:resnet8_T:resnet8_cifar100_{method}_r:{float(w['gamma'])}_a:{float(w['alpha'])}"
                       f"_b:{float(w['beta'])}{tags}_1")
    assert "teacher resnet8" in out and "test top-1" in out
    rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
    assert rows and all(torch.isfinite(torch.tensor(r["train_loss"])) for r in rows)
    info = json.load(open(run / "run.json"))
    assert info["distill"] == method and info["model_t"] == "resnet8" and "teacher_acc" in info
    ckpt = torch.load(run / "resnet8_last.pth", map_location="cpu", weights_only=True)
    from models import model_dict
    model_dict["resnet8"](num_classes=100).load_state_dict(ckpt["model"])
    assert os.path.isfile(run / "summary.json")


@pytest.mark.parametrize("method", ["kd", "crd", "packd"])
def test_speed_options_run_end_to_end(method, teacher_ckpt, tiny_cifar, tmp_path, capsys):
    """--amp --channels_last --teacher_bf16 (bf16 on the CPU) through the real loop, evaluation included."""
    train_student.main(student_args(teacher_ckpt, tiny_cifar, tmp_path, method, "--amp", "--channels_last",
                                    "--teacher_bf16"))
    run = tmp_path / "student_model" / os.listdir(tmp_path / "student_model")[0]
    rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
    assert rows and all(torch.isfinite(torch.tensor([r["train_loss"], r["test_loss"]])).all() for r in rows)
    info = json.load(open(run / "run.json"))
    assert info["amp"] and info["channels_last"] and info["teacher_bf16"]


def test_default_and_explicit_weights(teacher_ckpt):
    base = ["--path_t", str(teacher_ckpt), "--model_s", "resnet8"]
    from distiller_zoo.base import resolve_weights
    expected = {"kd": (0.1, 0.9, 0), "hint": (1, 0, 100), "attention": (1, 0, 1000), "similarity": (1, 0, 3000),
                "correlation": (1, 0, 0.02), "vid": (1, 0, 1), "rkd": (1, 0, 1), "pkt": (1, 0, 30000),
                "abound": (1, 0, 1), "factor": (1, 0, 200), "fsp": (1, 0, 50), "nst": (1, 0, 50),
                "crd": (1, 0, 0.8), "kdsvd": (1, 0, 1), "packd": (1, 1, 0.8)}
    for method, (g, a, b) in expected.items():
        opt = train_student.parse_args(base + ["--distill", method])
        w = resolve_weights(METHODS[method], opt)
        assert (w["gamma"], w["alpha"], w["beta"]) == (g, a, b), method
    opt = train_student.parse_args(base + ["--distill", "crd", "-r", "0.5", "-a", "0.2", "-b", "2"])
    assert resolve_weights(METHODS["crd"], opt) == {"gamma": 0.5, "alpha": 0.2, "beta": 2.0}
    assert train_student.parse_args(base + ["--distill", "PACKDCONLoss"]).distill == "packd"


@pytest.mark.parametrize("layout", ["repdistiller", "packd_save_t", "no_name_in_checkpoint"])
def test_teacher_path_layouts(layout, teacher_ckpt, tmp_path):
    from helper.teacher import load_teacher
    ckpt = torch.load(teacher_ckpt, map_location="cpu", weights_only=True)
    if layout == "repdistiller":
        path = tmp_path / "models" / "resnet8_vanilla" / "ckpt_epoch_240.pth"
        saved = {"model": ckpt["model"]}
    elif layout == "packd_save_t":
        path = tmp_path / "resnet8_cifar100_lr_0.05_decay_0.0005_trial_0" / "ckpt_epoch_240.pth"
        saved = {"model": ckpt["model"], "epoch": 240}
    else:
        path = tmp_path / "some_folder" / "teacher.pth"
        saved = {"model": ckpt["model"]}
    path.parent.mkdir(parents=True)
    torch.save(saved, path)
    if layout == "no_name_in_checkpoint":
        from util.errors import UsageError
        with pytest.raises(UsageError, match="--model_t"):
            load_teacher(str(path))
        model, name = load_teacher(str(path), model_t="resnet8")
    else:
        model, name = load_teacher(str(path))
    assert name == "resnet8" and not model.training
    x = torch.randn(2, 3, 32, 32)
    ref, _ = load_teacher(str(teacher_ckpt))
    assert torch.equal(model(x), ref(x))


def test_wrn_and_mobilenet_folder_names():
    from helper.teacher import name_from_folder
    assert name_from_folder("save/models/wrn_40_2_vanilla/ckpt_epoch_240.pth") == "wrn_40_2"
    assert name_from_folder("save_t/ResNet50_cifar100_lr_0.05_decay_0.0005_trial_0/x.pth") == "ResNet50"
    assert name_from_folder("save/models/mobile_half_vanilla/ckpt_epoch_240.pth") == "MobileNetV2"
    assert name_from_folder("save/models/resnet32x4_vanilla/ckpt_epoch_240.pth") == "resnet32x4"


def test_resume_checks_the_teachers_weights(teacher_ckpt, tiny_cifar, tmp_path, capsys):
    """A resume with other teacher weights is refused; the same weights under another path resume."""
    import shutil
    from helper.checkpoint import atomic_save
    from util.errors import UsageError
    save = tmp_path / "save"
    args = ("--epochs", "2", "--save_freq", "1")
    train_student.main(student_args(teacher_ckpt, tiny_cifar, save, "kd", *args))
    run = save / "student_model" / os.listdir(save / "student_model")[0]

    def unfinish():
        """Back to the end of epoch 1 (ckpt_epoch_1.pth holds the complete state), summary gone."""
        shutil.copy(run / "ckpt_epoch_1.pth", run / "latest.pth")
        (run / "summary.json").unlink()

    def teacher_copy(folder, change=False):
        path = tmp_path / folder / teacher_ckpt.parent.name / teacher_ckpt.name
        path.parent.mkdir(parents=True)
        ckpt = torch.load(teacher_ckpt, map_location="cpu", weights_only=True)
        if change:
            key = next(k for k, v in ckpt["model"].items() if v.is_floating_point())
            ckpt["model"][key] = ckpt["model"][key] + 1e-3
        torch.save(ckpt, path)
        return path

    unfinish()
    before = (run / "latest.pth").read_bytes()
    with pytest.raises(UsageError, match="teacher_weights '[0-9a-f]+' there"):
        train_student.main(student_args(teacher_copy("other", change=True), tiny_cifar, save, "kd",
                                        "--resume", "auto", *args))
    assert (run / "latest.pth").read_bytes() == before, "a refused resume must not touch the run"

    train_student.main(student_args(teacher_copy("moved"), tiny_cifar, save, "kd", "--resume", "auto", *args))
    assert len(open(run / "metrics.jsonl").read().splitlines()) == 2 and (run / "summary.json").exists()

    # A checkpoint written before the check existed (no fingerprint) still resumes, with a note.
    unfinish()
    ckpt = torch.load(run / "latest.pth", map_location="cpu", weights_only=True)
    del ckpt["run"]["identity"]["teacher_weights"]
    atomic_save(ckpt, run / "latest.pth")
    capsys.readouterr()
    train_student.main(student_args(teacher_ckpt, tiny_cifar, save, "kd", "--resume", "auto", *args))
    assert "resumed from" in capsys.readouterr().out
    assert len(open(run / "metrics.jsonl").read().splitlines()) == 2


def test_few_ratio_trains_on_the_authors_subset(teacher_ckpt, tiny_cifar, tmp_path, capsys):
    """--few-ratio 0.5 keeps half of every class (the authors' split) and says so; a ratio that
    keeps fewer images than classes is a one-line usage error."""
    from util.errors import UsageError
    train_student.main(student_args(teacher_ckpt, tiny_cifar, tmp_path, "packd", "--few-ratio", "0.5"))
    out = capsys.readouterr().out
    assert "500 training images" in out  # 10 per class x 100 classes, half kept
    with pytest.raises(UsageError, match="--few-ratio 0.05 keeps 50 of 1000 images"):
        train_student.main(student_args(teacher_ckpt, tiny_cifar, tmp_path / "bad", "packd", "--few-ratio", "0.05"))


@pytest.mark.parametrize("method", ["kd", "packd"])
def test_compile_covers_student_and_teacher(method, teacher_ckpt, tiny_cifar, tmp_path, eager_compile):
    """--compile compiles the teacher too (its forward is half of a step's kernel launches), both
    with static shapes; dynamo traces both for a real epoch and the checkpoints keep plain keys."""
    train_student.main(student_args(teacher_ckpt, tiny_cifar, tmp_path, method, "--compile"))
    assert eager_compile == [{"mode": "default", "dynamic": False}] * 2
    run = tmp_path / "student_model" / os.listdir(tmp_path / "student_model")[0]
    rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
    assert rows and all(torch.isfinite(torch.tensor([r["train_loss"], r["test_loss"]])).all() for r in rows)
    ckpt = torch.load(run / "resnet8_last.pth", map_location="cpu", weights_only=True)
    from models import model_dict
    model_dict["resnet8"](num_classes=100).load_state_dict(ckpt["model"])


def test_the_authors_run_distill_command_runs_unchanged(teacher_ckpt, tiny_cifar, tmp_path, capsys):
    """PACKD's scripts/run_distill.sh line, with its never-set ${pos_k} expanding to nothing,
    plus flags of their argparse that do nothing there either (named in a note here)."""
    authors = ("--dataset cifar100 --path_t {t} --distill PACKDCONLoss --model_s resnet8 --pos_k "
               "--save_dir {save} -r 1 -a 1 --alpha_aug 1 -b 0.8 --mixup_num 3 --trial 0").format(
        t=teacher_ckpt, save=tmp_path).split()
    ours = ["--epochs", "1", "--batch_size", "100", "--data_folder", str(tiny_cifar), "--device", "cpu",
            "--no_progress", "--no_tensorboard", "--nce_k", "16", "--t-epoch", "1",
            "--head_cache_dir", str(tmp_path / "heads"), "--pr_w", "10", "--t-milestones", "30", "45",
            "--ncls", "100", "--loader_type", "MPKD"]
    train_student.main(authors + ours)
    out = capsys.readouterr().out
    for flag in ("--pos_k", "--pr_w", "--t_milestones", "--loader_type"):
        assert f"note: {flag} is accepted" in out
    assert "--ncls" not in out  # a real setting (checked), not an ignored one
    run = tmp_path / "student_model" / "S:resnet8_T:resnet8_cifar100_packd_r:1.0_a:1.0_b:0.8_ag:1.0_mix:3_0"
    assert os.path.isfile(run / "summary.json")
    with pytest.raises(SystemExit) as e:
        train_student.parse_args(["--path_t", str(teacher_ckpt), "--ncls", "10"])
    assert e.value.code == 2
    assert "100 classes" in capsys.readouterr().err
