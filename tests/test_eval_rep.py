"""eval_rep.py (linear-probe transfer, the PACKD authors' eval_rep_base.py recipe) with its parts in
helper/ (student_checkpoint.py, probe_folder.py, linear_probe.py), and the scripts
scripts/eval_rep_STL10.sh, scripts/eval_rep_TinyImageNet200.sh, scripts/run_few_shot.sh.
The batched Pillow resampling is tested in tests/dataset/test_resized_crop.py."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import eval_rep
from helper.linear_probe import fresh_classifier, lr_at
from helper.probe_folder import transfer_folder
from helper.student_checkpoint import load_student
from util.errors import UsageError

REPO = Path(__file__).resolve().parents[1]
STUDENT_RUN = "S:resnet8_T:resnet32x4_cifar100_kd_r:0.1_a:0.9_b:0.0_1"


# --- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """A student run folder as train_student.py leaves it: a (random, fixed) resnet8 whose pooled
    features separate the generated sets' class colours."""
    from models import model_dict
    folder = tmp_path_factory.mktemp("save") / "student_model" / STUDENT_RUN
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    model = model_dict["resnet8"](num_classes=100)
    for name in ("resnet8_best.pth", "resnet8_last.pth"):
        torch.save({"model": model.state_dict(), "model_name": "resnet8", "epoch": 240, "accuracy": 50.0},
                   folder / name)
    (folder / "run.json").write_text(json.dumps({
        "kind": "student", "model_s": "resnet8", "model_t": "resnet32x4", "distill": "kd", "trial": "1",
        "gamma": 0.1, "alpha": 0.9, "beta": 0.0, "identity": {"teacher_weights": "abc"}}))
    return folder


@pytest.fixture(scope="module")
def stl(tmp_path_factory):
    from dataset.stl10 import make_synthetic_stl10
    folder = tmp_path_factory.mktemp("stl")
    make_synthetic_stl10(str(folder), train_per_class=8, test_per_class=4)
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from dataset.tiny_imagenet import make_synthetic_tiny_imagenet
    folder = tmp_path_factory.mktemp("tiny")
    make_synthetic_tiny_imagenet(str(folder), num_classes=5, train_per_class=8, val_per_class=4)
    return folder


def probe(tmp_path, data, path_s, *extra, dataset="STL-10"):
    args = ["--dataset", dataset, "--data_folder", str(data), "--path_s", str(path_s), "--save_dir",
            str(tmp_path / "save"), "--device", "cpu", "--no_tensorboard", *extra]
    return eval_rep.main(args)


# --- the recipe ---------------------------------------------------------------------------------

def test_the_authors_schedule_and_flag_spellings(student):
    from bisect import bisect_right
    opt = eval_rep.parse_args(["--path_s", str(student)])
    assert (opt.epochs, opt.learning_rate, opt.lr_decay_epochs, opt.batch_size, opt.weight_decay, opt.momentum,
            opt.nesterov, opt.seed, opt.dataset) == (100, 0.1, [30, 60, 90], 64, 0.0, 0.9, True, 0, "STL-10")
    for epoch in range(1, 101):  # theirs: 0-based epochs, lr = 0.1 * 0.1 ** bisect_right([30, 60, 90], e)
        assert lr_at(opt, epoch) == pytest.approx(0.1 * 0.1 ** bisect_right([30, 60, 90], epoch - 1))
    opt = eval_rep.parse_args(["--data", "d/", "--dataset", "TinyImageNet", "--arch", "resnet8", "--s-path", "x.pth",
                               "--init-lr", "0.2", "--weight-decay", "1e-4", "--batch-size", "32",
                               "--manual_seed", "3", "--warmup-epoch", "2", "--milestones", "5,7"])
    assert (opt.data_folder, opt.dataset, opt.model_s, opt.path_s, opt.learning_rate, opt.weight_decay,
            opt.batch_size, opt.seed, opt.warmup_epoch, opt.lr_decay_epochs) == \
        ("d/", "TinyImageNet200", "resnet8", "x.pth", 0.2, 1e-4, 32, 3, 2, [5, 7])
    # their warm-up: init_lr * (1 + step + epoch * iters) / (warmup * iters), then the milestones after it
    assert lr_at(opt, 1, 0, 10) == pytest.approx(0.2 * 1 / 20)
    assert lr_at(opt, 2, 9, 10) == pytest.approx(0.2)
    assert lr_at(opt, 8, 0, 10) == pytest.approx(0.02)  # epoch 8 - 2 warm-up > milestone 5


