"""train_teacher.py end to end on a generated data set (CPU)."""
import json
import math
import os

import pytest
import torch

import train_teacher
from models import model_dict


@pytest.mark.slow
def test_teacher_run_writes_a_complete_run_folder(tiny_cifar, tmp_path, capsys):
    train_teacher.main(["--model", "resnet8", "--epochs", "2", "--save_freq", "1", "--batch_size", "100",
                        "--data_folder", str(tiny_cifar), "--save_dir", str(tmp_path), "--device", "cpu",
                        "--no_progress"])
    out = capsys.readouterr().out
    run = tmp_path / "models" / "resnet8_cifar100_lr_0.05_decay_0.0005_trial_0"
    names = set(os.listdir(run))
    assert {"ckpt_epoch_1.pth", "ckpt_epoch_2.pth", "resnet8_best.pth", "resnet8_last.pth", "latest.pth",
            "metrics.jsonl", "run.json", "summary.json", "tb"} <= names
    assert not [n for n in names if n.startswith(".tmp")]
    rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        assert {"lr", "train_loss", "train_acc", "test_loss", "test_acc", "test_acc_top5", "seconds"} <= set(r)
        assert r["lr"] == 0.05
    summary = json.load(open(run / "summary.json"))
    assert summary["last_acc"] == rows[-1]["test_acc"]
    assert summary["best_acc"] == max(r["test_acc"] for r in rows)
    info = json.load(open(run / "run.json"))
    assert info["kind"] == "teacher" and info["model"] == "resnet8" and info["epochs"] == 2
    assert os.listdir(run / "tb"), "TensorBoard event file missing"
    assert "last-epoch test top-1" in out and "best" in out

    for name in ("ckpt_epoch_2.pth", "resnet8_best.pth", "resnet8_last.pth", "latest.pth"):
        ckpt = torch.load(run / name, map_location="cpu", weights_only=True)
        assert {"model", "epoch", "accuracy", "best_acc", "optimizer", "model_name", "args"} <= set(ckpt)
        assert ckpt["model_name"] == "resnet8" and ckpt["args"]["model"] == "resnet8"
        model_dict[ckpt["model_name"]](num_classes=100).load_state_dict(ckpt["model"])
    last = torch.load(run / "resnet8_last.pth", map_location="cpu", weights_only=True)
    assert last["epoch"] == 2 and abs(last["accuracy"] - rows[-1]["test_acc"]) < 1e-9


def test_small_models_default_to_lr_001():
    opt = train_teacher.parse_args(["--model", "ShuffleV1"])
    assert opt.learning_rate == 0.01 and opt.lr_decay_epochs == [150, 180, 210]
    opt = train_teacher.parse_args(["--model", "resnet56"])
    assert opt.learning_rate == 0.05 and opt.epochs == 240 and opt.batch_size == 64
    assert opt.weight_decay == 5e-4 and opt.momentum == 0.9 and opt.save_freq == 40


def test_a_small_model_rate_other_than_the_references_is_honoured_with_a_note(capsys):
    opt = train_teacher.parse_args(["--model", "MobileNetV2", "--learning_rate", "0.05"])
    assert opt.learning_rate == 0.05
    assert "force 0.01 for MobileNetV2" in capsys.readouterr().out
    train_teacher.parse_args(["--model", "MobileNetV2", "--learning_rate", "0.01"])
    train_teacher.parse_args(["--model", "resnet56", "--learning_rate", "0.1"])
    assert "note" not in capsys.readouterr().out


def test_help_lists_models_and_defaults(capsys):
    import train_student
    with pytest.raises(SystemExit):
        train_teacher.parse_args(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "resnet110" in out and "(default resnet110)" in out and "ShuffleV2" in out and "resnet34_imagenet" in out
    assert "torch.compile the model" in out and "teacher" not in out.split("--compile ")[1][:60]
    with pytest.raises(SystemExit):
        train_student.parse_args(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "torch.compile the student and the teacher" in out and "(default: 4)" in out  # --kd_T
    assert "MobileNetV2" in out and "packd" in out


@pytest.mark.slow
def test_generated_data_never_lands_where_real_data_is_looked_for(tmp_path, monkeypatch, capsys):
    """Without --data_folder, --generate_data writes to ./data_generated; a run on it says so and records it."""
    from util.errors import UsageError
    monkeypatch.chdir(tmp_path)
    import util.malloc
    tuned = []
    monkeypatch.setattr(util.malloc, "keep_freed_memory", lambda: tuned.append(True))
    opt = train_teacher.parse_args(["--generate_data"])
    assert opt.data_folder == "./data_generated"
    assert train_teacher.parse_args([]).data_folder == "./data"
    with pytest.raises(UsageError, match="where real CIFAR-100 is looked for"):
        train_teacher.parse_args(["--generate_data", "--data_folder", "./data"])
    train_teacher.main(["--model", "resnet8", "--epochs", "1", "--batch_size", "500", "--generate_data", "--device",
                        "cpu", "--no_progress", "--no_tensorboard"])
    out = capsys.readouterr().out
    assert "GENERATED data set, not CIFAR-100" in out and not (tmp_path / "data").exists()
    assert tuned == [True]  # a CPU run keeps freed memory in the process (util.malloc)
    run = tmp_path / "save" / "models" / "resnet8_cifar100_lr_0.05_decay_0.0005_trial_0"
    assert json.load(open(run / "run.json"))["generated_data"] is True
    assert json.load(open(run / "summary.json"))["generated_data"] is True
    # the "real thing" command pointed at that folder still says so
    train_teacher.main(["--model", "resnet8", "--epochs", "1", "--batch_size", "500", "--data_folder",
                        "./data_generated", "--device", "cpu", "--no_progress", "--no_tensorboard", "--trial", "1"])
    assert "GENERATED data set, not CIFAR-100" in capsys.readouterr().out


@pytest.mark.slow
def test_compile_plumbing_static_shapes_and_plain_checkpoints(tiny_cifar, tmp_path, eager_compile):
    """--compile: the model is compiled in place with static shapes (each batch shape, the last
    partial one included, gets its own graph: what CUDA graphs need) and checkpoints keep plain
    keys. Dynamo traces the real model here; the "eager" backend replaces inductor's code
    generation, which takes minutes on this CPU (the speed rows time real inductor)."""
    train_teacher.main(["--model", "resnet8", "--epochs", "1", "--batch_size", "64", "--data_folder",
                        str(tiny_cifar), "--save_dir", str(tmp_path), "--device", "cpu", "--no_progress",
                        "--no_tensorboard", "--compile", "--compile_mode", "reduce-overhead"])
    assert eager_compile == [{"mode": "reduce-overhead", "dynamic": False}]
    run = tmp_path / "models" / "resnet8_cifar100_lr_0.05_decay_0.0005_trial_0"
    rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
    assert len(rows) == 1 and all(map(math.isfinite, (rows[0]["train_loss"], rows[0]["test_loss"])))
    ckpt = torch.load(run / "resnet8_last.pth", map_location="cpu", weights_only=True)
    assert not [k for k in ckpt["model"] if "_orig_mod" in k]
    model_dict["resnet8"](num_classes=100).load_state_dict(ckpt["model"])
