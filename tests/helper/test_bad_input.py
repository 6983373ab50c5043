"""Bad input to the training scripts: one line on stderr, exit code 2, nothing written.

Every case runs the real script in a subprocess (`python train_student.py ...`). The
cases are independent, so they are started together on first use (a few at a time)
and each test waits for its own; the network is never reached (the proxy variables
point at a closed local port, so a download fails at once even on a connected host).
"""
import argparse
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from tests.worlds import TEACHER_FOLDER, write_tiny_world

pytestmark = pytest.mark.slow  # real training runs: the full suite runs them, -m 'not slow' skips them

ROOT = pathlib.Path(__file__).resolve().parents[2]
PARALLEL = 3
TIMEOUT_S = 120
CLOSED_PORT_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens there


def script_env():
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KD_TEST_") and k.lower() not in ("no_proxy", "all_proxy")}
    for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env[key] = CLOSED_PORT_PROXY
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONWARNINGS", None)
    return env


def tree_snapshot(folder):
    """{relative path: sha1} of every file under `folder` (empty when it does not exist)."""
    folder = pathlib.Path(folder)
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------
# Shared inputs: a tiny data set and a random resnet8 teacher in the save_t layout
# ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad_input")
    data, teacher, state = write_tiny_world(base, train_per_class=1)
    return argparse.Namespace(base=base, data=data, teacher=teacher, state=state)


def student_argv(world, save_dir, *extra, teacher=None, data=None):
    return ["train_student.py", "--path_t", str(teacher or world.teacher), "--model_s", "resnet8",
            "--data_folder", str(data or world.data), "--save_dir", str(save_dir), "--device", "cpu",
            "--epochs", "1", "--batch_size", "50", "--nce_k", "16", "--no_progress", "--no_tensorboard",
            *extra]


def kd_run_folder(save_dir, model_s="resnet8", distill="kd", gamma=0.1, alpha=0.9, beta=0.0):
    """The folder train_student.py would use (its own naming function)."""
    from distiller_zoo import METHODS
    from helper.run_folder import student_folder
    opt = argparse.Namespace(model_s=model_s, model_t="resnet8", dataset="cifar100", distill=distill,
                             gamma=gamma, alpha=alpha, beta=beta, trial="1", save_dir=str(save_dir))
    return pathlib.Path(student_folder(opt, METHODS[distill]))


def fake_resumable(path, identity):
    """A checkpoint with every key a resume needs, recorded as a run of `identity`."""
    from helper.checkpoint import atomic_save
    atomic_save({"model": {}, "optimizer": {}, "distiller": {}, "epoch": 1, "step": 0, "stage": "main",
                 "loader": {}, "rng": {}, "args": {}, "model_name": identity.get("model_s"),
                 "run": {"identity": identity, "total_epochs": 1}}, str(path))


# ------------------------------------------------------------------------------------
# The cases: each builds its inputs in its own folder and returns (argv, watched folders)
# ------------------------------------------------------------------------------------
def case_unknown_student_model(w, d):
    return student_argv(w, d / "save", "--model_s", "resnet_nope"), "unknown --model_s"


def case_unknown_teacher_model(w, d):
    return ["train_teacher.py", "--model", "resnet_nope", "--data_folder", str(w.data), "--save_dir",
            str(d / "save"), "--device", "cpu"], "unknown --model"


def case_unknown_method(w, d):
    return student_argv(w, d / "save", "--distill", "nope"), "unknown --distill"


def case_path_t_missing(w, d):
    return student_argv(w, d / "save", teacher=d / "no_such" / "ckpt.pth"), "does not exist"