@pytest.mark.parametrize("argv,message", [
    (["--dataset", "CIFAR-10"], "unknown --dataset"),
    (["--epochs", "0"], "--epochs must be positive"),
    (["--momentum", "0"], "Nesterov"),
    (["--lr_decay_epochs", "60,30"], "increasing"),
    (["--warmup_epoch", "100"], "--warmup_epoch"),
    (["--model_s", "resnet9"], "unknown --model_s"),
])
def test_bad_flags_are_usage_errors(student, argv, message):
    with pytest.raises(UsageError, match=message):
        eval_rep.parse_args(["--path_s", str(student), *argv])


def test_the_probe_starts_as_the_models_own_fresh_classifier():
    """The authors build the model for the new classes and train its classifier: VGG's is
    N(0, 0.01) with zero bias, WRN's has a zero bias, the ResNets' is PyTorch's default."""
    vgg = fresh_classifier("vgg8", 10)
    assert (vgg.in_features, vgg.out_features) == (512, 10) and vgg.bias.abs().sum() == 0
    assert 0.008 < float(vgg.weight.detach().std()) < 0.012
    assert fresh_classifier("wrn_16_2", 200).bias.abs().sum() == 0
    assert fresh_classifier("resnet8x4", 10).bias.abs().sum() > 0
    assert isinstance(fresh_classifier("MobileNetV2", 10), torch.nn.Linear)


# --- the student ----------------------------------------------------------------------------------

def test_a_run_folder_means_its_best_checkpoint_and_names_the_probe(student, tmp_path):
    opt = eval_rep.parse_args(["--path_s", str(student), "--save_dir", str(tmp_path)])
    s = load_student(opt)
    assert s.path == str(student / "resnet8_best.pth") and s.name == "resnet8" and s.tag == ""
    assert not any(p.requires_grad for p in s.model.parameters()) and not s.model.training
    assert transfer_folder(opt, s) == os.path.join(str(tmp_path), "transfer", f"STL-10_{STUDENT_RUN}_0")
    assert s.run_info["distill"] == "kd" and s.run_info["model_t"] == "resnet32x4"
    from helper.teacher import load_teacher, weights_fingerprint
    teacher, _ = load_teacher(str(student / "resnet8_last.pth"))
    assert s.fingerprint == weights_fingerprint(teacher)  # the fingerprint train_student.py would record
    opt = eval_rep.parse_args(["--path_s", str(student), "--checkpoint", "last", "--save_dir", str(tmp_path)])
    s = load_student(opt)
    assert s.path.endswith("resnet8_last.pth") and transfer_folder(opt, s).endswith(f"{STUDENT_RUN}_last_0")


def test_checkpoint_formats_and_model_names(student, tmp_path):
    state = torch.load(student / "resnet8_best.pth", weights_only=True)["model"]
    # the authors' files: 'state_dict'/'net' entries, 'backbone.' prefixes; the model from the folder name
    folder = tmp_path / "S:resnet8_T:resnet56_cifar100_packd_0"
    folder.mkdir()
    torch.save({"net": {f"backbone.{k}": v for k, v in state.items()}}, folder / "resnet8_best.pth")
    s = load_student(eval_rep.parse_args(["--path_s", str(folder / "resnet8_best.pth")]))
    assert s.name == "resnet8" and torch.equal(s.model.conv1.weight, state["conv1.weight"])
    # backbone-only weights load; the unused classifier is zeroed
    torch.save({k: v for k, v in state.items() if not k.startswith("fc.")}, tmp_path / "bare.pth")
    s = load_student(eval_rep.parse_args(["--path_s", str(tmp_path / "bare.pth"), "--model_s", "resnet8"]))
    assert s.model.fc.weight.abs().sum() == 0
    with pytest.raises(UsageError, match="cannot tell the student model"):
        load_student(eval_rep.parse_args(["--path_s", str(tmp_path / "bare.pth")]))
    with pytest.raises(UsageError, match="records model 'resnet8'"):
        load_student(eval_rep.parse_args(["--path_s", str(student), "--model_s", "resnet20"]))
    with pytest.raises(UsageError, match="does not fit model 'resnet20'"):
        load_student(eval_rep.parse_args(["--path_s", str(tmp_path / "bare.pth"), "--model_s", "resnet20"]))
    with pytest.raises(UsageError, match="does not exist"):
        load_student(eval_rep.parse_args(["--path_s", str(tmp_path / "missing.pth")]))
    with pytest.raises(UsageError, match=r"no \*_best.pth"):
        load_student(eval_rep.parse_args(["--path_s", str(tmp_path / "..")]))


