"""torchrun with 2 processes on the CPU (gloo): the same training as one process, state in sync.

Each run goes through the real script under `python -m torch.distributed.run` and
tests/fault_hooks.py, which dumps every rank's distiller state at the main loop's start and
end (KD_TEST_DUMP_DIR) and can SIGKILL one worker at an exact step.
"""
import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch

from tests.worlds import write_tiny_world

ROOT = pathlib.Path(__file__).resolve().parents[2]
TIMEOUT_S = 300
pytestmark = pytest.mark.slow


def env(**extra):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("KD_TEST_", "RANK", "WORLD_SIZE", "LOCAL_RANK",
                                                                    "MASTER_"))}
    e.update(OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1", **extra)
    return e


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("ddp")
    _, teacher, _ = write_tiny_world(base)
    return base, teacher


def student_argv(world, method, save, *extra):
    base, teacher = world
    return ["train_student.py", "--path_t", str(teacher), "--distill", method, "--model_s", "resnet8",
            "--data_folder", str(base / "data"), "--save_dir", str(save), "--epochs", "2", "--batch_size", "50",
            "--device", "cpu", "--deterministic", "--no_progress", "--no_tensorboard", "--nce_k", "16",
            "--t-epoch", "1", "--mixup_num", "1", "--head_cache_dir", str(save / "heads"), *extra]


def torchrun(argv, cwd, nproc=2, **hooks):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           str(ROOT / "tests" / "fault_hooks.py"), str(ROOT / argv[0]), *argv[1:]]
    return subprocess.run(cmd, cwd=cwd, env=env(**hooks), capture_output=True, text=True, timeout=TIMEOUT_S)


def single(argv, cwd, **hooks):
    cmd = [sys.executable, str(ROOT / "tests" / "fault_hooks.py"), str(ROOT / argv[0]), *argv[1:]]
    return subprocess.run(cmd, cwd=cwd, env=env(**hooks), capture_output=True, text=True, timeout=TIMEOUT_S)


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def run_folder(save):
    runs = sorted((save / "student_model").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


@pytest.mark.parametrize("method", ["kd", "crd", "packd"])
def test_two_processes_train_end_to_end_in_sync(method, world, tmp_path):
    save = tmp_path / "save"
    dump = tmp_path / "dump"
    proc = torchrun(student_argv(world, method, save), tmp_path, KD_TEST_DUMP_DIR=str(dump))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("finished:") == 1, "rank 0 alone prints"
    start = [load(dump / f"rank{r}_start.pth") for r in (0, 1)]
    end = [load(dump / f"rank{r}.pth") for r in (0, 1)]
    for key in end[0]:  # BatchNorm statistics too: rank 0's are broadcast before each evaluation
        assert torch.equal(end[0][key], end[1][key]), f"{key} differs between the ranks"
    banks = [k for k in end[0] if k.endswith(("memory_v1", "memory_v2", "memory_bank"))]
    assert bool(banks) == (method != "kd")
    for key in banks:  # one bank: identical on both ranks, and every row written
        assert torch.equal(end[0][key], end[1][key])
        changed = (end[0][key] != start[0][key]).any(dim=1)
        assert changed.all(), f"{int((~changed).sum())} rows of {key} never written"
    run = run_folder(save)
    info = json.load(open(run / "run.json"))
    assert info["world_size"] == 2
    # the DDP run's weights load in one process, and its sharded test top-1 is one process's
    from dataset import load_data
    from dataset.loader import DeviceLoader
    from helper.loops import evaluate
    from models import model_dict
    model = model_dict["resnet8"](num_classes=100)
    model.load_state_dict(load(run / "resnet8_last.pth")["model"])
    data = load_data(type("O", (), {"data_folder": str(world[0] / "data"), "generate_data": False})())
    # each rank evaluated slices of 25 (global test batch 50): the same per-image arithmetic here
    test = DeviceLoader(*data["test"], 25, train=False, device="cpu")
    got = evaluate(model, test, torch.device("cpu"))
    last = [json.loads(line) for line in open(run / "metrics.jsonl")][-1]
    assert got["test_acc"] == last["test_acc"] and got["test_acc_top5"] == last["test_acc_top5"]


def test_kill_one_worker_then_resume_ends_like_an_uninterrupted_run(world, tmp_path):
    straight = torchrun(student_argv(world, "crd", tmp_path / "straight"), tmp_path)
    assert straight.returncode == 0, straight.stderr[-3000:]
    save = tmp_path / "killed"
    killed = torchrun(student_argv(world, "crd", save), tmp_path, KD_TEST_KILL_AT="2:2@1")
    assert killed.returncode != 0
    latest = load(run_folder(save) / "latest.pth")
    assert latest["epoch"] == 1 and len(latest["loader_ranks"]) == 2  # at most the current epoch is lost
    resumed = torchrun(student_argv(world, "crd", save, "--resume", "auto"), tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = load(run_folder(tmp_path / "straight") / "resnet8_last.pth")["model"]
    b = load(run_folder(save) / "resnet8_last.pth")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_another_process_count_is_refused_and_batches_must_split(world, tmp_path):
    save = tmp_path / "save"
    first = torchrun(student_argv(world, "kd", save, "--epochs", "1"), tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    latest = run_folder(save) / "latest.pth"
    alone = single(student_argv(world, "kd", save, "--epochs", "1", "--resume", str(latest)), tmp_path)
    assert alone.returncode == 2 and "2 process(es)" in alone.stderr and "Traceback" not in alone.stderr
    odd = torchrun(student_argv(world, "kd", tmp_path / "odd", "--batch_size", "51"), tmp_path)
    assert odd.returncode != 0 and "must divide evenly over 2 processes" in odd.stdout + odd.stderr


def test_sync_bn_on_the_cpu_is_a_one_line_error(world, tmp_path):
    proc = torchrun(student_argv(world, "kd", tmp_path / "save", "--sync_bn", "--epochs", "1"), tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and out.count("error: --sync_bn needs CUDA") == 1  # rank 0 alone says it
    assert "only work with GPU modules" not in out  # refused before PyTorch's own error
    assert "exitcode  : 2" in out  # the workers exit 2, torchrun reports them
