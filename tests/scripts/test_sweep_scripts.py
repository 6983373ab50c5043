"""The sweeps: scripts/sweep.py behind `sh scripts/run_distill.sh` / `sh scripts/run_vanilla.sh`,
and fetch_teachers.sh.

Training is replaced by a stand-in "interpreter" (PYTHON=...) that records its argv,
GPU and timing, and writes the run folder a real run would; so these tests check the
commands, the job pool, the skip rule, refusals, signals and the teacher lookup without
training anything. The shell wrappers are run under sh (and bash) where the point is the
command line users type; the rest calls `sweep.main` in-process, which is faster.
"""
import importlib.util
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
RUN_DISTILL = REPO / "scripts" / "run_distill.sh"
RUN_VANILLA = REPO / "scripts" / "run_vanilla.sh"
FETCH_TEACHERS = REPO / "scripts" / "fetch_teachers.sh"
SWEEP = REPO / "scripts" / "sweep.py"

TEACHERS = ["wrn_40_2", "resnet56", "resnet110", "resnet32x4", "vgg13", "ResNet50"]
BENCHMARK_PAIRS = {
    ("wrn_40_2", "wrn_16_2"), ("wrn_40_2", "wrn_40_1"), ("resnet56", "resnet20"),
    ("resnet110", "resnet32"), ("resnet32x4", "resnet8x4"), ("vgg13", "vgg8"),
    ("vgg13", "MobileNetV2"), ("ResNet50", "MobileNetV2"), ("ResNet50", "vgg8"),
    ("resnet32x4", "ShuffleV1"), ("resnet32x4", "ShuffleV2"), ("wrn_40_2", "ShuffleV1"),
}
CONFIG_VARS = ["METHODS", "TRIALS", "PAIRS", "GPUS", "JOBS_PER_GPU", "SAVE_T", "SAVE_DIR",
               "LOG_DIR", "EXTRA_ARGS", "PYTHON", "DRY_RUN", "FORCE", "MODELS", "URL",
               "ARCHIVE", "CUDA_VISIBLE_DEVICES", "TEACHER_LAYOUT", "SWEEP_PYTHON"]
SHELLS = [s for s in ("sh", "bash") if shutil.which(s)]  # sh is dash on Debian, bash on macOS
PACKD_FOLDER = "{t}_cifar100_lr_0.05_decay_0.0005_trial_0"

STAND_IN = r'''#!PYTHON_EXE
"""Stand-in for `python train_student.py|train_teacher.py ARGS`: records and fakes a run."""
import json, os, signal, sys, time

script, args = sys.argv[1], sys.argv[2:]

def opt(*names, default=None):
    for i, a in enumerate(args[:-1]):
        if a in names:
            return args[i + 1]
    return default

def on_signal(signum, frame):
    # record every signal; like train_student.py, stop a little later with 128 + signal
    with open(os.environ["STANDIN_SIGNALS"], "a") as fh:
        fh.write(f"{os.getpid()} {signum}\n")
    if not getattr(on_signal, "busy", False):
        on_signal.busy = True
        time.sleep(1.5)  # a second signal arriving now is recorded too
        sys.exit(128 + signum)

if os.environ.get("STANDIN_SIGNALS"):
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
start = time.time()
if os.environ.get("STANDIN_PIDS"):
    with open(os.environ["STANDIN_PIDS"], "a") as fh:
        fh.write(f"{os.getpid()}\n")
refuse = os.environ.get("STANDIN_REFUSE")
if refuse and refuse in " ".join(args):
    print("stand-in: checking the run folder")
    print(f"error: the run folder was started with other settings: {refuse} differs", file=sys.stderr)
    sys.exit(2)
kill = os.environ.get("STANDIN_KILL")
if kill and kill in " ".join(args):
    os.kill(os.getpid(), signal.SIGKILL)
time.sleep(float(os.environ.get("STANDIN_SLEEP", "0")))
epochs = int(opt("--epochs", default="2"))
trial = opt("--trial", "-t", default="0")
save_dir = opt("--save_dir", default="./save")
if script == "train_teacher.py":
    model = opt("--model")
    folder = os.path.join(save_dir, "models", f"{model}_cifar100_lr_0.05_decay_0.0005_trial_{trial}")
    run = {"kind": "teacher", "model": model}
else:
    model, path_t = opt("--model_s"), opt("--path_t")
    parts = os.path.basename(os.path.dirname(path_t)).split("_")
    model_t = "_".join(parts[:3]) if parts[0] == "wrn" else parts[0]
    r, a, b = (float(opt(f, default="1" if f == "-r" else "0")) for f in ("-r", "-a", "-b"))
    distill = opt("--distill")
    folder = os.path.join(save_dir, "student_model",
                          f"S:{model}_T:{model_t}_cifar100_{distill}_r:{r}_a:{a}_b:{b}_{trial}")
    run = {"kind": "student", "model_s": model, "model_t": model_t, "distill": distill,
           "teacher_acc": 70.0}
run.update(trial=trial, epochs=epochs)
os.makedirs(folder, exist_ok=True)
with open(os.path.join(folder, "run.json"), "w") as fh:
    json.dump(run, fh)
with open(os.path.join(folder, "metrics.jsonl"), "w") as fh:
    for e in range(1, epochs + 1):
        fh.write(json.dumps({"epoch": e, "lr": 0.05, "train_loss": 1.0, "train_acc": 50.0,
                             "test_loss": 1.0, "test_acc": 40.0 + e, "test_acc_top5": 80.0,
                             "seconds": 0.1}) + "\n")
for name in ("ckpt_epoch_%d.pth" % epochs, f"{model}_last.pth", f"{model}_best.pth", "latest.pth"):
    open(os.path.join(folder, name), "w").close()
with open(os.path.join(folder, "summary.json"), "w") as fh:
    json.dump({"last_acc": 40.0 + epochs, "best_acc": 40.0 + epochs, "best_epoch": epochs,
               "epochs": epochs}, fh)
print("stand-in", script, " ".join(args))
with open(os.environ["STANDIN_RECORD"], "a") as fh:
    fh.write(json.dumps({"script": script, "args": args, "cwd": os.getcwd(),
                         "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"),
                         "start": start, "end": time.time()}) + "\n")
fail = os.environ.get("STANDIN_FAIL")
sys.exit(3 if fail and fail in " ".join(args) else 0)
'''