# --- whole runs ---------------------------------------------------------------------------------

def test_the_probe_learns_the_generated_stl10_classes(student, stl, tmp_path):
    summary = probe(tmp_path, stl, student, "--epochs", "4", "--lr_decay_epochs", "3", "--batch_size", "8")
    assert summary["last_acc"] >= 50.0  # 10 classes: chance is 10 %
    run_dir = tmp_path / "save" / "transfer" / f"STL-10_{STUDENT_RUN}_0"
    assert sorted(os.listdir(run_dir)) == ["linear_last.pth", "metrics.jsonl", "run.json", "summary.json"]
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["last_acc"] == summary["last_acc"] and on_disk["generated_data"] is True
    assert {"best_acc", "best_epoch", "epochs", "dataset", "model_s", "student_run", "student_weights"} <= set(on_disk)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4] and [r["lr"] for r in rows] == pytest.approx([.1, .1, .1, .01])
    assert rows[-1]["test_acc"] == summary["last_acc"] and max(r["test_acc"] for r in rows) == summary["best_acc"]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["kind"] == "transfer" and info["student"]["distill"] == "kd" and info["generated_data"] is True
    assert info["identity"]["student_weights"] == summary["student_weights"] and info["num_classes"] == 10
    probe_state = torch.load(run_dir / "linear_last.pth", weights_only=True)
    assert probe_state["model"]["weight"].shape == (10, 64)

    # the same experiment again: reported, nothing rewritten; other settings: refused; --overwrite: redone
    stamp = (run_dir / "summary.json").stat().st_mtime_ns
    again = probe(tmp_path, stl, student, "--epochs", "4", "--lr_decay_epochs", "3", "--batch_size", "8")
    assert again["last_acc"] == summary["last_acc"] and (run_dir / "summary.json").stat().st_mtime_ns == stamp
    with pytest.raises(UsageError, match=r"other settings \(--epochs 4 there, 1 now, --lr_decay_epochs \[3\] there"):
        probe(tmp_path, stl, student, "--epochs", "1", "--batch_size", "8")
    probe(tmp_path, stl, student, "--epochs", "1", "--batch_size", "8", "--overwrite")
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1


def test_the_probe_runs_on_tiny_imagenet(student, tiny, tmp_path):
    summary = probe(tmp_path, tiny, student, "--epochs", "2", "--batch_size", "8", dataset="TinyImageNet200")
    assert summary["num_classes"] == 5 and summary["last_acc"] > 40.0  # chance: 20 %
    assert (tmp_path / "save" / "transfer" / f"TinyImageNet200_{STUDENT_RUN}_0" / "summary.json").is_file()


