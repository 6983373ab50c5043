"""helper/teacher.py: finding a teacher by model name (the sweep) and --path_t as a run folder."""
import json

import pytest
import torch

from helper.teacher import (find_teacher, load_teacher, recorded_accuracy, resolve_teacher_path, teacher_candidates,
                            teacher_search_places)

from util.errors import UsageError

PACKD_FOLDER = "{t}_cifar100_lr_0.05_decay_0.0005_trial_0"


def touch(path, content=b"checkpoint"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


@pytest.fixture
def roots(tmp_path):
    return tmp_path / "save_t", tmp_path / "save"


# --- candidates and TEACHER_LAYOUT ------------------------------------------------------

def test_packd_layout_prefers_packds_save_t_over_repdistillers_archive(roots):
    save_t, save_dir = roots
    packd = touch(save_t / PACKD_FOLDER.format(t="vgg13") / "ckpt_epoch_240.pth")
    repdistiller = touch(save_t / "vgg13_vanilla" / "ckpt_epoch_240.pth")
    assert find_teacher("vgg13", str(save_t), str(save_dir)) == str(packd), "packd is the default"
    assert find_teacher("vgg13", str(save_t), str(save_dir), layout="packd") == str(packd)
    assert find_teacher("vgg13", str(save_t), str(save_dir), layout="repdistiller") == str(repdistiller)
    assert teacher_candidates("vgg13", str(save_t), str(save_dir), "repdistiller")[:2] == [str(repdistiller),
                                                                                           str(packd)]


def test_either_released_layout_alone_is_found_whatever_the_preference(roots):
    save_t, save_dir = roots
    only_packd = touch(save_t / PACKD_FOLDER.format(t="resnet56") / "ckpt_epoch_240.pth")
    only_repd = touch(save_t / "wrn_40_2_vanilla" / "ckpt_epoch_240.pth")
    for layout in ("packd", "repdistiller"):
        assert find_teacher("resnet56", str(save_t), str(save_dir), layout) == str(only_packd)
        assert find_teacher("wrn_40_2", str(save_t), str(save_dir), layout) == str(only_repd)


def test_run_folders_come_after_the_released_layouts(roots):
    save_t, save_dir = roots
    run = save_dir / "models" / "resnet110_cifar100_lr_0.1_decay_0.0005_trial_0"
    last = touch(run / "resnet110_last.pth")
    epoch_240 = touch(run / "ckpt_epoch_240.pth")
    # unfinished: its <model>_last.pth may be a stopped run's weights, only epoch 240 counts
    assert find_teacher("resnet110", str(save_t), str(save_dir)) == str(epoch_240)
    (run / "summary.json").write_text("{}")
    assert find_teacher("resnet110", str(save_t), str(save_dir)) == str(last)
    # save_t's run folders before save_dir's, released layouts before both
    in_save_t = touch(save_t / "models" / "resnet110_cifar100_lr_0.05_decay_0.0005_trial_0" / "ckpt_epoch_240.pth")
    assert find_teacher("resnet110", str(save_t), str(save_dir)) == str(in_save_t)
    released = touch(save_t / "resnet110_vanilla" / "ckpt_epoch_240.pth")
    assert find_teacher("resnet110", str(save_t), str(save_dir)) == str(released)


def test_other_trials_and_models_with_a_common_prefix_are_not_teachers(roots):
    save_t, save_dir = roots
    touch(save_dir / "models" / "resnet8_cifar100_lr_0.05_decay_0.0005_trial_1" / "ckpt_epoch_240.pth")
    touch(save_dir / "models" / "resnet8x4_cifar100_lr_0.05_decay_0.0005_trial_0" / "ckpt_epoch_240.pth")
    unfinished = save_dir / "models" / "resnet8_cifar100_lr_0.05_decay_0.0005_trial_0"
    touch(unfinished / "resnet8_last.pth")  # no summary.json, no epoch 240
    assert find_teacher("resnet8", str(save_t), str(save_dir)) is None


def test_bad_layout_is_a_one_line_usage_error(roots):
    save_t, save_dir = roots
    with pytest.raises(UsageError, match="TEACHER_LAYOUT must be packd or repdistiller, got 'mdistiller'"):
        find_teacher("resnet56", str(save_t), str(save_dir), layout="mdistiller")


def test_search_places_name_every_place_in_lookup_order(roots):
    save_t, save_dir = roots
    places = teacher_search_places("vgg13", str(save_t), str(save_dir), "repdistiller")
    assert places[0] == f"{save_t}/vgg13_vanilla/ckpt_epoch_240.pth"
    assert places[1] == f"{save_t}/{PACKD_FOLDER.format(t='vgg13')}/ckpt_epoch_240.pth"
    assert places[2].startswith(f"{save_t}/models/vgg13_cifar100_lr_*_decay_*_trial_0/")
    assert places[3].startswith(f"{save_dir}/models/vgg13_cifar100_lr_*_decay_*_trial_0/")
    assert "vgg13_last.pth (finished runs)" in places[3]


# --- recorded accuracy ------------------------------------------------------------------

def test_recorded_accuracy_from_checkpoint_keys_then_summary(tmp_path):
    acc = tmp_path / "a" / "ckpt_epoch_240.pth"
    acc.parent.mkdir()
    torch.save({"model": {}, "accuracy": torch.tensor(72.5), "best_acc": 73.0}, acc)  # RepDistiller: a tensor
    assert recorded_accuracy(str(acc)) == (72.5, "the checkpoint's 'accuracy'")
    best = tmp_path / "b" / "best.pth"
    best.parent.mkdir()
    torch.save({"model": {}, "best_acc": 71.25}, best)
    assert recorded_accuracy(str(best)) == (71.25, "the checkpoint's 'best_acc'")
    run = tmp_path / "run"
    touch(run / "resnet8_last.pth")  # unreadable as a checkpoint: the summary still tells
    (run / "summary.json").write_text(json.dumps({"last_acc": 70.0, "best_acc": 71.0}))
    assert recorded_accuracy(str(run / "resnet8_last.pth")) == (70.0, "summary.json 'last_acc'")
    bare = tmp_path / "bare" / "ckpt_epoch_240.pth"
    bare.parent.mkdir()
    torch.save({"model": {}, "accuracy": None}, bare)
    assert recorded_accuracy(str(bare)) == (None, None)
    assert recorded_accuracy(str(tmp_path / "missing.pth")) == (None, None)


# --- --path_t as a run folder -------------------------------------------------------------

def test_a_file_is_returned_as_is(tmp_path):
    f = touch(tmp_path / "anything.pth")
    assert resolve_teacher_path(str(f)) == str(f)
    assert resolve_teacher_path(str(tmp_path / "nope.pth")) == str(tmp_path / "nope.pth"), \
        "a missing file is left to load_checkpoint, which names it"


def test_finished_run_folder_gives_its_last_checkpoint(tmp_path):
    run = tmp_path / "resnet56_cifar100_lr_0.05_decay_0.0005_trial_0"
    touch(run / "ckpt_epoch_240.pth")
    touch(run / "resnet56_last.pth")
    touch(run / "resnet56_best.pth")
    assert resolve_teacher_path(str(run)) == str(run / "ckpt_epoch_240.pth"), "unfinished: epoch 240"
    (run / "summary.json").write_text("{}")
    assert resolve_teacher_path(str(run)) == str(run / "resnet56_last.pth")


def test_run_json_names_the_model_when_several_last_checkpoints_exist(tmp_path):
    run = tmp_path / "run"
    touch(run / "resnet8_last.pth")
    touch(run / "resnet8x4_last.pth")
    (run / "summary.json").write_text("{}")
    with pytest.raises(UsageError) as e:
        resolve_teacher_path(str(run))
    assert "several *_last.pth" in str(e.value) and "\n" not in str(e.value)
    (run / "run.json").write_text(json.dumps({"model": "resnet8x4"}))
    assert resolve_teacher_path(str(run)) == str(run / "resnet8x4_last.pth")


def test_folder_without_a_teacher_checkpoint_is_a_one_line_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError) as e:
        resolve_teacher_path(str(empty))
    message = str(e.value)
    assert f"--path_t '{empty}'" in message and "ckpt_epoch_240.pth" in message and "summary.json" in message
    assert "\n" not in message


def test_load_teacher_accepts_a_run_folder(tmp_path):
    from models import model_dict
    torch.manual_seed(0)
    model = model_dict["resnet8"](num_classes=100)
    run = tmp_path / "save" / "models" / "resnet8_cifar100_lr_0.05_decay_0.0005_trial_0"
    run.mkdir(parents=True)
    torch.save({"model": model.state_dict(), "model_name": "resnet8"}, run / "resnet8_last.pth")
    torch.save({"model": {}}, run / "ckpt_epoch_240.pth")  # would not load: must not be the one picked
    (run / "summary.json").write_text(json.dumps({"last_acc": 1.0}))
    (run / "run.json").write_text(json.dumps({"model": "resnet8"}))
    loaded, name = load_teacher(str(run))
    assert name == "resnet8"
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with pytest.raises(UsageError, match="folder without a teacher checkpoint"):
        load_teacher(str(tmp_path))
