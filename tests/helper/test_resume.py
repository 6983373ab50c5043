"""Crash-safe, resumable runs: a run killed and resumed ends bit for bit like one never stopped.

For kd, crd and packd on a tiny data set (resnet8 teacher and student, CPU,
--deterministic), each through the real script in subprocesses:

  baseline   one uninterrupted run;
  lineage    SIGKILL in the middle of epoch 2 (latest.pth = end of epoch 1)
             [kd, on a copy: --resume auto with a NaN injected at epoch 2, step 2: exit 3,
              every file as the killed run left it]
             --resume auto, SIGTERM during step 3 of epoch 2 (mid-epoch latest.pth, exit 143)
             --resume auto to the end.

The interruptions use the trainer's test hooks (KD_TEST_KILL_AT, KD_TEST_SIGNAL_AT,
KD_TEST_NAN_AT; see tests/fault_hooks.py), so they happen at an exact step. Baselines and
lineages run side by side; each test waits for the runs it checks.
"""
import argparse
import hashlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from tests.worlds import write_tiny_world

pytestmark = pytest.mark.slow  # real training runs: the full suite runs them, -m 'not slow' skips them

ROOT = pathlib.Path(__file__).resolve().parents[2]
METHODS = ("kd", "crd", "packd")
PARALLEL = 3
TIMEOUT_S = 180
STEPS_PER_EPOCH = 4  # 200 training images, batch 50
# packd spends its first epoch forward-only (memory + BN statistics): one epoch more
EPOCHS = {"kd": 2, "crd": 2, "packd": 1}
KILL_AT, SIGTERM_AT, NAN_AT = "2:3", "2:3", "2:2"


def script_env(**hooks):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KD_TEST_")}
    for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env[key] = "http://127.0.0.1:9"  # never download
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1", **hooks)
    return env


def hashes(folder, suffix=".pth"):
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(pathlib.Path(folder).iterdir())
            if p.name.endswith(suffix)}


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("resume")
    data, teacher, _ = write_tiny_world(base)
    return argparse.Namespace(base=base, data=data, teacher=teacher)


def argv(world, method, save_dir, *extra):
    return [sys.executable, str(ROOT / "tests" / "fault_hooks.py"), str(ROOT / "train_student.py"), "--path_t", str(world.teacher), "--distill", method,
            "--model_s", "resnet8", "--data_folder", str(world.data), "--save_dir", str(save_dir),
            "--epochs", str(EPOCHS[method]), "--batch_size", "50", "--save_freq", "1", "--device", "cpu",
            "--deterministic", "--no_progress", "--no_tensorboard", "--nce_k", "16", "--t_epoch", "1",
            "--mixup_num", "1", "--head_cache_dir", str(world.base / f"heads_{method}"), *extra]


