"""Real (tiny) sweeps on the CPU: run_distill.sh -> scripts/sweep.py -> train_student.py
(-> summarize.py), and Ctrl-C on a sweep whose run is training."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
import torch

from models import model_dict

ROOT = pathlib.Path(__file__).resolve().parents[2]


def save_random_teacher(save_t, model="resnet8"):
    (save_t / f"{model}_vanilla").mkdir(parents=True)
    torch.manual_seed(0)
    torch.save({"model": model_dict[model](num_classes=100).state_dict()},
               save_t / f"{model}_vanilla" / "ckpt_epoch_240.pth")


@pytest.mark.slow
def test_tiny_pair_sweep_and_summary(tiny_cifar, tmp_path):
    save_t = tmp_path / "save_t"
    save_random_teacher(save_t)
    extra = (f"--epochs 1 --batch_size 100 --device cpu --no_progress --no_tensorboard --nce_k 16 "
             f"--t-epoch 1 --mixup_num 1 --data_folder {tiny_cifar} --head_cache_dir {tmp_path / 'heads'}")
    env = {**os.environ, "PYTHON": sys.executable, "PAIRS": "resnet8:resnet8", "METHODS": "kd packd",
           "SAVE_T": str(save_t), "SAVE_DIR": str(tmp_path / "save"), "EXTRA_ARGS": extra, "GPUS": "0"}
    done = subprocess.run(["sh", "scripts/run_distill.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    runs = sorted(os.listdir(tmp_path / "save" / "student_model"))
    assert len(runs) == 2 and any("_kd_" in r for r in runs) and any("_packd_" in r for r in runs)
    for r in runs:
        assert (tmp_path / "save" / "student_model" / r / "summary.json").is_file()

    again = subprocess.run(["sh", "scripts/run_distill.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0 and "skip" in (again.stdout + again.stderr).lower()

    out = tmp_path / "results.md"
    summary = subprocess.run([sys.executable, "scripts/summarize.py", str(tmp_path / "save"), "--out", str(out),
                              "--plots", str(tmp_path / "plots")], cwd=ROOT, capture_output=True, text=True,
                             timeout=120)
    assert summary.returncode == 0, summary.stderr
    table = out.read_text()
    assert "resnet8 <br> resnet8" in table and "(n=1)" in table
    assert list((tmp_path / "plots").glob("*.png"))


@pytest.fixture(scope="module")
def small_cifar(tmp_path_factory):
    """200 training images: 13 steps of 16 per epoch, so a run is interrupted and resumed in seconds."""
    from dataset.cifar import make_synthetic_cifar100
    folder = tmp_path_factory.mktemp("small_data")
    make_synthetic_cifar100(str(folder), train_per_class=2, test_per_class=1, seed=0)
    return folder


def wait_for(predicate, proc, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        assert proc.poll() is None, f"the sweep ended (exit {proc.returncode}) before {what}"
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_ctrl_c_stops_a_training_run_with_its_state_saved_and_the_next_sweep_resumes_it(small_cifar, tmp_path):
    save_t, save_dir = tmp_path / "save_t", tmp_path / "save"
    save_random_teacher(save_t)
    # progress bars on (--print_freq 1): the bar in the log shows the run is inside its epoch loop,
    # where a SIGINT means "finish the step, save, exit 130"; two epochs, so a signal that lands
    # after the first epoch's last step still stops the run instead of letting it finish.
    extra = (f"--epochs 2 --batch_size 16 --device cpu --no_tensorboard --print_freq 1 "
             f"--data_folder {small_cifar}")
    env = {**os.environ, "PYTHON": sys.executable, "PAIRS": "resnet8:resnet8", "METHODS": "kd",
           "SAVE_T": str(save_t), "SAVE_DIR": str(save_dir), "EXTRA_ARGS": extra, "GPUS": "0"}
    env.pop("TEACHER_LAYOUT", None)
    log = save_dir / "logs" / "resnet8-resnet8_kd_trial_0.log"
    marker = save_dir / "logs" / "resnet8-resnet8_kd_trial_0.done"
    # its own process group, as a shell gives a foreground job: Ctrl-C signals that whole group
    proc = subprocess.Popen(["sh", "scripts/run_distill.sh"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for(lambda: log.exists() and "epoch 1/2" in log.read_text(), proc, 300, "the run's first epoch")
        os.killpg(proc.pid, signal.SIGINT)  # the terminal's Ctrl-C
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert proc.returncode == 130, out + err + text[-2000:]
    assert "stopped resnet8-resnet8_kd_trial_0 (exit 130)" in err
    assert "stopped by SIGINT" in text and "state saved to" in text, text[-2000:]
    assert "interrupted; resume from the last epoch" not in text, "the run got a second signal"
    [run_dir] = (save_dir / "student_model").iterdir()
    assert (run_dir / "latest.pth").is_file()
    assert not (run_dir / "summary.json").exists() and not marker.exists()

    # the same command again: no marker, so the run continues from its latest.pth (--resume auto)
    again = subprocess.run(["sh", "scripts/run_distill.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=600)
    resumed = log.read_text()[len(text):]
    assert again.returncode == 0, again.stdout + again.stderr + resumed[-2000:]
    assert "--resume auto" in resumed.splitlines()[0]
    assert "resumed from" in resumed and "latest.pth" in resumed
    assert json.loads((run_dir / "summary.json").read_text())["epochs"] == 2
    epochs = [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2], "each epoch recorded once across the interruption"
    assert marker.is_file()
