"""scripts/summarize.py on hand-made run folders: table layout, statistics, unfinished
and broken runs, plots."""
import importlib.util
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "summarize.py"
_spec = importlib.util.spec_from_file_location("summarize", SCRIPT)
summarize = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(summarize)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(root, name, *, kind="student", model_s=None, model_t=None, distill=None, trial=0,
             epochs=240, model=None, teacher_acc=None, curve=(), last=None, best=None,
             weights=(1.0, None, None), metrics=True, raw_metrics=None):
    """A run folder as train_student.py / train_teacher.py write it."""
    folder = Path(root) / name
    folder.mkdir(parents=True)
    run = {"kind": kind, "trial": trial, "epochs": epochs}
    if kind == "student":
        run.update(model_s=model_s, model_t=model_t, distill=distill, teacher_acc=teacher_acc,
                   gamma=weights[0], alpha=weights[1], beta=weights[2])
    else:
        run.update(model=model)
    (folder / "run.json").write_text(json.dumps(run))
    if raw_metrics is not None:
        (folder / "metrics.jsonl").write_text(raw_metrics)
    elif metrics:
        (folder / "metrics.jsonl").write_text("".join(
            json.dumps({"epoch": e, "lr": 0.05, "train_loss": 1.0, "train_acc": 50.0, "test_loss": 1.0,
                        "test_acc": acc, "test_acc_top5": 90.0, "seconds": 1.0}) + "\n"
            for e, acc in enumerate(curve, start=1)))
    if last is not None:
        (folder / "summary.json").write_text(json.dumps(
            {"last_acc": last, "best_acc": best, "best_epoch": 1, "epochs": epochs}))
    return folder


@pytest.fixture
def save(tmp_path):
    """A sweep: 2 pairs, several methods and trials, a vanilla teacher and student, an
    unfinished run, a run without metrics, a cut-short metrics file, a broken run.json."""
    root = tmp_path / "save"
    sm = root / "student_model"
    for trial, (last, best) in enumerate([(72.0, 72.5), (72.5, 73.0), (73.0, 73.5)]):
        make_run(sm, f"S:resnet20_T:resnet56_cifar100_packd_r:1.0_a:1.0_b:0.8_{trial}", model_s="resnet20",
                 model_t="resnet56", distill="packd", trial=trial, teacher_acc=72.34, weights=(1.0, 1.0, 0.8),
                 curve=[60.0, 65.0, last], last=last, best=best)
    for trial, last in enumerate([70.0, 71.0]):
        make_run(sm, f"S:resnet20_T:resnet56_cifar100_kd_r:0.1_a:0.9_b:0.0_{trial}", model_s="resnet20",
                 model_t="resnet56", distill="kd", trial=trial, teacher_acc=72.34, weights=(0.1, 0.9, 0.0),
                 curve=[55.0, last], last=last, best=last + 0.25)
    make_run(sm, "S:vgg8_T:vgg13_cifar100_packd_r:1.0_a:1.0_b:0.8_0", model_s="vgg8", model_t="vgg13",
             distill="packd", teacher_acc=74.64, weights=(1.0, 1.0, 0.8), curve=[70.0, 75.0], last=75.0, best=75.5)
    # unfinished: 3 of 240 epochs, no summary.json
    make_run(sm, "S:vgg8_T:vgg13_cifar100_packd_r:1.0_a:1.0_b:0.8_1", model_s="vgg8", model_t="vgg13",
             distill="packd", trial=1, teacher_acc=74.64, weights=(1.0, 1.0, 0.8), curve=[30.0, 38.0, 43.0])
    # finished, but its metrics file is gone: averaged, reported
    make_run(sm, "S:vgg8_T:vgg13_cifar100_kd_r:0.1_a:0.9_b:0.0_0", model_s="vgg8", model_t="vgg13",
             distill="kd", teacher_acc=74.64, weights=(0.1, 0.9, 0.0), metrics=False, last=73.0, best=73.4)
    # a crash cut the last line of the metrics short: the run is unfinished, the line reported
    good = json.dumps({"epoch": 1, "test_acc": 20.0}) + "\n"
    make_run(sm, "S:vgg8_T:vgg13_cifar100_kd_r:0.1_a:0.9_b:0.0_1", model_s="vgg8", model_t="vgg13",
             distill="kd", trial=1, teacher_acc=74.64, weights=(0.1, 0.9, 0.0),
             raw_metrics=good + '{"epoch": 2, "test_a')
    broken = sm / "S:vgg8_T:vgg13_cifar100_kd_r:0.1_a:0.9_b:0.0_2"
    broken.mkdir()
    (broken / "run.json").write_text('{"kind": "stud')
    models = root / "models"
    make_run(models, "resnet56_cifar100_lr_0.05_decay_0.0005_trial_0", kind="teacher", model="resnet56",
             curve=[50.0, 72.3], last=72.3, best=72.6)
    make_run(models, "vgg8_cifar100_lr_0.05_decay_0.0005_trial_0", kind="teacher", model="vgg8",
             curve=[50.0, 70.36], last=70.36, best=70.5)
    make_run(models, "vgg8_cifar100_lr_0.05_decay_0.0005_trial_1", kind="teacher", model="vgg8",
             curve=[50.0, 70.64], last=70.64, best=70.7)
    return root