def run(world, method, save_dir, *extra, **hooks):
    proc = subprocess.run(argv(world, method, save_dir, *extra), cwd=world.base, env=script_env(**hooks),
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    return proc


def run_folder(save_dir):
    runs = list((pathlib.Path(save_dir) / "student_model").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def save_dir_of(proc):
    return proc.args[proc.args.index("--save_dir") + 1]


def lineage(world, method, baseline):
    """Kill, (NaN,) SIGTERM, finish; records what the tests look at after each stage."""
    save = world.base / f"lineage_{method}"
    out = argparse.Namespace(save=save, procs={})
    # packd: the lineage reuses the baseline's cached teacher head (the baseline trained it), so
    # the comparison also checks that the main loop does not depend on whether the head was cached
    if method == "packd":
        baseline.result()
    out.procs["kill"] = p = run(world, method, save, KD_TEST_KILL_AT=KILL_AT)
    if p.returncode != -signal.SIGKILL:
        return out
    folder = run_folder(save)
    out.after_kill = {"files": sorted(os.listdir(folder)), "latest": load(folder / "latest.pth"),
                      "hashes": hashes(folder), "metrics": (folder / "metrics.jsonl").read_text()}
    nan_thread = None
    if method == "kd":  # on a copy of the killed run, side by side with the rest of the lineage
        nan_save = world.base / f"lineage_{method}_nan"
        shutil.copytree(save, nan_save)
        nan_folder = run_folder(nan_save)

        def nan_run():
            out.procs["nan"] = run(world, method, nan_save, "--resume", "auto", KD_TEST_NAN_AT=NAN_AT)
            out.after_nan = {"files": sorted(os.listdir(nan_folder)), "hashes": hashes(nan_folder),
                             "metrics": (nan_folder / "metrics.jsonl").read_text()}
        nan_thread = threading.Thread(target=nan_run)
        nan_thread.start()
    try:
        out.procs["sigterm"] = p = run(world, method, save, "--resume", "auto", KD_TEST_SIGNAL_AT=SIGTERM_AT)
        if p.returncode != 128 + signal.SIGTERM:
            return out
        out.after_sigterm = {"latest": load(folder / "latest.pth")}
        out.procs["finish"] = run(world, method, save, "--resume", "auto")
        return out
    finally:
        if nan_thread is not None:
            nan_thread.join()


@pytest.fixture(scope="module")
def runs(world):
    pool = ThreadPoolExecutor(max_workers=PARALLEL)
    futures = {}
    for method in METHODS:
        baseline = pool.submit(run, world, method, world.base / f"baseline_{method}")
        futures[method] = (baseline, pool.submit(lineage, world, method, baseline))
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


def describe(proc):
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"


def assert_same_state(a, b, what):
    assert a.keys() == b.keys(), what
    for k in a:
        assert torch.equal(a[k], b[k]), f"{what}: '{k}' differs"


@pytest.mark.parametrize("method", METHODS)
def test_killed_and_stopped_run_ends_bit_identical(method, runs):
    baseline, lin = runs[method][0].result(), runs[method][1].result()
    assert baseline.returncode == 0, describe(baseline)
    kill = lin.procs["kill"]
    assert kill.returncode == -signal.SIGKILL, describe(kill)

    # SIGKILL mid-epoch 2: latest.pth is the complete, atomically written end of epoch 1
    latest = lin.after_kill["latest"]
    assert (latest["epoch"], latest["step"], latest["stage"]) == (1, 0, "main")
    assert not [n for n in lin.after_kill["files"] if n.startswith(".tmp")]
    assert "ckpt_epoch_1.pth" in lin.after_kill["files"] and "summary.json" not in lin.after_kill["files"]

    # SIGTERM during step 3 of epoch 2: that step is finished, a mid-epoch latest is written
    term = lin.procs["sigterm"]
    assert term.returncode == 128 + signal.SIGTERM, describe(term)
    assert "resumed from" in term.stdout and "end of epoch 1" in term.stdout
    message = [line for line in term.stderr.splitlines() if line.strip()]
    assert len(message) == 1 and "SIGTERM" in message[0] and "--resume auto" in message[0], describe(term)
    mid = lin.after_sigterm["latest"]
    assert (mid["epoch"], mid["step"], mid["stage"]) == (1, 3, "main")

    finish = lin.procs["finish"]
    assert finish.returncode == 0, describe(finish)
    assert "epoch 2, step 3" in finish.stdout
    if method == "packd":
        assert "head epoch" not in finish.stdout, "the resumed run trained the teacher head again"

    ref_folder, folder = run_folder(save_dir_of(baseline)), run_folder(lin.save)
    ref, got = load(ref_folder / "resnet8_last.pth"), load(folder / "resnet8_last.pth")
    assert_same_state(ref["model"], got["model"], "student weights")
    assert method == "kd" or ref["distiller"], "the method's state (embeddings, memory, head) is not saved"
    assert_same_state(ref["distiller"], got["distiller"], "method state")
    ref_opt, got_opt = ref["optimizer"]["state"], got["optimizer"]["state"]
    assert ref_opt.keys() == got_opt.keys()
    for k in ref_opt:
        assert torch.equal(ref_opt[k]["momentum_buffer"], got_opt[k]["momentum_buffer"]), f"momentum {k}"
    assert (ref["epoch"], ref["best_acc"], ref["accuracy"]) == (got["epoch"], got["best_acc"], got["accuracy"])

    # the metrics file reads as one run: every epoch once, with the same numbers
    def rows(f):
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in (f / "metrics.jsonl").read_text().splitlines()]
    assert rows(ref_folder) == rows(folder)
    assert json.loads((ref_folder / "summary.json").read_text()) == json.loads((folder / "summary.json").read_text())


def test_method_state_is_checkpointed(runs):
    """Extra modules, memory banks and CRD's normalisation constants, PACKD's head travel with the run."""
    keys = {}
    for method in ("crd", "packd"):
        proc = runs[method][0].result()
        assert proc.returncode == 0, describe(proc)
        keys[method] = set(load(run_folder(save_dir_of(proc)) / "latest.pth")["distiller"])
    crd = " ".join(sorted(keys["crd"]))
    assert "embed_s" in crd and "embed_t" in crd and "memory_v1" in crd and "memory_v2" in crd, crd
    assert any(k.endswith("params") for k in keys["crd"]), "CRD's Z constants are missing"
    packd = " ".join(sorted(keys["packd"]))
    assert "teacher_head" in packd and "memory_bank" in packd and "embed_s" in packd


def test_nan_loss_stops_at_once_and_keeps_good_checkpoints(runs):
    lin = runs["kd"][1].result()
    assert lin.procs["kill"].returncode == -signal.SIGKILL, describe(lin.procs["kill"])
    nan = lin.procs["nan"]
    assert nan.returncode == 3, describe(nan)
    lines = [line for line in nan.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, describe(nan)
    assert "non-finite loss at epoch 2, step 2/4" in lines[0] and "cls=nan" in lines[0], lines[0]
    # detected at the bad step itself on the CPU: epoch 2 never finished
    assert "epoch 2/2" not in nan.stdout
    # every checkpoint and the metrics are exactly as the killed run left them
    assert lin.after_nan["files"] == lin.after_kill["files"]
    assert lin.after_nan["hashes"] == lin.after_kill["hashes"]
    assert lin.after_nan["metrics"] == lin.after_kill["metrics"]
