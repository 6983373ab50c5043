"""The sweep scripts (run_distill.sh, run_vanilla.sh, fetch_teachers.sh) run under POSIX sh.

Training is replaced by a stand-in "interpreter" (PYTHON=...) that records its argv,
GPU and timing, and writes the run folder a real run would; so these tests check the
commands, the job pool, the skip rule and the teacher lookup without training anything.
"""
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

REPO = Path(__file__).resolve().parents[2]
RUN_DISTILL = REPO / "scripts" / "run_distill.sh"
RUN_VANILLA = REPO / "scripts" / "run_vanilla.sh"
FETCH_TEACHERS = REPO / "scripts" / "fetch_teachers.sh"

TEACHERS = ["wrn_40_2", "resnet56", "resnet110", "resnet32x4", "vgg13", "ResNet50"]
BENCHMARK_PAIRS = {
    ("wrn_40_2", "wrn_16_2"), ("wrn_40_2", "wrn_40_1"), ("resnet56", "resnet20"),
    ("resnet110", "resnet32"), ("resnet32x4", "resnet8x4"), ("vgg13", "vgg8"),
    ("vgg13", "MobileNetV2"), ("ResNet50", "MobileNetV2"), ("ResNet50", "vgg8"),
    ("resnet32x4", "ShuffleV1"), ("resnet32x4", "ShuffleV2"), ("wrn_40_2", "ShuffleV1"),
}
CONFIG_VARS = ["METHODS", "TRIALS", "PAIRS", "GPUS", "JOBS_PER_GPU", "SAVE_T", "SAVE_DIR",
               "LOG_DIR", "EXTRA_ARGS", "PYTHON", "DRY_RUN", "FORCE", "MODELS", "URL",
               "ARCHIVE", "CUDA_VISIBLE_DEVICES"]
SHELLS = [s for s in ("sh", "bash") if shutil.which(s)]  # sh is dash on Debian, bash on macOS