# --- helpers --------------------------------------------------------------------------

def clean_env(**config):
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
    env.update({k: str(v) for k, v in config.items()})
    return env


def run_script(script, shell="sh", args=(), timeout=60, **config):
    return subprocess.run([shell, str(script), *args], env=clean_env(**config), cwd="/",
                          capture_output=True, text=True, timeout=timeout)


def load_sweep():
    spec = importlib.util.spec_from_file_location("sweep_script", SWEEP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sweep_module():
    return load_sweep()


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def sweep(sweep_module, capsys, monkeypatch):
    """sweep(mode, *args, **config) -> Result: scripts/sweep.py's main, in this process."""
    monkeypatch.chdir("/")  # main() goes to the repository root; restored afterwards

    def call(mode="distill", *args, **config):
        capsys.readouterr()
        rc = sweep_module.main([mode, *args], environ=clean_env(**config))
        out, err = capsys.readouterr()
        return Result(rc, out, err)

    return call


def make_teachers(save_t, teachers=TEACHERS, layout="{t}_vanilla/ckpt_epoch_240.pth"):
    for t in teachers:
        path = Path(save_t) / layout.format(t=t)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"checkpoint")


def arg_value(words, flag):
    return words[words.index(flag) + 1]


def parse_commands(stdout):
    return [line.split() for line in stdout.splitlines() if line.strip()]


def teacher_of(path_t):
    parts = Path(path_t).parent.name.split("_")
    return "_".join(parts[:3]) if parts[0] == "wrn" else parts[0]


def registry():
    from distiller_zoo import METHODS
    return METHODS


def expected_flags(method, pair=("resnet56", "resnet20")):
    """The weights train_student.py itself resolves for the pair when none are given (a class's
    default_weights, or its per-pair recipe), then the class's sweep_args."""
    import train_student
    from distiller_zoo.base import resolve_weights
    cls = registry()[method]
    opt = train_student.parse_args(["--path_t", "x.pth", "--distill", method, "--model_s", pair[1],
                                    *getattr(cls, "sweep_args", ())])
    opt.model_t = pair[0]
    cls.resolve_pair_settings(opt)
    w = resolve_weights(cls, opt)
    return ["-r", f"{w['gamma']:g}", "-a", f"{w['alpha']:g}", "-b", f"{w['beta']:g}",
            *getattr(cls, "sweep_args", ())]