def section(text, title):
    """The markdown table under the heading `title` as a list of rows of cells."""
    lines = text.splitlines()
    start = lines.index(f"## {title}")
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def as_dict(rows):
    header, body = rows[0], rows[2:]
    return {row[0]: dict(zip(header[1:], row[1:])) for row in body}


def cell(values):
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f} (n={len(values)})"


def test_last_epoch_table(save):
    runs, problems = summarize.find_runs([str(save)])
    text = summarize.report(runs, problems, [str(save)])
    rows = section(text, "Last epoch")
    assert rows[0] == ["Teacher <br> Student", "resnet56 <br> resnet20", "vgg13 <br> vgg8"]
    assert set(rows[1]) == {":---:"}
    table = as_dict(rows)
    assert list(table) == ["Teacher", "Student", "KD", "PACKD"]
    assert table["PACKD"] == {"resnet56 <br> resnet20": cell([72.0, 72.5, 73.0]),
                              "vgg13 <br> vgg8": "75.00 (n=1)"}
    assert table["PACKD"]["resnet56 <br> resnet20"] == "72.50 ± 0.50 (n=3)"
    # the run without metrics counts, the unfinished and broken ones do not
    assert table["KD"] == {"resnet56 <br> resnet20": cell([70.0, 71.0]), "vgg13 <br> vgg8": "73.00 (n=1)"}
    # teacher: as the students measured it; student: the vanilla runs of the student model
    assert table["Teacher"] == {"resnet56 <br> resnet20": "72.34", "vgg13 <br> vgg8": "74.64"}
    assert table["Student"] == {"resnet56 <br> resnet20": "-", "vgg13 <br> vgg8": cell([70.36, 70.64])}


def test_best_epoch_table(save):
    runs, problems = summarize.find_runs([str(save)])
    table = as_dict(section(summarize.report(runs, problems, [str(save)]), "Best epoch"))
    assert table["PACKD"]["resnet56 <br> resnet20"] == cell([72.5, 73.0, 73.5])
    assert table["KD"]["resnet56 <br> resnet20"] == cell([70.25, 71.25])
    assert table["Student"]["vgg13 <br> vgg8"] == cell([70.5, 70.7])
    assert table["Teacher"]["vgg13 <br> vgg8"] == "74.64"


def test_teacher_row_falls_back_to_teacher_runs(tmp_path):
    make_run(tmp_path / "models", "resnet56_t0", kind="teacher", model="resnet56", curve=[72.0], last=72.0, best=72.0)
    make_run(tmp_path / "models", "resnet56_t1", kind="teacher", model="resnet56", curve=[73.0], last=73.0, best=73.0)
    make_run(tmp_path / "student_model", "s0", model_s="resnet20", model_t="resnet56", distill="kd",
             curve=[70.0], last=70.0, best=70.0)
    runs, problems = summarize.find_runs([str(tmp_path)])
    table = as_dict(section(summarize.report(runs, problems, [str(tmp_path)]), "Last epoch"))
    assert table["Teacher"]["resnet56 <br> resnet20"] == cell([72.0, 73.0])