def test_bad_data_exits_2_with_one_line_and_writes_nothing(student, tmp_path):
    data = tmp_path / "data"
    (data / "stl10_binary").mkdir(parents=True)
    (data / "stl10_binary" / "train_X.bin").write_bytes(b"\0" * 27648)
    res = subprocess.run([sys.executable, str(REPO / "eval_rep.py"), "--dataset", "STL-10", "--data_folder",
                          str(data), "--path_s", str(student), "--save_dir", str(tmp_path / "save"),
                          "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "train_y.bin" in lines[0], res.stderr
    assert not (tmp_path / "save" / "transfer").exists()


def test_generate_data_never_writes_into_the_real_data_folder(student, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="--generate_data would write into './data'"):
        eval_rep.main(["--path_s", str(student), "--data_folder", "./data", "--generate_data", "--device", "cpu"])


# --- the scripts ----------------------------------------------------------------------------------

SCRIPT_VARS = ("STUDENTS", "DATA_FOLDER", "TRIAL", "SAVE_DIR", "LOG_DIR", "EXTRA_ARGS", "PYTHON", "DRY_RUN",
               "PAIRS", "FEW_RATIOS", "TRIALS", "SAVE_T", "TEACHER_LAYOUT", "PATH_T")


def run_script(name, shell="sh", **config):
    env = {k: v for k, v in os.environ.items() if k not in SCRIPT_VARS}
    env.update({k: str(v) for k, v in config.items()})
    return subprocess.run([shell, str(REPO / "scripts" / name)], env=env, cwd="/", capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("script,dataset", [("eval_rep_STL10.sh", "STL-10"),
                                            ("eval_rep_TinyImageNet200.sh", "TinyImageNet200")])
@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_eval_rep_scripts_dry_run(tmp_path, script, dataset, shell):
    save = tmp_path / "save"
    runs = [save / "student_model" / f"S:resnet8x4_T:resnet32x4_cifar100_packd_r:1.0_a:1.0_b:0.8_ag:1.0_mix:3_{t}"
            for t in (0, 1)]
    for run in runs:
        run.mkdir(parents=True)
    res = run_script(script, shell, DRY_RUN=1, SAVE_DIR=save, PYTHON="python3")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[-1] == "dry run: 2 probe(s)"
    for line, run in zip(lines, runs):  # the default: the authors' resnet32x4 -> resnet8x4 PACKD student
        assert line == (f"python3 eval_rep.py --dataset {dataset} --data_folder ./data --path_s {run} --trial 0 "
                        f"--save_dir {save}")
    res = run_script(script, shell, DRY_RUN=1, SAVE_DIR=save, PYTHON="python3", TRIAL=2, DATA_FOLDER="/d",
                     STUDENTS=f"{runs[1]}/resnet8x4_best.pth {tmp_path}/nothing", EXTRA_ARGS="--device cuda:1")
    assert res.returncode == 1
    assert "no student checkpoint or run folder at" in res.stderr and f"{tmp_path}/nothing" in res.stderr
    res = run_script(script, shell, DRY_RUN=1, PYTHON="python3", TRIAL=2, DATA_FOLDER="/d",
                     STUDENTS=str(runs[1]), EXTRA_ARGS="--device cuda:1")
    assert res.returncode == 0 and res.stdout.splitlines()[0] == (
        f"python3 eval_rep.py --dataset {dataset} --data_folder /d --path_s {runs[1]} --trial 2 --save_dir ./save "
        f"--device cuda:1")


def test_eval_rep_script_help_and_bad_argument():
    res = subprocess.run(["sh", str(REPO / "scripts" / "eval_rep_STL10.sh"), "-h"], capture_output=True, text=True)
    assert res.returncode == 0 and "STUDENTS" in res.stdout and "DRY_RUN=1" in res.stdout
    res = subprocess.run(["sh", str(REPO / "scripts" / "eval_rep_STL10.sh"), "--go"], capture_output=True, text=True)
    assert res.returncode == 2 and "unknown argument" in res.stderr


@pytest.mark.slow
def test_eval_rep_script_runs_a_probe_and_logs(student, stl, tmp_path):
    res = run_script("eval_rep_STL10.sh", STUDENTS=str(student), DATA_FOLDER=stl, SAVE_DIR=tmp_path / "save",
                     PYTHON=sys.executable, EXTRA_ARGS="--epochs 1 --batch_size 16 --device cpu --no_tensorboard")
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "save" / "transfer" / f"STL-10_{STUDENT_RUN}_0" / "summary.json").is_file()
    log = tmp_path / "save" / "logs" / "transfer" / f"{STUDENT_RUN}_STL10.log"
    assert "finished: last-epoch test top-1" in log.read_text()
    # a failing probe is reported with its log, and the script exits 1
    res = run_script("eval_rep_STL10.sh", STUDENTS=str(student), DATA_FOLDER=stl, SAVE_DIR=tmp_path / "save",
                     PYTHON=sys.executable, EXTRA_ARGS="--epochs 0")
    assert res.returncode == 1 and "FAILED (exit 2)" in res.stderr and "--epochs must be positive" in res.stdout


AUTHORS_FEW_SHOT = ("--dataset cifar100 --path_t {t} --distill PACKDCONLoss --model_s resnet20 --save_dir ./save "
                    "-a 1 --alpha_aug 1 -b 0.8 --mixup_num 3 --few-ratio {r} --trial {i} --resume auto")


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_few_shot_dry_run_passes_the_authors_settings(shell):
    res = run_script("run_few_shot.sh", shell, DRY_RUN=1, PATH_T="/t/resnet56.pth", PYTHON="python3")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[0] == "teacher resnet56: /t/resnet56.pth" and lines[-1] == "dry run: 3 run(s)"
    assert lines[1:4] == ["python3 train_student.py " + AUTHORS_FEW_SHOT.format(t="/t/resnet56.pth", r=r, i=i)
                          for i, r in enumerate(["0.25", "0.5", "0.70"])]
    res = run_script("run_few_shot.sh", shell, DRY_RUN=1, PATH_T="/t.pth", PYTHON="python3", TRIALS=2,
                     FEW_RATIOS="0.5", PAIRS="resnet56:resnet20,wrn_40_2:wrn_16_2", EXTRA_ARGS="--device cuda:1")
    assert res.returncode == 0 and res.stdout.strip().splitlines()[-1] == "dry run: 4 run(s)"
    assert "--model_s wrn_16_2 --save_dir ./save -a 1 --alpha_aug 1 -b 0.8 --mixup_num 3 --few-ratio 0.5 --trial 1 " \
           "--resume auto --device cuda:1" in res.stdout


def test_few_shot_commands_are_train_student_commands():
    import train_student
    for i, r in enumerate(["0.25", "0.5", "0.70"]):
        opt = train_student.parse_args(AUTHORS_FEW_SHOT.format(t="/t.pth", r=r, i=i).split())
        assert (opt.distill, opt.few_ratio, opt.alpha, opt.alpha_aug, opt.beta, opt.mixup_num, opt.trial) == \
            ("packd", float(r), 1.0, 1.0, 0.8, 3, str(i))


@pytest.mark.parametrize("config,message", [({"TRIALS": "x"}, "TRIALS must be a positive whole number"),
                                            ({"PAIRS": "resnet56"}, "teacher:student pairs"),
                                            ({"FEW_RATIOS": " "}, "FEW_RATIOS is empty"),
                                            ({"FEW_RATIOS": "0.5 half"}, "fractions like 0.25, got 'half'")])
def test_few_shot_bad_configuration(config, message):
    res = run_script("run_few_shot.sh", DRY_RUN=1, PATH_T="/t.pth", **config)
    assert res.returncode == 2 and message in res.stderr


@pytest.mark.slow
def test_few_shot_finds_the_authors_teacher_layout(tmp_path):
    """The authors' --path_t ./save_t/models/<T>_cifar100_lr_0.05_decay_0.0005_trial_0/ckpt_epoch_240.pth is
    found by run_distill.sh's lookup; a missing teacher is an error naming the places looked at."""
    folder = tmp_path / "save_t" / "models" / "resnet56_cifar100_lr_0.05_decay_0.0005_trial_0"
    folder.mkdir(parents=True)
    (folder / "ckpt_epoch_240.pth").write_bytes(b"")
    res = run_script("run_few_shot.sh", DRY_RUN=1, SAVE_T=tmp_path / "save_t", PYTHON=sys.executable)
    assert res.returncode == 0, res.stderr
    assert f"--path_t {folder}/ckpt_epoch_240.pth" in res.stdout
    res = run_script("run_few_shot.sh", DRY_RUN=1, SAVE_T=tmp_path / "none", PYTHON=sys.executable)
    assert res.returncode == 1 and "no checkpoint of teacher resnet56" in res.stderr
