"""Checkpoint content, atomic writes, RNG capture and the run-folder rules (in-process, tiny)."""
import argparse
import json
import os
import random

import numpy as np
import pytest
import torch

from dataset.loader import DeviceLoader
from distiller_zoo.base import Distiller
from helper import checkpoint
from helper.checkpoint import (atomic_save, atomic_write_json, capture_rng, load_checkpoint,
                               remove_stale_temp_files, restore_rng)
from util.errors import UsageError
from helper.trainer import LATEST, Trainer, check_run_folder
from tests.fault_hooks import FaultHooks
from tests.helper.test_loops import TinyNet, tiny_data

IDENTITY = {"kind": "student", "model_s": "tiny", "model_t": "tiny_t", "distill": "vanilla"}


def options(**changes):
    opt = argparse.Namespace(learning_rate=0.05, momentum=0.9, weight_decay=5e-4, epochs=2,
                             lr_decay_epochs=[1], lr_decay_rate=0.1, amp=False, print_freq=100, save_freq=1,
                             no_progress=True, no_tensorboard=True, resume=None, overwrite=False, seed=0)
    vars(opt).update(changes)
    return opt


def make_trainer(run_dir, opt=None, log=lambda *a: None):
    opt = opt or options()
    torch.manual_seed(0)
    distiller = Distiller(TinyNet())
    images, labels = tiny_data(16)
    train = DeviceLoader(images, labels, 8, train=True, seed=0, device="cpu")
    test = DeviceLoader(images[:8], labels[:8], 8, train=False, device="cpu")
    return Trainer(opt, distiller, train, test, str(run_dir), "tiny", IDENTITY, {"kind": "student"},
                   torch.device("cpu"), log=log)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run") / "tiny_run"
    make_trainer(run_dir).fit()
    return run_dir


# ---------------------------------------------------------------------------------- content
def test_every_checkpoint_loads_with_weights_only_and_has_the_reference_keys(finished_run):
    names = set(os.listdir(finished_run))
    assert {"ckpt_epoch_1.pth", "ckpt_epoch_2.pth", "tiny_best.pth", "tiny_last.pth", LATEST, "metrics.jsonl",
            "run.json", "summary.json"} <= names
    assert not [n for n in names if n.startswith(".tmp")]
    for name in ("ckpt_epoch_1.pth", "ckpt_epoch_2.pth", "tiny_best.pth", "tiny_last.pth", LATEST):
        ckpt = torch.load(finished_run / name, map_location="cpu", weights_only=True)
        assert {"model", "epoch", "accuracy", "best_acc", "optimizer", "model_name", "args"} <= set(ckpt), name
        assert {"distiller", "stage", "step", "loader", "rng", "run"} <= set(ckpt), name
        assert ckpt["model_name"] == "tiny" and ckpt["args"]["lr_decay_epochs"] == [1]
        assert ckpt["run"]["identity"] == IDENTITY and ckpt["stage"] == "main" and ckpt["step"] == 0
        TinyNet().load_state_dict(ckpt["model"])
    assert torch.load(finished_run / "ckpt_epoch_1.pth", weights_only=True)["epoch"] == 1
    last = torch.load(finished_run / LATEST, weights_only=True)
    assert last["epoch"] == 2 and last["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.005)
    rows = [json.loads(line) for line in open(finished_run / "metrics.jsonl")]
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["lr"] == pytest.approx(0.005)
    summary = json.load(open(finished_run / "summary.json"))
    assert summary["best_acc"] == max(r["test_acc"] for r in rows) and summary["epochs"] == 2


def test_files_get_the_usual_permissions(finished_run):
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(finished_run / LATEST).st_mode & 0o777 == 0o666 & ~mask


def test_resume_of_a_finished_run_rewrites_nothing(finished_run):
    before = {p.name: p.read_bytes() for p in finished_run.iterdir() if p.is_file()}
    logs = []
    trainer = make_trainer(finished_run, options(resume="auto"), log=logs.append)
    path = check_run_folder(str(finished_run), trainer.opt, IDENTITY)
    assert path == str(finished_run / LATEST)
    summary = trainer.fit(path)
    assert trainer.epoch == 2 and any("already finished" in m for m in logs)
    assert summary["epochs"] == 2
    assert {p.name: p.read_bytes() for p in finished_run.iterdir() if p.is_file()} == before


def test_resume_drops_metric_rows_written_after_the_checkpoint(finished_run):
    """A crash after a metrics row but before 'latest' was written: the row is redone, not kept twice."""
    with open(finished_run / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"epoch": 3, "train_loss": 1.0}) + "\n" + '{"epoch": 4, "tra')
    trainer = make_trainer(finished_run, options(resume="auto", epochs=3))
    trainer.fit(str(finished_run / LATEST))
    rows = [json.loads(line) for line in open(finished_run / "metrics.jsonl")]
    assert [r["epoch"] for r in rows] == [1, 2, 3] and "lr" in rows[-1]


