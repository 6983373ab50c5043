"""A run is what its flags say: a changed setting never resumes, reuses or relabels another run.

The reproductions of the issue, each ending in a refusal (exit 2, one line naming the
flags) or a fresh run in a folder of its own; run.json is never rewritten by them.
"""
import json
import os

import pytest

import train_student
from helper.run_folder import SPEED_AND_LOGGING, identity_differences, run_settings
from tests.test_train_student import student_args, teacher_ckpt  # noqa: F401  (fixture)
from util.errors import UsageError


def only_run(save):
    runs = sorted(os.listdir(save / "student_model"))
    return [save / "student_model" / r for r in runs]


def snapshot(folder):
    return {name: (folder / name).read_bytes() for name in ("run.json", "summary.json", "metrics.jsonl")}


@pytest.mark.slow
def test_kd_T_change_with_resume_auto_is_refused(teacher_ckpt, tiny_cifar, tmp_path):
    train_student.main(student_args(teacher_ckpt, tiny_cifar, tmp_path, "kd", "--kd_T", "4"))
    run, = only_run(tmp_path)
    before = snapshot(run)
    with pytest.raises(UsageError) as e:
        train_student.main(student_args(teacher_ckpt, tiny_cifar, tmp_path, "kd", "--kd_T", "8", "--resume", "auto"))
    text = str(e.value)
    assert "--kd_T 4" in text and "8.0 now" in text and "--overwrite" in text and "--trial" in text
    assert "\n" not in text
    assert snapshot(run) == before  # run.json still says kd_T 4; nothing rewritten


@pytest.mark.slow
def test_resume_of_the_same_run_reports_it_and_rewrites_nothing(teacher_ckpt, tiny_cifar, tmp_path, capsys):
    train_student.main(student_args(teacher_ckpt, tiny_cifar, tmp_path, "kd"))
    run, = only_run(tmp_path)
    before = snapshot(run)
    capsys.readouterr()
    # speed/logging flags are not part of the identity: --print_freq and --num_workers differ here
    train_student.main(student_args(teacher_ckpt, tiny_cifar, tmp_path, "kd", "--resume", "auto",
                                    "--print_freq", "3", "--num_workers", "1"))
    assert "already finished" in capsys.readouterr().out
    assert snapshot(run) == before


@pytest.mark.slow
def test_other_epochs_on_a_finished_run_is_refused(teacher_ckpt, tiny_cifar, tmp_path):
    """Never a summary claiming an epoch count that was not trained."""
    train_student.main(student_args(teacher_ckpt, tiny_cifar, tmp_path, "kd"))
    run, = only_run(tmp_path)
    before = snapshot(run)
    with pytest.raises(UsageError, match="--epochs 1 there, 2 now"):
        train_student.main(student_args(teacher_ckpt, tiny_cifar, tmp_path, "kd", "--resume", "auto", "--epochs", "2"))
    assert snapshot(run) == before and json.loads(before["summary.json"])["epochs"] == 1


@pytest.mark.slow
def test_packd_ablation_trains_in_its_own_folder(teacher_ckpt, tiny_cifar, tmp_path, capsys):
    """--mixup_num 3 then --mixup_num 1 --alpha_aug 0: two folders (the authors' `ag:` tag and the
    number of views), two heads; the first run's accuracy is never reported under the second's flags."""
    train_student.main(student_args(teacher_ckpt, tiny_cifar, tmp_path, "packd", "--mixup_num", "2"))
    first, = only_run(tmp_path)
    before = snapshot(first)
    capsys.readouterr()
    train_student.main(student_args(teacher_ckpt, tiny_cifar, tmp_path, "packd", "--mixup_num", "1",
                                    "--alpha_aug", "0", "--resume", "auto"))
    out = capsys.readouterr().out
    assert "already finished" not in out and "saved the teacher projection head" in out
    runs = only_run(tmp_path)
    assert [r.name for r in runs] == ["S:resnet8_T:resnet8_cifar100_packd_r:1.0_a:1.0_b:0.8_ag:0.0_mix:1_1",
                                      "S:resnet8_T:resnet8_cifar100_packd_r:1.0_a:1.0_b:0.8_ag:1.0_mix:2_1"]
    assert snapshot(first) == before
    second = json.load(open(runs[0] / "run.json"))
    assert second["alpha_aug"] == 0.0 and second["mixup_num"] == 1
    assert len(os.listdir(tmp_path / "heads")) == 4  # two heads (+ their lock files)


@pytest.mark.slow
def test_another_teacher_with_the_same_name_is_refused_on_resume(teacher_ckpt, tiny_cifar, tmp_path):
    import torch
    from models import model_dict
    train_student.main(student_args(teacher_ckpt, tiny_cifar, tmp_path, "kd"))
    other = tmp_path / "other" / "resnet8_vanilla" / "ckpt_epoch_240.pth"
    other.parent.mkdir(parents=True)
    torch.manual_seed(123)
    torch.save({"model": model_dict["resnet8"](num_classes=100).state_dict()}, other)
    with pytest.raises(UsageError, match="teacher_weights"):
        train_student.main(student_args(other, tiny_cifar, tmp_path, "kd", "--resume", "auto"))


def test_identity_holds_what_is_trained_and_not_speed_or_logging():
    opt = train_student.parse_args(["--path_t", "x.pth", "--distill", "packd", "--print_freq", "7", "--amp"])
    settings = run_settings(opt)
    for flag in ("kd_T", "gamma", "alpha", "beta", "alpha_aug", "mixup_num", "nce_k", "nce_t", "nce_m", "feat_dim",
                 "t_epoch", "t_lr", "few_ratio", "epochs", "learning_rate", "lr_decay_epochs", "batch_size", "seed",
                 "weight_decay", "momentum", "dataset", "amp", "teacher_bf16", "kl_views"):
        assert flag in settings, flag
    assert not set(settings) & SPEED_AND_LOGGING
    assert "path_t" not in settings and "trial" not in settings  # the teacher's weights and the seed stand for them


def test_differences_name_each_flag_and_ignore_flags_an_older_run_lacks():
    theirs = {"kind": "student", "distill": "kd", "settings": {"kd_T": 4.0, "epochs": 240}}
    mine = {"kind": "student", "distill": "kd", "settings": {"kd_T": 8.0, "epochs": 240, "new_flag": 1}}
    assert identity_differences(theirs, mine) == [("--kd_T", 4.0, 8.0)]
