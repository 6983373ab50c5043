"""A real (tiny) sweep: run_distill.sh -> train_student.py -> summarize.py, on CPU."""
import os
import pathlib
import subprocess
import sys

import torch

from models import model_dict

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_tiny_pair_sweep_and_summary(tiny_cifar, tmp_path):
    save_t = tmp_path / "save_t"
    (save_t / "resnet8_vanilla").mkdir(parents=True)
    torch.manual_seed(0)
    torch.save({"model": model_dict["resnet8"](num_classes=100).state_dict()},
               save_t / "resnet8_vanilla" / "ckpt_epoch_240.pth")
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