# ---------------------------------------------------------------------------------- atomic writes
def test_a_failing_save_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "latest.pth"
    atomic_save({"epoch": 1, "w": torch.ones(3)}, str(path))
    good = path.read_bytes()

    def half_then_fail(obj, fh, *args, **kwargs):
        fh.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"epoch": 2, "w": torch.zeros(3)}, str(path))
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["latest.pth"], "the temp file must be removed"
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["epoch"] == 1


def test_a_failing_json_write_leaves_the_old_file_intact(tmp_path):
    path = tmp_path / "summary.json"
    atomic_write_json({"best_acc": 1.0}, str(path))
    with pytest.raises(TypeError):
        atomic_write_json({"best_acc": object()}, str(path))
    assert json.load(open(path)) == {"best_acc": 1.0}
    assert os.listdir(tmp_path) == ["summary.json"]


def test_stale_temp_files_are_removed(tmp_path):
    (tmp_path / ".tmp_abc.pth").write_bytes(b"half")
    (tmp_path / "latest.pth").write_bytes(b"keep")
    assert remove_stale_temp_files(str(tmp_path)) == [".tmp_abc.pth"]
    assert os.listdir(tmp_path) == ["latest.pth"]
    assert remove_stale_temp_files(str(tmp_path / "missing")) == []


# ---------------------------------------------------------------------------------- loading
def test_unreadable_checkpoints_give_one_line_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_checkpoint(str(tmp_path / "nope.pth"))
    good = tmp_path / "good.pth"
    torch.save({"model": {"w": torch.ones(100)}}, good)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(UsageError, match="truncated or corrupt") as info:
        load_checkpoint(str(cut))
    assert "\n" not in str(info.value)
    pickled = tmp_path / "pickled.pth"
    torch.save({"model": {}, "opt": argparse.Namespace(a=1)}, pickled)
    with pytest.raises(UsageError, match="--trust_checkpoint"):
        load_checkpoint(str(pickled))
    assert load_checkpoint(str(pickled), trust=True)["opt"].a == 1


def test_rng_capture_round_trip_is_weights_only_safe(tmp_path):
    torch.manual_seed(3)
    random.seed(3)
    np.random.seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in some NumPy versions' state
    path = tmp_path / "rng.pth"
    atomic_save({"rng": capture_rng()}, str(path))
    expected = (torch.rand(3), random.random(), np.random.rand(2))
    restore_rng(torch.load(path, weights_only=True)["rng"])
    again = (torch.rand(3), random.random(), np.random.rand(2))
    assert torch.equal(expected[0], again[0]) and expected[1] == again[1]
    assert np.array_equal(expected[2], again[2])


# ---------------------------------------------------------------------------------- run folder rules
def test_run_folder_rules(tmp_path, finished_run):
    fresh = tmp_path / "fresh"
    assert check_run_folder(str(fresh), options(), IDENTITY) is None
    assert check_run_folder(str(fresh), options(resume="auto"), IDENTITY) is None  # nothing to resume
    with pytest.raises(UsageError, match="already holds a finished run"):
        check_run_folder(str(finished_run), options(), IDENTITY)
    assert check_run_folder(str(finished_run), options(overwrite=True), IDENTITY) is None
    other = {**IDENTITY, "distill": "crd"}
    with pytest.raises(UsageError, match="distill 'vanilla' there, 'crd' now"):
        check_run_folder(str(tmp_path / "x"), options(resume=str(finished_run / LATEST)), other)
    with pytest.raises(UsageError, match="does not exist"):
        check_run_folder(str(fresh), options(resume=str(tmp_path / "none.pth")), IDENTITY)


def test_fault_hooks_are_off_unless_asked_for():
    assert FaultHooks.from_env({}) is None
    hooks = FaultHooks.from_env({"KD_TEST_SIGNAL_AT": "2:3:int", "KD_TEST_NAN_AT": "1:1"})
    assert hooks.signal_at == (2, 3) and hooks.signal_number.name == "SIGINT" and hooks.nan_at == (1, 1)
    with pytest.raises(UsageError, match="EPOCH:STEP"):
        FaultHooks.from_env({"KD_TEST_KILL_AT": "soon"})