@pytest.fixture
def standin(tmp_path):
    """PYTHON replacement and the file its runs are recorded in."""
    script = tmp_path / "standin.py"
    script.write_text(STAND_IN.replace("PYTHON_EXE", sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    record = tmp_path / "record.jsonl"

    def records():
        if not record.exists():
            return []
        return [json.loads(line) for line in record.read_text().splitlines()]

    return {"PYTHON": str(script), "STANDIN_RECORD": str(record)}, records


@pytest.fixture
def dirs(tmp_path):
    save_t, save_dir = tmp_path / "save_t", tmp_path / "save"
    return {"SAVE_T": str(save_t), "SAVE_DIR": str(save_dir)}


# --- run_distill.sh: commands ---------------------------------------------------------

@pytest.mark.parametrize("shell", SHELLS)
def test_dry_run_lists_exactly_the_12_benchmark_pairs(dirs, shell):
    make_teachers(dirs["SAVE_T"])
    res = run_script(RUN_DISTILL, shell=shell, DRY_RUN=1, **dirs)
    assert res.returncode == 0, res.stderr
    cmds = parse_commands(res.stdout)
    assert len(cmds) == 12
    pairs = {(teacher_of(arg_value(c, "--path_t")), arg_value(c, "--model_s")) for c in cmds}
    assert pairs == BENCHMARK_PAIRS
    for c in cmds:
        assert c[:2] == ["python", "train_student.py"]
        assert Path(arg_value(c, "--path_t")).is_file()
        assert arg_value(c, "--distill") == "packd"
        assert arg_value(c, "--trial") == "0"
        assert arg_value(c, "--save_dir") == dirs["SAVE_DIR"]
        assert c[c.index("--save_dir") + 2:] == ["--resume", "auto"]
        # the PACKD authors' flags (PACKD's default_weights and sweep_args)
        assert (arg_value(c, "-r"), arg_value(c, "-a"), arg_value(c, "-b")) == ("1", "1", "0.8")
        assert arg_value(c, "--alpha_aug") == "1" and arg_value(c, "--mixup_num") == "3"
    assert not Path(dirs["SAVE_DIR"]).exists(), "a dry run must not create anything"


def test_methods_and_trials_multiply_the_runs(dirs, sweep):
    make_teachers(dirs["SAVE_T"])
    res = sweep(DRY_RUN=1, METHODS="kd,crd nst", TRIALS=3, **dirs)
    assert res.returncode == 0, res.stderr
    cmds = parse_commands(res.stdout)
    assert len(cmds) == 12 * 3 * 3
    runs = {(arg_value(c, "--distill"), arg_value(c, "--trial"), arg_value(c, "--model_s"),
             teacher_of(arg_value(c, "--path_t"))) for c in cmds}
    assert len(runs) == len(cmds), "every run is listed once"
    assert {r[0] for r in runs} == {"kd", "crd", "nst"}
    assert {r[1] for r in runs} == {"0", "1", "2"}
    weights = {arg_value(c, "--distill"): " ".join(c[c.index("--distill") + 2:c.index("--trial")])
               for c in cmds}
    assert weights == {"kd": "-r 0.1 -a 0.9 -b 0", "crd": "-r 1 -a 0 -b 0.8", "nst": "-r 1 -a 0 -b 50"}


def test_pairs_a_method_refuses_are_listed_as_not_applicable_not_run(dirs, sweep):
    """FSP compares same-width maps: of resnet56:resnet20 (same widths) and vgg13:MobileNetV2 it
    runs the first only and names the second, once for all trials, with the width rule; the
    sweep still succeeds and the other methods run on both pairs."""
    make_teachers(dirs["SAVE_T"], ["resnet56", "vgg13"])
    res = sweep(DRY_RUN=1, METHODS="fsp kd", PAIRS="resnet56:resnet20 vgg13:MobileNetV2", TRIALS=2, **dirs)
    assert res.returncode == 0, res.stderr
    runs = sorted((arg_value(c, "--distill"), arg_value(c, "--model_s")) for c in parse_commands(res.stdout))
    assert runs == sorted([("fsp", "resnet20"), ("kd", "resnet20"), ("kd", "MobileNetV2")] * 2)
    na = [line for line in res.stderr.splitlines() if line.startswith("n/a ")]
    assert na == [line for line in na if line.startswith("n/a vgg13-MobileNetV2_fsp: FSP needs equal channel "
                                                        "numbers")] and len(na) == 1


def test_every_registered_method_gets_its_class_weights_and_sweep_args(dirs, sweep):
    make_teachers(dirs["SAVE_T"], ["resnet56"])
    methods = list(registry())
    assert "vanilla" not in methods and "packd" in methods
    res = sweep(DRY_RUN=1, METHODS=",".join(methods), PAIRS="resnet56:resnet20", **dirs)
    assert res.returncode == 0, res.stderr
    flags = {arg_value(c, "--distill"): c[c.index("--distill") + 2:c.index("--trial")]
             for c in parse_commands(res.stdout)}
    assert flags == {m: expected_flags(m) for m in methods}


class FakeDistiller:
    """What the sweep reads from a method class: its weights and sweep flags."""
    name = "fake"
    default_weights = {"gamma": 0.5, "alpha": 0.25, "beta": 10000.0}
    sweep_args = ("--fake_flag", "7")


class PlainDistiller:
    name = "plain"
    default_weights = {"gamma": 1, "alpha": 0, "beta": 2e-05}  # no sweep_args attribute at all


def test_commands_are_built_from_the_registry_it_is_given(sweep_module):
    config = sweep_module.read_config({"TRIALS": "2", "SAVE_DIR": "/s", "EXTRA_ARGS": "--epochs 1"})
    runs = sweep_module.distill_runs(config, ["fake", "plain"], [("resnet56", "resnet20"), ("vgg13", "vgg8")],
                                     {"fake": FakeDistiller, "plain": PlainDistiller},
                                     {"resnet56": "/t/resnet56.pth", "vgg13": None})
    assert [r.name for r in runs] == ["resnet56-resnet20_fake_trial_0", "resnet56-resnet20_plain_trial_0",
                                      "resnet56-resnet20_fake_trial_1", "resnet56-resnet20_plain_trial_1"]
    assert runs[0].args == ["train_student.py", "--path_t", "/t/resnet56.pth", "--model_s", "resnet20",
                            "--distill", "fake", "-r", "0.5", "-a", "0.25", "-b", "10000", "--fake_flag", "7",
                            "--trial", "0", "--save_dir", "/s", "--resume", "auto", "--epochs", "1"]
    assert runs[1].args[6:14] == ["plain", "-r", "1", "-a", "0", "-b", "2e-05", "--trial"]


def test_a_method_registered_at_runtime_shows_up_in_the_sweep(dirs, sweep, monkeypatch):
    import distiller_zoo
    monkeypatch.setitem(distiller_zoo.METHODS, "fake", FakeDistiller)
    make_teachers(dirs["SAVE_T"], ["resnet56"])
    res = sweep(DRY_RUN=1, METHODS="fake", PAIRS="resnet56:resnet20", **dirs)
    assert res.returncode == 0, res.stderr
    [cmd] = parse_commands(res.stdout)
    assert " ".join(cmd[cmd.index("--distill"):cmd.index("--trial")]) == \
        "--distill fake -r 0.5 -a 0.25 -b 10000 --fake_flag 7"
    assert "fake -r 0.5 -a 0.25 -b 10000 --fake_flag 7" in sweep("distill", "-h").stdout
    res = sweep(DRY_RUN=1, METHODS="magic", **dirs)
    assert res.returncode == 2 and "use any of" in res.stderr
    assert "fake" in res.stderr.split("use any of")[1], "the valid names come from the registry"


def test_pairs_subset_and_extra_args(dirs, sweep):
    make_teachers(dirs["SAVE_T"])
    res = sweep(DRY_RUN=1, PAIRS="resnet56:resnet20,vgg13:vgg8",
                EXTRA_ARGS="--epochs 1 --device cpu", PYTHON="python3 -u", **dirs)
    assert res.returncode == 0, res.stderr
    cmds = parse_commands(res.stdout)
    assert [(teacher_of(arg_value(c, "--path_t")), arg_value(c, "--model_s")) for c in cmds] == \
        [("resnet56", "resnet20"), ("vgg13", "vgg8")]
    for c in cmds:
        assert c[:3] == ["python3", "-u", "train_student.py"]
        assert c[-4:] == ["--epochs", "1", "--device", "cpu"]
    assert "dry run: 2 runs, 0 already finished" in res.stderr
    # a pair or method named twice is one run, not two runs in one folder
    res = sweep(DRY_RUN=1, PAIRS="vgg13:vgg8 vgg13:vgg8", METHODS="kd,kd", **dirs)
    assert len(parse_commands(res.stdout)) == 1


@pytest.mark.parametrize("config, message", [
    ({"METHODS": "kd,magic"}, "unknown method 'magic' in METHODS; use any of kd "),
    ({"METHODS": " , "}, "METHODS is empty"),
    ({"PAIRS": "resnet56-resnet20"}, "not teacher:student"),
    ({"PAIRS": "resnet56:"}, "not teacher:student"),
    ({"PAIRS": "a:b:c"}, "not teacher:student"),
    ({"PAIRS": ","}, "PAIRS is empty"),
    ({"TRIALS": "0"}, "TRIALS must be a positive integer"),
    ({"TRIALS": "01"}, "TRIALS must be a positive integer"),
    ({"JOBS_PER_GPU": "x"}, "JOBS_PER_GPU must be a positive integer"),
    ({"GPUS": ","}, "GPUS must list at least one GPU id"),
    ({"TEACHER_LAYOUT": "mdistiller"}, "TEACHER_LAYOUT must be packd or repdistiller, got 'mdistiller'"),
])
def test_bad_configuration_is_a_one_line_error(dirs, sweep, config, message):
    make_teachers(dirs["SAVE_T"])
    res = sweep(DRY_RUN=1, **dirs, **config)
    assert res.returncode == 2
    assert message in res.stderr and res.stdout == ""
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: ")


def test_help_and_unknown_argument():
    helps = {}
    for script, flag in ((RUN_DISTILL, "--help"), (RUN_VANILLA, "-h"), (FETCH_TEACHERS, "-h")):
        res = run_script(script, args=[flag])
        assert res.returncode == 0 and "Usage:" in res.stdout, script
        assert "set -u" not in res.stdout
        helps[script] = res.stdout
    distill_help = helps[RUN_DISTILL]
    for var in ("METHODS", "TRIALS", "PAIRS", "GPUS", "JOBS_PER_GPU", "SAVE_T", "SAVE_DIR", "LOG_DIR",
                "EXTRA_ARGS", "PYTHON", "DRY_RUN", "FORCE", "TEACHER_LAYOUT", "Exit status"):
        assert var in distill_help, var
    assert "kd -r 0.1 -a 0.9 -b 0" in distill_help and "packd -r 1 -a 1 -b 0.8" in distill_help
    assert "MODELS" in helps[RUN_VANILLA]
    res = run_script(RUN_DISTILL, args=["--oops"])
    assert res.returncode == 2 and "unknown argument '--oops'" in res.stderr
    res = subprocess.run([sys.executable, str(SWEEP)], capture_output=True, text=True, cwd="/")
    assert res.returncode == 2 and "distill, vanilla" in res.stderr


# --- teacher lookup -------------------------------------------------------------------

def make_lookup_layouts(save_t, save_dir):
    # PACKD scripts' layout only
    make_teachers(save_t, ["resnet56"], PACKD_FOLDER + "/ckpt_epoch_240.pth")
    # both released layouts
    make_teachers(save_t, ["vgg13"], PACKD_FOLDER + "/ckpt_epoch_240.pth")
    make_teachers(save_t, ["vgg13"])
    # run_vanilla.sh output: finished (summary.json) -> <model>_last.pth
    make_teachers(save_dir / "models", ["resnet110"], PACKD_FOLDER + "/{t}_last.pth")
    (save_dir / "models" / PACKD_FOLDER.format(t="resnet110") / "summary.json").write_text("{}")
    # unfinished run_vanilla.sh output: only ckpt_epoch_240.pth counts, not <model>_last.pth
    make_teachers(save_dir / "models", ["wrn_40_2"], PACKD_FOLDER + "/{t}_last.pth")
    make_teachers(save_dir / "models", ["wrn_40_2"], PACKD_FOLDER + "/ckpt_epoch_240.pth")
    # unfinished and no epoch-240 checkpoint: not a teacher
    make_teachers(save_dir / "models", ["resnet32x4"], PACKD_FOLDER + "/{t}_last.pth")


@pytest.mark.parametrize("layout, vgg13", [
    (None, PACKD_FOLDER.format(t="vgg13")),  # the default is packd
    ("packd", PACKD_FOLDER.format(t="vgg13")),
    ("repdistiller", "vgg13_vanilla"),
])
def test_teacher_lookup_order_and_layouts(dirs, sweep, layout, vgg13):
    save_t, save_dir = Path(dirs["SAVE_T"]), Path(dirs["SAVE_DIR"])
    make_lookup_layouts(save_t, save_dir)
    pairs = "resnet56:resnet20,vgg13:vgg8,resnet110:resnet32,wrn_40_2:wrn_16_2,resnet32x4:resnet8x4"
    res = sweep(DRY_RUN=1, PAIRS=pairs, **({"TEACHER_LAYOUT": layout} if layout else {}), **dirs)
    paths = {arg_value(c, "--model_s"): arg_value(c, "--path_t") for c in parse_commands(res.stdout)}
    assert paths == {
        "resnet20": f"{save_t}/{PACKD_FOLDER.format(t='resnet56')}/ckpt_epoch_240.pth",
        "vgg8": f"{save_t}/{vgg13}/ckpt_epoch_240.pth",
        "resnet32": f"{save_dir}/models/{PACKD_FOLDER.format(t='resnet110')}/resnet110_last.pth",
        "wrn_16_2": f"{save_dir}/models/{PACKD_FOLDER.format(t='wrn_40_2')}/ckpt_epoch_240.pth",
    }
    assert res.returncode == 2 and "no checkpoint of teacher 'resnet32x4'" in res.stderr
    for teacher, path in zip(("resnet56", "vgg13", "resnet110", "wrn_40_2"), paths.values()):
        assert f"teacher {teacher}: {path}, accuracy not recorded" in res.stderr


def test_teacher_file_and_recorded_accuracy_are_printed(dirs, sweep):
    save_t, save_dir = Path(dirs["SAVE_T"]), Path(dirs["SAVE_DIR"])
    released = save_t / "resnet56_vanilla" / "ckpt_epoch_240.pth"
    released.parent.mkdir(parents=True)
    torch.save({"model": {}, "epoch": 240, "accuracy": torch.tensor(72.345)}, released)
    run = save_dir / "models" / PACKD_FOLDER.format(t="vgg13")
    run.mkdir(parents=True)
    (run / "vgg13_last.pth").write_bytes(b"not readable")
    (run / "summary.json").write_text(json.dumps({"last_acc": 74.5}))
    res = sweep(DRY_RUN=1, PAIRS="resnet56:resnet20,vgg13:vgg8,resnet56:resnet8", **dirs)
    assert res.returncode == 0, res.stderr
    assert f"teacher resnet56: {released}, test top-1 72.35 (from the checkpoint's 'accuracy')" in res.stderr
    assert f"teacher vgg13: {run}/vgg13_last.pth, test top-1 74.50 (from summary.json 'last_acc')" in res.stderr
    assert res.stderr.count("teacher resnet56:") == 1, "one line per teacher"
    assert len(parse_commands(res.stdout)) == 3, "nothing but commands on stdout"


def test_missing_teacher_is_reported_and_other_runs_go_on(dirs, standin, sweep):
    make_teachers(dirs["SAVE_T"], [t for t in TEACHERS if t != "resnet32x4"])
    res = sweep(DRY_RUN=1, TRIALS=2, **dirs)
    assert res.returncode == 2
    assert res.stderr.count("no checkpoint of teacher 'resnet32x4'") == 1, "one message per teacher"
    assert f"{dirs['SAVE_T']}/resnet32x4_vanilla/ckpt_epoch_240.pth" in res.stderr
    assert f"{dirs['SAVE_T']}/{PACKD_FOLDER.format(t='resnet32x4')}/ckpt_epoch_240.pth" in res.stderr
    assert "fetch_teachers.sh" in res.stderr and "run_vanilla.sh" in res.stderr
    assert "skipped all runs of the missing teacher(s): resnet32x4" in res.stderr
    assert len(parse_commands(res.stdout)) == (12 - 3) * 2
    # a real sweep runs the others, then exits 2
    config, records = standin
    res = sweep(PAIRS="resnet32x4:resnet8x4,resnet56:resnet20", **dirs, **config)
    assert res.returncode == 2, res.stderr
    assert [r["args"][r["args"].index("--model_s") + 1] for r in records()] == ["resnet20"]
    # ... and 1 when a run failed as well
    res = sweep(PAIRS="resnet32x4:resnet8x4,resnet56:resnet20", FORCE=1, STANDIN_FAIL="resnet20", **dirs, **config)
    assert res.returncode == 1


# --- run_distill.sh: real sweeps with the stand-in ------------------------------------

def test_sweep_runs_every_command_once_on_the_gpus(dirs, standin, tmp_path):
    make_teachers(dirs["SAVE_T"])
    config, records = standin
    res = run_script(RUN_DISTILL, METHODS="kd,packd", TRIALS=2, PAIRS="resnet56:resnet20,vgg13:vgg8",
                     GPUS="0,1", EXTRA_ARGS="--epochs 3", **dirs, **config)
    assert res.returncode == 0, res.stdout + res.stderr
    done = records()
    assert len(done) == 8
    runs = {(r["args"][r["args"].index("--distill") + 1], r["args"][r["args"].index("--trial") + 1],
             r["args"][r["args"].index("--model_s") + 1]) for r in done}
    assert len(runs) == 8
    assert all(r["script"] == "train_student.py" and r["args"][-2:] == ["--epochs", "3"] for r in done)
    assert all(r["cwd"] == str(REPO) for r in done), "runs start in the repository root"
    assert {r["gpu"] for r in done} == {"0", "1"}
    for gpu in ("0", "1"):  # one job at a time per GPU
        spans = sorted((r["start"], r["end"]) for r in done if r["gpu"] == gpu)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    log_dir = Path(dirs["SAVE_DIR"]) / "logs"
    name = "resnet56-resnet20_packd_trial_1"
    log = (log_dir / f"{name}.log").read_text()
    assert log.startswith("==== ") and " GPU " in log.splitlines()[0]
    assert "stand-in train_student.py" in log
    assert (log_dir / f"{name}.done").is_file()
    assert len(list(log_dir.glob("*.log"))) == 8 and len(list(log_dir.glob("*.done"))) == 8
    folders = list((Path(dirs["SAVE_DIR"]) / "student_model").iterdir())
    assert len(folders) == 8 and all((f / "summary.json").is_file() for f in folders)
    assert "running 8 runs on 2 slots" in res.stdout
    assert "sweep done: 8 finished, 0 failed, 0 refused, 0 skipped" in res.stdout


def test_jobs_per_gpu_bounds_concurrency(dirs, standin, sweep):
    make_teachers(dirs["SAVE_T"])
    config, records = standin
    res = sweep(TRIALS=4, PAIRS="resnet56:resnet20", GPUS="3", JOBS_PER_GPU=2, STANDIN_SLEEP=1.0, **dirs, **config)
    assert res.returncode == 0, res.stdout + res.stderr
    done = records()
    assert len(done) == 4 and {r["gpu"] for r in done} == {"3"}
    events = sorted([(r["start"], 1) for r in done] + [(r["end"], -1) for r in done],
                    key=lambda e: (e[0], e[1]))
    running, peak = 0, 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert peak == 2


def test_finished_runs_are_skipped(dirs, standin, sweep):
    make_teachers(dirs["SAVE_T"])
    config, records = standin
    base = dict(PAIRS="resnet56:resnet20,vgg13:vgg8", **dirs, **config)
    first = dict(base, EXTRA_ARGS="--epochs 1")
    assert sweep(**first).returncode == 0
    assert len(records()) == 2
    again = sweep(**first)
    assert again.returncode == 0
    assert len(records()) == 2, "finished runs are not run again"
    assert again.stderr.count("skip ") == 2 and "nothing to run (2 already finished)" in again.stdout
    assert parse_commands(sweep(DRY_RUN=1, **first).stdout) == []
    # FORCE=1 lists them again, with --overwrite in place of --resume auto
    forced = parse_commands(sweep(FORCE=1, DRY_RUN=1, **first).stdout)
    assert len(forced) == 2 and all("--overwrite" in c and "--resume" not in c for c in forced)
    # a new trial runs, the finished ones do not
    res = sweep(TRIALS=2, **first)
    assert res.returncode == 0 and len(records()) == 4


def test_a_marker_records_the_arguments_and_other_arguments_resume_the_run(dirs, standin, sweep):
    make_teachers(dirs["SAVE_T"], ["resnet56"])
    config, records = standin
    base = dict(PAIRS="resnet56:resnet20", **dirs, **config)
    marker = Path(dirs["SAVE_DIR"]) / "logs" / "resnet56-resnet20_packd_trial_0.done"
    assert sweep(EXTRA_ARGS="--epochs 1 --note 'a b'", **base).returncode == 0
    [first] = records()
    assert first["args"][-5:] == ["--epochs", "1", "--note", "'a", "b'"]
    assert marker.read_text().startswith("train_student.py --path_t ") and marker.read_text().count("\n") == 1
    # the marker is one line that sh splits back into the arguments the run had
    words = subprocess.run(["sh", "-c", f'for w in {marker.read_text().strip()}; do echo "$w"; done'],
                           capture_output=True, text=True).stdout.splitlines()
    assert words == [first["script"], *first["args"]]
    # other arguments: started again, with --resume auto, and the marker follows the new run
    res = sweep(EXTRA_ARGS="--epochs 2", **base)
    assert res.returncode == 0, res.stderr
    assert "rerun resnet56-resnet20_packd_trial_0: it finished with other arguments" in res.stderr
    second = records()[-1]
    assert second["args"][-4:] == ["--resume", "auto", "--epochs", "2"]
    assert marker.read_text().strip().endswith("--resume auto --epochs 2")
    # a refused rerun leaves no marker: the old one no longer describes the folder's run
    res = sweep(EXTRA_ARGS="--epochs 3", STANDIN_REFUSE="--epochs 3", **base)
    assert res.returncode == 1
    assert not marker.exists()
    # same arguments as a finished run: skipped without starting anything
    assert sweep(EXTRA_ARGS="--epochs 2", **base).returncode == 0 and len(records()) == 3
    assert sweep(EXTRA_ARGS="--epochs 2", **base).stdout.startswith("nothing to run (1 already finished)")


def test_refused_run_is_reported_with_the_childs_last_line(dirs, standin, sweep):
    make_teachers(dirs["SAVE_T"])
    config, records = standin
    res = sweep(PAIRS="resnet56:resnet20,vgg13:vgg8,resnet110:resnet32", STANDIN_REFUSE="vgg8",
                STANDIN_FAIL="resnet32", **dirs, **config)
    assert res.returncode == 1
    assert ("REFUSED vgg13-vgg8_packd_trial_0: error: the run folder was started with other settings: "
            "vgg8 differs") in res.stderr
    assert "FAILED vgg13-vgg8" not in res.stderr, "a refusal is not reported as a failure"
    assert "FAILED resnet110-resnet32_packd_trial_0 (exit 3)" in res.stderr
    assert "sweep done: 1 finished, 1 failed, 1 refused, 0 skipped" in res.stdout
    logs = Path(dirs["SAVE_DIR"]) / "logs"
    assert (logs / "resnet56-resnet20_packd_trial_0.done").exists()
    assert not (logs / "vgg13-vgg8_packd_trial_0.done").exists()
    assert not (logs / "resnet110-resnet32_packd_trial_0.done").exists()
    only_refused = sweep(PAIRS="vgg13:vgg8", STANDIN_REFUSE="vgg8", **dirs, **config)
    assert only_refused.returncode == 1 and "0 failed, 1 refused" in only_refused.stdout


def test_failed_run_has_no_marker_and_fails_the_sweep(dirs, standin, sweep):
    make_teachers(dirs["SAVE_T"])
    config, records = standin
    base = dict(PAIRS="resnet56:resnet20,vgg13:vgg8,resnet110:resnet32", **dirs, **config)
    res = sweep(STANDIN_FAIL="vgg8", STANDIN_KILL="resnet32", **base)
    assert res.returncode == 1
    assert "FAILED vgg13-vgg8_packd_trial_0 (exit 3)" in res.stderr
    assert "FAILED resnet110-resnet32_packd_trial_0 (killed by SIGKILL)" in res.stderr
    assert "1 finished, 2 failed, 0 refused" in res.stdout
    logs = Path(dirs["SAVE_DIR"]) / "logs"
    assert (logs / "resnet56-resnet20_packd_trial_0.done").exists()
    assert not (logs / "vgg13-vgg8_packd_trial_0.done").exists()
    assert not (logs / "resnet110-resnet32_packd_trial_0.done").exists()
    assert len(records()) == 2  # the killed run recorded nothing
    res = sweep(**base)  # only the failed runs run again, continuing with --resume auto
    assert res.returncode == 0 and len(records()) == 4
    assert records()[-1]["args"][-2:] == ["--resume", "auto"]


def test_an_interpreter_that_cannot_start_fails_the_run(dirs, sweep, tmp_path):
    make_teachers(dirs["SAVE_T"], ["resnet56"])
    res = sweep(PAIRS="resnet56:resnet20", PYTHON=str(tmp_path / "no-such-python"), **dirs)
    assert res.returncode == 1
    assert "FAILED resnet56-resnet20_packd_trial_0 (cannot start" in res.stderr
    log = (Path(dirs["SAVE_DIR"]) / "logs" / "resnet56-resnet20_packd_trial_0.log").read_text()
    assert "error: cannot start" in log


def wait_for_lines(path, n, proc, timeout=90):
    """The words of `path` once it holds n lines (generous timeout: the CPU may be shared)."""
    deadline = time.time() + timeout
    while time.time() < deadline and (not path.exists() or len(path.read_text().split("\n")) <= n):
        assert proc.poll() is None, f"the sweep ended early: {proc.communicate()}"
        time.sleep(0.05)
    return path.read_text().split() if path.exists() else []


def alive(pids):
    return [p for p in pids if Path(f"/proc/{p}").exists()
            and "Z" not in Path(f"/proc/{p}/stat").read_text().split(")")[-1].split()[:1]]


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm", "ctrl-c twice"])
def test_interrupting_the_sweep_sends_each_run_one_sigint(dirs, standin, tmp_path, how):
    """Ctrl-C in a terminal signals the whole foreground process group; the runs are in
    their own sessions, so each gets exactly one SIGINT: the one the sweep forwards."""
    make_teachers(dirs["SAVE_T"])
    config, records = standin
    pids, signals = tmp_path / "pids", tmp_path / "signals"
    proc = subprocess.Popen(["sh", str(RUN_DISTILL)], cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            env=clean_env(PAIRS="resnet56:resnet20,vgg13:vgg8,resnet110:resnet32", GPUS="0,1",
                                          STANDIN_SLEEP=60, STANDIN_PIDS=str(pids), STANDIN_SIGNALS=str(signals),
                                          **dirs, **config))
    try:
        children = [int(p) for p in wait_for_lines(pids, 2, proc)]
        assert len(children) == 2
        if how == "sigterm":
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)  # what the terminal does (the sweep leads its group here)
            if how == "ctrl-c twice":
                time.sleep(0.2)
                os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    deadline = time.time() + 10
    while alive(children) and time.time() < deadline:
        time.sleep(0.05)
    assert alive(children) == [], "the training processes were left running"
    received = sorted(tuple(map(int, line.split())) for line in signals.read_text().splitlines())
    per_child = 2 if how == "ctrl-c twice" else 1
    assert received == sorted((pid, signal.SIGINT.value) for pid in children for _ in range(per_child))
    assert len(pids.read_text().split()) == 2, "no run starts after the signal"
    assert records() == [] and not list((Path(dirs["SAVE_DIR"]) / "logs").glob("*.done"))
    assert "stopped resnet56-resnet20_packd_trial_0 (exit 130)" in err
    assert "interrupted: 2 running run(s) stopped" in err and "1 not started" in err


# --- run_vanilla.sh -------------------------------------------------------------------

def test_vanilla_dry_run_trains_the_teachers_plus_named_models(dirs, sweep):
    res = run_script(RUN_VANILLA, args=["vgg8", "resnet56"], DRY_RUN=1, **dirs)
    assert res.returncode == 0, res.stderr
    cmds = parse_commands(res.stdout)
    assert [arg_value(c, "--model") for c in cmds] == TEACHERS + ["vgg8"]
    for c in cmds:
        assert c[:2] == ["python", "train_teacher.py"]
        assert arg_value(c, "--trial") == "0" and arg_value(c, "--save_dir") == dirs["SAVE_DIR"]
        assert c[-2:] == ["--resume", "auto"]
    res = sweep("vanilla", "vgg8", MODELS="", TRIALS=2, DRY_RUN=1, **dirs)
    assert [(arg_value(c, "--model"), arg_value(c, "--trial")) for c in parse_commands(res.stdout)] == \
        [("vgg8", "0"), ("vgg8", "1")]
    res = sweep("vanilla", MODELS="resnet8,vgg8 resnet8", DRY_RUN=1, **dirs)
    assert [arg_value(c, "--model") for c in parse_commands(res.stdout)] == ["resnet8", "vgg8"]
    res = sweep("vanilla", MODELS="", DRY_RUN=1, **dirs)
    assert res.returncode == 2 and "no model to train" in res.stderr
    res = run_script(RUN_VANILLA, args=["--epochs"], DRY_RUN=1, **dirs)
    assert res.returncode == 2 and "unknown option '--epochs'" in res.stderr


def test_vanilla_teachers_feed_the_distillation_sweep(dirs, standin, sweep):
    config, records = standin
    res = run_script(RUN_VANILLA, MODELS="resnet56 vgg13", GPUS="0,1", EXTRA_ARGS="--epochs 2", **dirs, **config)
    assert res.returncode == 0, res.stdout + res.stderr
    assert sorted(arg_value(r["args"], "--model") for r in records()) == ["resnet56", "vgg13"]
    logs = Path(dirs["SAVE_DIR"]) / "logs"
    assert (logs / "teacher_vgg13_trial_0.done").exists() and (logs / "teacher_vgg13_trial_0.log").exists()
    again = sweep("vanilla", MODELS="resnet56 vgg13", EXTRA_ARGS="--epochs 2", **dirs, **config)
    assert again.returncode == 0 and len(records()) == 2
    # no save_t: run_distill.sh takes the teachers run_vanilla.sh trained
    res = sweep(DRY_RUN=1, PAIRS="resnet56:resnet20,vgg13:vgg8", **dirs)
    assert res.returncode == 0, res.stderr
    assert [arg_value(c, "--path_t") for c in parse_commands(res.stdout)] == [
        f"{dirs['SAVE_DIR']}/models/{t}_cifar100_lr_0.05_decay_0.0005_trial_0/{t}_last.pth"
        for t in ("resnet56", "vgg13")]
    assert "teacher vgg13: " in res.stderr and "test top-1 42.00 (from summary.json 'last_acc')" in res.stderr


# --- fetch_teachers.sh ----------------------------------------------------------------

def make_archive(path, members):
    src = path.parent / (path.name + ".src")
    for name in members:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(name.encode())
    with tarfile.open(path, "w") as tar:
        for top in sorted({Path(m).parts[0] for m in members}):
            tar.add(src / top, arcname=top)
    return path


def test_fetch_teachers_unpacks_a_local_archive_into_the_expected_layout(tmp_path, dirs):
    members = [f"cifar_teachers/{t}_vanilla/ckpt_epoch_240.pth" for t in TEACHERS[:5]] + ["ResNet50.pth"]
    archive = make_archive(tmp_path / "cifar_teachers.tar", members)
    res = run_script(FETCH_TEACHERS, ARCHIVE=archive, SAVE_T=dirs["SAVE_T"])
    assert res.returncode == 0, res.stderr
    save_t = Path(dirs["SAVE_T"])
    for t in TEACHERS:
        assert (save_t / f"{t}_vanilla/ckpt_epoch_240.pth").is_file(), t
    assert (save_t / "resnet56_vanilla/ckpt_epoch_240.pth").read_bytes() == \
        b"cifar_teachers/resnet56_vanilla/ckpt_epoch_240.pth"
    assert sorted(p.name for p in save_t.iterdir()) == sorted(f"{t}_vanilla" for t in TEACHERS), \
        "no wrapper or temporary folder is left behind"
    res = run_script(RUN_DISTILL, DRY_RUN=1, **dirs)
    assert res.returncode == 0 and len(parse_commands(res.stdout)) == 12
    # everything present: no download
    res = run_script(FETCH_TEACHERS, SAVE_T=dirs["SAVE_T"], URL="http://127.0.0.1:9/none.tar")
    assert res.returncode == 0 and "already" in res.stdout


def test_fetch_teachers_warns_about_teachers_the_archive_lacks(tmp_path, dirs):
    archive = make_archive(tmp_path / "t.tar", ["save_t/resnet56_cifar100_lr_0.05_decay_0.0005_trial_0/ckpt_epoch_240.pth"])
    res = run_script(FETCH_TEACHERS, ARCHIVE=archive, SAVE_T=dirs["SAVE_T"])
    assert res.returncode == 0, res.stderr
    assert (Path(dirs["SAVE_T"]) / "resnet56_cifar100_lr_0.05_decay_0.0005_trial_0/ckpt_epoch_240.pth").is_file()
    assert "no checkpoint for: wrn_40_2 resnet110 resnet32x4 vgg13 ResNet50" in res.stderr


def test_fetch_teachers_errors(tmp_path, dirs):
    res = run_script(FETCH_TEACHERS, URL="http://127.0.0.1:9/cifar_teachers.tar", SAVE_T=dirs["SAVE_T"])
    assert res.returncode == 1
    assert "could not download" in res.stderr and "ARCHIVE=" in res.stderr
    assert list(Path(dirs["SAVE_T"]).iterdir()) == [], "no partial download is left"
    bad = tmp_path / "bad.tar"
    bad.write_text("not a tar archive")
    res = run_script(FETCH_TEACHERS, ARCHIVE=bad, SAVE_T=dirs["SAVE_T"])
    assert res.returncode == 1 and "cannot unpack" in res.stderr
    empty = make_archive(tmp_path / "empty.tar", ["readme.txt"])
    res = run_script(FETCH_TEACHERS, ARCHIVE=empty, SAVE_T=dirs["SAVE_T"])
    assert res.returncode == 1 and "no .pth checkpoint" in res.stderr
    res = run_script(FETCH_TEACHERS, ARCHIVE=tmp_path / "nope.tar", SAVE_T=dirs["SAVE_T"])
    assert res.returncode == 2 and "is not a file" in res.stderr


def test_gpus_per_run_groups_gpus_and_launches_torchrun(tmp_path):
    """GPUS_PER_RUN=2: each run sees two GPUs and starts under torchrun with 2 processes."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("sweep_for_test", SWEEP)
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    config = sweep.read_config({"GPUS": "0,1,2,3", "GPUS_PER_RUN": "2", "PYTHON": "python3"})
    assert config.gpus == ["0,1", "2,3"]
    assert config.launcher == ["python3", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    assert sweep.read_config({"GPUS": "0"}).launcher == ["python"]
    with pytest.raises(sweep.ConfigError, match="GPUS_PER_RUN=2 must divide"):
        sweep.read_config({"GPUS": "0,1,2", "GPUS_PER_RUN": "2"})


def test_variants_and_per_pair_weights_come_from_the_classes(dirs, sweep):
    """METHODS='kd kd+ls dkd+ls': the variant's flags, and the weights the class resolves for the pair
    (kd + LS: the LS authors' KD weight 9 for resnet56->resnet20, not kd's 0.9)."""
    make_teachers(dirs["SAVE_T"], ["resnet56"])
    res = sweep(DRY_RUN=1, METHODS="kd kd+ls dkd+ls", PAIRS="resnet56:resnet20", **dirs)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    kd, kd_ls, dkd_ls = (next(line for line in lines if f"--distill {m} " in line and (flag in line) == want)
                         for m, flag, want in (("kd", "--logit_stand", False), ("kd", "--logit_stand", True),
                                               ("dkd", "--logit_stand", True)))
    assert "-r 0.1 -a 0.9 -b 0" in kd
    assert "-a 9 " in kd_ls
    bad = sweep(DRY_RUN=1, METHODS="crd+ls", PAIRS="resnet56:resnet20", **dirs)
    assert bad.returncode == 2 and "no variant '+ls'" in bad.stderr