STAND_IN = r'''#!PYTHON_EXE
"""Stand-in for `python train_student.py|train_teacher.py ARGS`: records and fakes a run."""
import json, os, sys, time

script, args = sys.argv[1], sys.argv[2:]

def opt(*names, default=None):
    for i, a in enumerate(args[:-1]):
        if a in names:
            return args[i + 1]
    return default

start = time.time()
if os.environ.get("STANDIN_PIDS"):
    with open(os.environ["STANDIN_PIDS"], "a") as fh:
        fh.write(f"{os.getpid()}\n")
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
        # the PACKD authors' flags
        assert (arg_value(c, "-r"), arg_value(c, "-a"), arg_value(c, "-b")) == ("1", "1", "0.8")
        assert arg_value(c, "--alpha_aug") == "1" and arg_value(c, "--mixup_num") == "3"
    assert not Path(dirs["SAVE_DIR"]).exists(), "a dry run must not create anything"


def test_methods_and_trials_multiply_the_runs(dirs):
    make_teachers(dirs["SAVE_T"])
    res = run_script(RUN_DISTILL, DRY_RUN=1, METHODS="kd,crd nst", TRIALS=3, **dirs)
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
    assert weights == {"kd": "-r 0.1 -a 0.9 -b 0", "crd": "-a 0 -b 0.8", "nst": "-a 0 -b 50"}


def test_pairs_subset_and_extra_args(dirs):
    make_teachers(dirs["SAVE_T"])
    res = run_script(RUN_DISTILL, DRY_RUN=1, PAIRS="resnet56:resnet20,vgg13:vgg8",
                     EXTRA_ARGS="--epochs 1 --device cpu", PYTHON="python3 -u", **dirs)
    assert res.returncode == 0, res.stderr
    cmds = parse_commands(res.stdout)
    assert [(teacher_of(arg_value(c, "--path_t")), arg_value(c, "--model_s")) for c in cmds] == \
        [("resnet56", "resnet20"), ("vgg13", "vgg8")]
    for c in cmds:
        assert c[:3] == ["python3", "-u", "train_student.py"]
        assert c[-4:] == ["--epochs", "1", "--device", "cpu"]


@pytest.mark.parametrize("config, message", [
    ({"METHODS": "kd,magic"}, "unknown method 'magic'"),
    ({"PAIRS": "resnet56-resnet20"}, "not teacher:student"),
    ({"PAIRS": "resnet56:"}, "not teacher:student"),
    ({"TRIALS": "0"}, "TRIALS must be a positive integer"),
    ({"JOBS_PER_GPU": "x"}, "JOBS_PER_GPU must be a positive integer"),
    ({"GPUS": ","}, "GPUS must list at least one GPU id"),
])
def test_bad_configuration_is_a_one_line_error(dirs, config, message):
    make_teachers(dirs["SAVE_T"])
    res = run_script(RUN_DISTILL, DRY_RUN=1, **dirs, **config)
    assert res.returncode == 2
    assert message in res.stderr and res.stdout == ""


def test_help_and_unknown_argument():
    for script in (RUN_DISTILL, RUN_VANILLA, FETCH_TEACHERS):
        res = run_script(script, args=["-h"])
        assert res.returncode == 0 and "Usage:" in res.stdout, script
        assert "set -u" not in res.stdout
    res = run_script(RUN_DISTILL, args=["--oops"])
    assert res.returncode == 2 and "unknown argument '--oops'" in res.stderr


# --- teacher lookup -------------------------------------------------------------------

def test_teacher_lookup_order_and_layouts(dirs):
    save_t, save_dir = Path(dirs["SAVE_T"]), Path(dirs["SAVE_DIR"])
    # PACKD scripts' layout
    make_teachers(save_t, ["resnet56"], "{t}_cifar100_lr_0.05_decay_0.0005_trial_0/ckpt_epoch_240.pth")
    # released layout wins over the PACKD one
    make_teachers(save_t, ["vgg13"], "{t}_cifar100_lr_0.05_decay_0.0005_trial_0/ckpt_epoch_240.pth")
    make_teachers(save_t, ["vgg13"])
    # run_vanilla.sh output: finished (summary.json) -> <model>_last.pth
    make_teachers(save_dir / "models", ["resnet110"], "{t}_cifar100_lr_0.05_decay_0.0005_trial_0/{t}_last.pth")
    (save_dir / "models/resnet110_cifar100_lr_0.05_decay_0.0005_trial_0/summary.json").write_text("{}")
    # unfinished run_vanilla.sh output: only ckpt_epoch_240.pth counts, not <model>_last.pth
    make_teachers(save_dir / "models", ["wrn_40_2"], "{t}_cifar100_lr_0.05_decay_0.0005_trial_0/{t}_last.pth")
    make_teachers(save_dir / "models", ["wrn_40_2"], "{t}_cifar100_lr_0.05_decay_0.0005_trial_0/ckpt_epoch_240.pth")
    # unfinished and no epoch-240 checkpoint: not a teacher
    make_teachers(save_dir / "models", ["resnet32x4"], "{t}_cifar100_lr_0.05_decay_0.0005_trial_0/{t}_last.pth")
    pairs = "resnet56:resnet20,vgg13:vgg8,resnet110:resnet32,wrn_40_2:wrn_16_2,resnet32x4:resnet8x4"
    res = run_script(RUN_DISTILL, DRY_RUN=1, PAIRS=pairs, **dirs)
    paths = {arg_value(c, "--model_s"): arg_value(c, "--path_t") for c in parse_commands(res.stdout)}
    assert paths == {
        "resnet20": f"{save_t}/resnet56_cifar100_lr_0.05_decay_0.0005_trial_0/ckpt_epoch_240.pth",
        "vgg8": f"{save_t}/vgg13_vanilla/ckpt_epoch_240.pth",
        "resnet32": f"{save_dir}/models/resnet110_cifar100_lr_0.05_decay_0.0005_trial_0/resnet110_last.pth",
        "wrn_16_2": f"{save_dir}/models/wrn_40_2_cifar100_lr_0.05_decay_0.0005_trial_0/ckpt_epoch_240.pth",
    }
    assert res.returncode == 2 and "no checkpoint of teacher 'resnet32x4'" in res.stderr


def test_missing_teacher_is_reported_and_other_runs_go_on(dirs, standin):
    make_teachers(dirs["SAVE_T"], [t for t in TEACHERS if t != "resnet32x4"])
    res = run_script(RUN_DISTILL, DRY_RUN=1, TRIALS=2, **dirs)
    assert res.returncode == 2
    assert res.stderr.count("no checkpoint of teacher 'resnet32x4'") == 1, "one message per teacher"
    assert f"{dirs['SAVE_T']}/resnet32x4_vanilla/ckpt_epoch_240.pth" in res.stderr
    assert "fetch_teachers.sh" in res.stderr and "run_vanilla.sh" in res.stderr
    assert len(parse_commands(res.stdout)) == (12 - 3) * 2
    # a real sweep runs the others, then exits 2
    config, records = standin
    res = run_script(RUN_DISTILL, PAIRS="resnet32x4:resnet8x4,resnet56:resnet20", **dirs, **config)
    assert res.returncode == 2, res.stderr
    assert [r["args"][r["args"].index("--model_s") + 1] for r in records()] == ["resnet20"]


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
    assert "stand-in train_student.py" in (log_dir / f"{name}.log").read_text()
    assert (log_dir / f"{name}.done").is_file()
    assert len(list(log_dir.glob("*.log"))) == 8 and len(list(log_dir.glob("*.done"))) == 8
    folders = list((Path(dirs["SAVE_DIR"]) / "student_model").iterdir())
    assert len(folders) == 8 and all((f / "summary.json").is_file() for f in folders)


def test_jobs_per_gpu_bounds_concurrency(dirs, standin):
    make_teachers(dirs["SAVE_T"])
    config, records = standin
    res = run_script(RUN_DISTILL, TRIALS=4, PAIRS="resnet56:resnet20", GPUS="3", JOBS_PER_GPU=2,
                     STANDIN_SLEEP=1.0, **dirs, **config)
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


def test_finished_runs_are_skipped(dirs, standin):
    make_teachers(dirs["SAVE_T"])
    config, records = standin
    sweep = dict(PAIRS="resnet56:resnet20,vgg13:vgg8", EXTRA_ARGS="--epochs 1", **dirs, **config)
    assert run_script(RUN_DISTILL, **sweep).returncode == 0
    assert len(records()) == 2
    again = run_script(RUN_DISTILL, **sweep)
    assert again.returncode == 0
    assert len(records()) == 2, "finished runs are not run again"
    assert again.stderr.count("skip ") == 2 and "nothing to run" in again.stdout
    assert parse_commands(run_script(RUN_DISTILL, DRY_RUN=1, **sweep).stdout) == []
    # other arguments (here a longer schedule) make it a different run
    longer = dict(sweep, EXTRA_ARGS="--epochs 2", DRY_RUN=1)
    res = run_script(RUN_DISTILL, **longer)
    assert len(parse_commands(res.stdout)) == 2 and "finished with other arguments" in res.stderr
    assert len(parse_commands(run_script(RUN_DISTILL, FORCE=1, DRY_RUN=1, **sweep).stdout)) == 2
    # a new trial runs, the finished ones do not
    res = run_script(RUN_DISTILL, TRIALS=2, **sweep)
    assert res.returncode == 0 and len(records()) == 4


def test_failed_run_has_no_marker_and_fails_the_sweep(dirs, standin):
    make_teachers(dirs["SAVE_T"])
    config, records = standin
    sweep = dict(PAIRS="resnet56:resnet20,vgg13:vgg8", **dirs, **config)
    res = run_script(RUN_DISTILL, STANDIN_FAIL="vgg8", **sweep)
    assert res.returncode == 1
    assert "FAILED vgg13-vgg8_packd_trial_0 (exit 3)" in res.stderr
    assert "1 finished, 1 failed" in res.stdout
    logs = Path(dirs["SAVE_DIR"]) / "logs"
    assert (logs / "resnet56-resnet20_packd_trial_0.done").exists()
    assert not (logs / "vgg13-vgg8_packd_trial_0.done").exists()
    res = run_script(RUN_DISTILL, **sweep)  # only the failed run runs again
    assert res.returncode == 0 and len(records()) == 3


@pytest.mark.parametrize("shell", SHELLS)
def test_interrupting_the_sweep_stops_its_runs(dirs, standin, tmp_path, shell):
    make_teachers(dirs["SAVE_T"])
    config, records = standin
    pids = tmp_path / "pids"
    proc = subprocess.Popen([shell, str(RUN_DISTILL)], cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=clean_env(PAIRS="resnet56:resnet20,vgg13:vgg8", GPUS="0,1", STANDIN_SLEEP=60,
                                          STANDIN_PIDS=str(pids), **dirs, **config))
    deadline = time.time() + 20
    while time.time() < deadline and (not pids.exists() or len(pids.read_text().split()) < 2):
        time.sleep(0.05)
    children = [int(p) for p in pids.read_text().split()]
    assert len(children) == 2
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 130
    deadline = time.time() + 10
    alive = children
    while alive and time.time() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if Path(f"/proc/{p}").exists()
                 and "Z" not in Path(f"/proc/{p}/stat").read_text().split(")")[-1].split()[:1]]
    assert alive == [], "the training processes were left running"
    assert records() == [] and not list((Path(dirs["SAVE_DIR"]) / "logs").glob("*.done"))


# --- run_vanilla.sh -------------------------------------------------------------------

def test_vanilla_dry_run_trains_the_teachers_plus_named_models(dirs):
    res = run_script(RUN_VANILLA, args=["vgg8", "resnet56"], DRY_RUN=1, **dirs)
    assert res.returncode == 0, res.stderr
    cmds = parse_commands(res.stdout)
    assert [arg_value(c, "--model") for c in cmds] == TEACHERS + ["vgg8"]
    for c in cmds:
        assert c[:2] == ["python", "train_teacher.py"]
        assert arg_value(c, "--trial") == "0" and arg_value(c, "--save_dir") == dirs["SAVE_DIR"]
    res = run_script(RUN_VANILLA, args=["vgg8"], MODELS="", TRIALS=2, DRY_RUN=1, **dirs)
    assert [(arg_value(c, "--model"), arg_value(c, "--trial")) for c in parse_commands(res.stdout)] == \
        [("vgg8", "0"), ("vgg8", "1")]
    res = run_script(RUN_VANILLA, MODELS="", DRY_RUN=1, **dirs)
    assert res.returncode == 2 and "no model to train" in res.stderr
    res = run_script(RUN_VANILLA, args=["--epochs"], DRY_RUN=1, **dirs)
    assert res.returncode == 2 and "unknown option" in res.stderr


def test_vanilla_teachers_feed_the_distillation_sweep(dirs, standin):
    config, records = standin
    res = run_script(RUN_VANILLA, MODELS="resnet56 vgg13", GPUS="0,1", EXTRA_ARGS="--epochs 2", **dirs, **config)
    assert res.returncode == 0, res.stdout + res.stderr
    assert sorted(arg_value(r["args"], "--model") for r in records()) == ["resnet56", "vgg13"]
    logs = Path(dirs["SAVE_DIR"]) / "logs"
    assert (logs / "teacher_vgg13_trial_0.done").exists() and (logs / "teacher_vgg13_trial_0.log").exists()
    again = run_script(RUN_VANILLA, MODELS="resnet56 vgg13", EXTRA_ARGS="--epochs 2", **dirs, **config)
    assert again.returncode == 0 and len(records()) == 2
    # no save_t: run_distill.sh takes the teachers run_vanilla.sh trained
    res = run_script(RUN_DISTILL, DRY_RUN=1, PAIRS="resnet56:resnet20,vgg13:vgg8", **dirs)
    assert res.returncode == 0, res.stderr
    assert [arg_value(c, "--path_t") for c in parse_commands(res.stdout)] == [
        f"{dirs['SAVE_DIR']}/models/{t}_cifar100_lr_0.05_decay_0.0005_trial_0/{t}_last.pth"
        for t in ("resnet56", "vgg13")]


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