def case_path_t_truncated(w, d):
    path = d / TEACHER_FOLDER / "ckpt_epoch_240.pth"
    path.parent.mkdir(parents=True)
    blob = w.teacher.read_bytes()
    path.write_bytes(blob[:len(blob) // 2])
    return student_argv(w, d / "save", teacher=path), "not a readable PyTorch checkpoint"


def case_path_t_not_a_checkpoint(w, d):
    path = d / TEACHER_FOLDER / "ckpt_epoch_240.pth"
    path.parent.mkdir(parents=True)
    path.write_text("these are not the weights you are looking for\n")
    return student_argv(w, d / "save", teacher=path), "not a readable PyTorch checkpoint"


def case_path_t_not_a_model(w, d):
    path = d / TEACHER_FOLDER / "ckpt_epoch_240.pth"
    path.parent.mkdir(parents=True)
    torch.save({"epoch": 240, "accuracy": 70.0}, path)
    return student_argv(w, d / "save", teacher=path), "not a model checkpoint"


def case_teacher_name_unknown(w, d):
    path = d / "mystery" / "teacher.pth"
    path.parent.mkdir(parents=True)
    torch.save({"model": w.state}, path)
    return student_argv(w, d / "save", teacher=path), "--model_t"


def case_teacher_state_does_not_fit(w, d):
    path = d / "resnet14_cifar100_lr_0.05_decay_0.0005_trial_0" / "ckpt_epoch_240.pth"
    path.parent.mkdir(parents=True)
    torch.save({"model": w.state}, path)  # resnet8 weights in a resnet14 folder
    return student_argv(w, d / "save", teacher=path), "does not fit model 'resnet14'"


def case_data_missing_offline(w, d):
    return student_argv(w, d / "save", data=d / "empty_data"), "download failed"


def case_data_corrupt(w, d):
    data = d / "data"
    shutil.copytree(w.data, data)
    train = data / "cifar-100-python" / "train"
    blob = train.read_bytes()
    train.write_bytes(blob[:len(blob) // 3])
    return student_argv(w, d / "save", data=data), "corrupt or truncated"


def case_batch_size_zero(w, d):
    return student_argv(w, d / "save", "--batch_size", "0"), "--batch_size"


def case_epochs_zero(w, d):
    return student_argv(w, d / "save", "--epochs", "0"), "--epochs"


def case_lr_decay_not_increasing(w, d):
    return student_argv(w, d / "save", "--lr_decay_epochs", "150,120,210"), "increasing"


def case_lr_decay_not_numbers(w, d):
    return student_argv(w, d / "save", "--lr_decay_epochs", "150,late,210"), "--lr_decay_epochs"


def case_nce_k_zero(w, d):
    return student_argv(w, d / "save", "--distill", "crd", "--nce_k", "0"), "--nce_k"


def case_mixup_num_below_minus_one(w, d):
    return student_argv(w, d / "save", "--distill", "packd", "--mixup_num", "-2"), "--mixup_num"


def case_resume_run_of_another_method(w, d):
    other = d / "other_run" / "latest.pth"
    fake_resumable(other, {"kind": "student", "model_s": "resnet8", "model_t": "resnet8", "distill": "crd"})
    return student_argv(w, d / "save", "--resume", str(other)), "distill 'crd' there, 'kd' now"


def case_resume_run_of_another_model(w, d):
    other = d / "other_run" / "latest.pth"
    fake_resumable(other, {"kind": "student", "model_s": "resnet14", "model_t": "resnet8", "distill": "kd"})
    return student_argv(w, d / "save", "--resume", str(other)), "model_s 'resnet14' there, 'resnet8' now"


def case_finished_run(w, d):
    run = kd_run_folder(d / "save")
    run.mkdir(parents=True)
    (run / "summary.json").write_text('{"best_acc": 1.0, "best_epoch": 1, "epochs": 1, "last_acc": 1.0}\n')
    shutil.copy(w.teacher, run / "resnet8_last.pth")
    return student_argv(w, d / "save"), "already holds a finished run"


CASES = {name[len("case_"):]: fn for name, fn in sorted(globals().items()) if name.startswith("case_")}


def run_case(world, name, folder):
    folder.mkdir(parents=True)
    argv, expected = CASES[name](world, folder)
    before = tree_snapshot(folder)
    proc = subprocess.run([sys.executable, str(ROOT / argv[0]), *argv[1:]], cwd=folder, env=script_env(),
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    return argparse.Namespace(proc=proc, expected=expected, before=before, after=tree_snapshot(folder),
                              folder=folder)


@pytest.fixture(scope="module")
def results(world):
    """Start every case at once (PARALLEL at a time); each test waits for its own."""
    pool = ThreadPoolExecutor(max_workers=PARALLEL)
    futures = {name: pool.submit(run_case, world, name, world.base / "cases" / name) for name in CASES}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(name, results):
    r = results[name].result()
    stderr_lines = [line for line in r.proc.stderr.splitlines() if line.strip()]
    detail = f"exit {r.proc.returncode}\nstdout:\n{r.proc.stdout}\nstderr:\n{r.proc.stderr}"
    assert r.proc.returncode == 2, detail
    assert len(stderr_lines) == 1, detail
    assert r.expected in stderr_lines[0], detail
    assert "Traceback" not in r.proc.stderr
    # nothing created or changed in the case's folder (its run folders, inputs, data)
    created = {k for k in r.after if k not in r.before}
    changed = {k for k in r.before if r.after.get(k) != r.before[k]}
    assert not created and not changed, f"written: {sorted(created | changed)}\n{detail}"
    assert not (r.folder / "save").exists() or name in ("finished_run",), "a run folder was created"


def test_every_requirement_has_a_case():
    wanted = {"unknown_student_model", "unknown_method", "path_t_missing", "path_t_truncated",
              "path_t_not_a_checkpoint", "teacher_name_unknown", "teacher_state_does_not_fit",
              "data_missing_offline", "data_corrupt", "batch_size_zero", "epochs_zero",
              "lr_decay_not_increasing", "lr_decay_not_numbers", "nce_k_zero", "mixup_num_below_minus_one",
              "resume_run_of_another_method", "finished_run"}
    assert wanted <= set(CASES)
