"""The README's "add a method" example, dropped into distiller_zoo/ of a copy of the repo,
works everywhere with no other edit: train_student.py, the sweep's dry run, summarize.py."""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
README_EXAMPLE = '''\
import torch.nn.functional as F
from distiller_zoo.base import Distiller

class L1LogitDistiller(Distiller):
    name = "l1logit"
    default_weights = {"gamma": 1.0, "alpha": 0.0, "beta": 1.0}

    def forward_train(self, batch):
        logits = self.student(batch.images)
        t = self.teacher_forward(batch.images)
        return logits, {"cls": self.gamma * F.cross_entropy(logits, batch.labels),
                        "l1": self.beta * (logits - t).abs().mean()}
'''
TEACHER_FOLDER = "resnet8_cifar100_lr_0.05_decay_0.0005_trial_0"


def test_the_readme_example_is_the_one_in_the_readme():
    text = (ROOT / "README.md").read_text()
    body = "\n".join(line[4:] if line.startswith("    ") else line for line in README_EXAMPLE.splitlines())
    indented = "\n".join(("    " + line) if line else "" for line in README_EXAMPLE.splitlines())
    assert indented in text, "README's add-a-method example differs from the one tested here"
    assert body


def copy_repo(dest):
    skip = {".git", "__pycache__", ".pytest_cache", "save", "save_t", "save_packd_t", "data", "data_generated", "plots"}
    shutil.copytree(ROOT, dest, ignore=lambda folder, names: [n for n in names if n in skip])
    return dest


@pytest.mark.slow
def test_a_new_method_file_runs_everywhere(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    (repo / "distiller_zoo" / "L1Logit.py").write_text(README_EXAMPLE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KD_TEST_")}
    env.update(OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")

    def run(*argv, **extra_env):
        proc = subprocess.run([*argv], cwd=repo, env={**env, **extra_env}, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        return proc.stdout + proc.stderr

    sys.path.insert(0, str(repo))
    try:
        from dataset.cifar import make_synthetic_cifar100
        from models import model_dict
    finally:
        sys.path.remove(str(repo))
    make_synthetic_cifar100(str(repo / "data_tiny"), train_per_class=2, test_per_class=1)
    teacher = repo / "save_t" / TEACHER_FOLDER / "ckpt_epoch_240.pth"
    teacher.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save({"model": model_dict["resnet8"](num_classes=100).state_dict()}, teacher)

    out = run(sys.executable, "train_student.py", "--path_t", str(teacher), "--distill", "l1logit", "--model_s",
              "resnet8", "--epochs", "1", "--batch_size", "100", "--data_folder", "data_tiny", "--device", "cpu",
              "--no_progress", "--no_tensorboard")
    assert "l1logit" in out
    run_dir = repo / "save" / "student_model" / "S:resnet8_T:resnet8_cifar100_l1logit_r:1.0_a:0.0_b:1.0_1"
    rows = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    assert "loss_l1" in rows[0] and "loss_cls" in rows[0]

    dry = run("sh", "scripts/run_distill.sh", DRY_RUN="1", METHODS="l1logit", PAIRS="resnet8:resnet8",
              SAVE_T="save_t", PYTHON=sys.executable)
    assert "--distill l1logit -r 1 -a 0 -b 1" in dry

    table = run(sys.executable, "scripts/summarize.py", "save")
    rows = [line for line in table.splitlines() if line.startswith("| l1logit")]
    assert rows and "(n=1)" in rows[0], table
    assert "GENERATED" in table  # the tiny set is generated: never presented as CIFAR-100