def test_unfinished_runs_and_problems_are_listed(save):
    runs, problems = summarize.find_runs([str(save)])
    text = summarize.report(runs, problems, [str(save)])
    assert "10 finished run(s), 2 unfinished, 3 with problems" in text
    unfinished = text.split("## Unfinished runs")[1].split("## ")[0]
    assert "vgg13 → vgg8, PACKD, trial 1: epoch 3/240, test top-1 43.00" in unfinished
    assert "vgg13 → vgg8, KD, trial 1: epoch 1/240, test top-1 20.00" in unfinished
    assert unfinished.count("\n- ") == 2
    found = text.split("## Problems")[1]
    assert "S:vgg8_T:vgg13_cifar100_kd_r:0.1_a:0.9_b:0.0_0`: metrics.jsonl missing" in found
    assert "S:vgg8_T:vgg13_cifar100_kd_r:0.1_a:0.9_b:0.0_1`: metrics.jsonl: 1 unreadable line(s) skipped" in found
    assert "S:vgg8_T:vgg13_cifar100_kd_r:0.1_a:0.9_b:0.0_2`: run.json unreadable" in found
    vanilla = as_dict(section(text, "Vanilla (cross-entropy) runs"))
    assert vanilla["vgg8"] == {"last epoch": cell([70.36, 70.64]), "best epoch": cell([70.5, 70.7])}


def test_settings_that_differ_label_the_rows(tmp_path):
    sm = tmp_path / "student_model"
    common = dict(model_s="resnet8x4", model_t="resnet32x4", distill="crd", curve=[1.0], last=1.0, best=1.0)
    make_run(sm, "crd", weights=(1.0, 0.0, 0.8), **common)
    make_run(sm, "crd_kd", weights=(1.0, 1.0, 0.8), **common)
    make_run(sm, "crd_kd_short", weights=(1.0, 1.0, 0.8), epochs=1, **common)
    make_run(sm, "packd", **dict(common, distill="packd", model_s="myNet"))
    runs, problems = summarize.find_runs([str(tmp_path)])
    rows = section(summarize.report(runs, problems, [str(tmp_path)]), "Last epoch")
    # benchmark pairs first, in the benchmark's order, others after
    assert rows[0][1:] == ["resnet32x4 <br> resnet8x4", "resnet32x4 <br> myNet"]
    assert [r[0] for r in rows[2:]] == ["Teacher", "CRD (a=0, epochs=240)", "CRD (a=1, epochs=1)",
                                        "CRD (a=1, epochs=240)", "PACKD"]


def test_plots_one_png_per_pair(save, tmp_path):
    out = tmp_path / "plots"
    written = summarize.write_plots(summarize.find_runs([str(save)])[0], str(out))
    names = sorted(p.name for p in out.iterdir())
    assert names == ["resnet56_resnet20.png", "vanilla.png", "vgg13_vgg8.png"]
    assert sorted(Path(p).name for p in written) == names
    assert all((out / n).read_bytes()[:8] == PNG_MAGIC for n in names)


def test_command_line(save, tmp_path):
    out = tmp_path / "results.md"
    res = subprocess.run([sys.executable, str(SCRIPT), str(save), "--out", str(out), "--plots", str(tmp_path / "p")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "## Last epoch" in out.read_text() and (tmp_path / "p" / "vgg13_vgg8.png").is_file()
    res = subprocess.run([sys.executable, str(SCRIPT), str(save / "models")], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0 and "## Vanilla (cross-entropy) runs" in res.stdout
    assert "## Last epoch" not in res.stdout
    res = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "nope")], capture_output=True, text=True)
    assert res.returncode == 2 and "is not a folder" in res.stderr
    (tmp_path / "empty").mkdir()
    res = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "empty")], capture_output=True, text=True)
    assert res.returncode == 1 and "no run.json" in res.stderr


def test_without_matplotlib_only_plots_fail(save, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert summarize.main([str(save), "--out", str(tmp_path / "r.md")]) == 0
    assert summarize.main([str(save), "--out", str(tmp_path / "r.md"), "--plots", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --plots needs matplotlib (pip install matplotlib)"]
    assert (tmp_path / "r.md").is_file(), "the tables are written before the plots fail"
