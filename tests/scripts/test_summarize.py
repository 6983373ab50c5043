"""scripts/summarize.py on hand-made run folders: table layout, statistics, unfinished
and broken runs, plots, the linear-probe transfer tables (eval_rep.py's run folders)."""
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
             weights=(1.0, None, None), metrics=True, raw_metrics=None, identity=None, generated=None,
             path_t=None, forward_only=(), extra=None):
    """A run folder as train_student.py / train_teacher.py write it. Older runs: no identity,
    no generated_data; newer ones pass `identity` and `generated`."""
    folder = Path(root) / name
    folder.mkdir(parents=True)
    run = {"kind": kind, "trial": trial, "epochs": epochs}
    if kind == "student":
        run.update(model_s=model_s, model_t=model_t, distill=distill, teacher_acc=teacher_acc,
                   gamma=weights[0], alpha=weights[1], beta=weights[2])
        if path_t is not None:
            run["path_t"] = path_t
    else:
        run.update(model=model)
    if identity is not None:
        run["identity"] = identity
    if generated is not None:
        run["generated_data"] = generated
    run.update(extra or {})
    (folder / "run.json").write_text(json.dumps(run))
    if raw_metrics is not None:
        (folder / "metrics.jsonl").write_text(raw_metrics)
    elif metrics:
        (folder / "metrics.jsonl").write_text("".join(
            json.dumps({"epoch": e, "lr": 0.05, "train_loss": 1.0, "train_acc": 50.0, "test_loss": 1.0,
                        "test_acc": acc, "test_acc_top5": 90.0, "seconds": 1.0,
                        **({"forward_only": True} if e in forward_only else {})}) + "\n"
            for e, acc in enumerate(curve, start=1)))
    if last is not None:
        (folder / "summary.json").write_text(json.dumps(
            {"last_acc": last, "best_acc": best, "best_epoch": 1, "epochs": epochs}))
    return folder


FP_A, FP_B = "0123456789abcdef", "fedcba9876543210"
SETTINGS = {"epochs": 240, "few_ratio": 1.0, "gamma": 1.0, "alpha": 1.0, "beta": 0.8, "alpha_aug": 1.0,
            "kd_T": 4.0, "learning_rate": 0.05, "lr_decay_epochs": [150, 180, 210]}


def new_student(root, name, *, model_t="resnet56", model_s="resnet20", distill="packd", trial=0, acc=70.0,
                fp=FP_A, teacher_acc=72.34, path_t="save_t/resnet56_vanilla/ckpt_epoch_240.pth",
                generated=False, finished=True, curve=None, forward_only=(), **settings):
    """A run as the current train_student.py writes it: identity with the teacher's fingerprint
    and every setting (the seed is the trial's), generated_data."""
    values = {**SETTINGS, "seed": trial, **settings}
    identity = {"kind": "student", "model_s": model_s, "model_t": model_t, "distill": distill,
                "teacher_weights": fp, "settings": values}
    return make_run(root, name, model_s=model_s, model_t=model_t, distill=distill, trial=trial,
                    epochs=values["epochs"], teacher_acc=teacher_acc, path_t=path_t, identity=identity,
                    generated=generated, weights=(values["gamma"], values["alpha"], values["beta"]),
                    curve=curve if curve is not None else [acc], forward_only=forward_only,
                    last=acc if finished else None, best=acc if finished else None,
                    extra={"alpha_aug": values["alpha_aug"], "kd_T": values["kd_T"], "seed": trial})


def new_teacher(root, name, *, model="resnet56", trial=0, acc=72.0, generated=False, **settings):
    values = {"epochs": 240, "few_ratio": 1.0, "learning_rate": 0.05, "seed": trial, **settings}
    identity = {"kind": "teacher", "model": model, "dataset": "cifar100", "settings": values}
    return make_run(root, name, kind="teacher", model=model, trial=trial, epochs=values["epochs"],
                    identity=identity, generated=generated, curve=[acc], last=acc, best=acc)


class FakeMethod:
    def __init__(self, display_name=None, table_order=None):
        if display_name is not None:
            self.display_name = display_name
        if table_order is not None:
            self.table_order = table_order


# The method registry as distiller_zoo.METHODS gives it (display_name, table_order), so these
# tests do not depend on importing torch and the method files; one test reads the real one.
FAKE_METHODS = {name: FakeMethod(display, 10 * i) for i, (name, display) in enumerate([
    ("kd", "KD"), ("hint", "FitNet"), ("attention", "AT"), ("similarity", "SP"), ("correlation", "CC"),
    ("vid", "VID"), ("rkd", "RKD"), ("pkt", "PKT"), ("abound", "AB"), ("factor", "FT"), ("fsp", "FSP"),
    ("nst", "NST"), ("kdsvd", "KDSVD"), ("crd", "CRD"), ("packd", "PACKD")], start=1)}


@pytest.fixture(autouse=True)
def registry(monkeypatch):
    """summarize's method registry, replaceable per test: returns the dict in use."""
    methods = dict(FAKE_METHODS)
    monkeypatch.setattr(summarize.methods, "_registry", methods)
    monkeypatch.setattr(summarize.methods, "_registry_problem", None)
    return methods


def report_of(root):
    runs, problems = summarize.find_runs([str(root)])
    return summarize.report(runs, problems, [str(root)])


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


def section(text, title, level="##"):
    """The markdown table under the heading `title` as a list of rows of cells."""
    lines = text.splitlines()
    start = lines.index(f"{level} {title}")
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def section_text(text, title, level="##"):
    """Everything under the heading `title` up to the next heading."""
    lines = text.splitlines()
    start = lines.index(f"{level} {title}")
    out = []
    for line in lines[start + 1:]:
        if line.startswith("#"):
            break
        out.append(line)
    return "\n".join(out)


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
    # (label format changed from 'CRD (a=0, epochs=240)' to the brackets of the split rows)
    assert [r[0] for r in rows[2:]] == ["Teacher", "CRD [a:0, epochs:240]", "CRD [a:1, epochs:1]",
                                        "CRD [a:1, epochs:240]", "PACKD"]


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


# --- 1. only runs of the same experiment are averaged --------------------------------

R56 = "resnet56 <br> resnet20"


def test_runs_of_different_experiments_are_never_averaged(tmp_path):
    sm = tmp_path / "student_model"
    new_student(sm, "packd_0", trial=0, acc=72.0)
    new_student(sm, "packd_1", trial=1, acc=73.0)  # differs only by seed/trial: averaged
    new_student(sm, "packd_short", acc=10.0, epochs=1)
    new_student(sm, "packd_noaug", acc=71.0, alpha_aug=0.0)
    new_student(sm, "packd_few", acc=50.0, few_ratio=0.25)
    new_student(sm, "packd_T", acc=60.0, kd_T=2.0)  # any setting of identity.settings counts
    new_student(sm, "kd_0", distill="kd", acc=70.0, trial=0)
    new_student(sm, "kd_1", distill="kd", acc=71.0, trial=1)
    text = report_of(tmp_path)
    table = as_dict(section(text, "Last epoch"))
    assert list(table) == ["Teacher", "KD", "PACKD [ag:0, epochs:240, few-ratio:1, kd_T:4]",
                           "PACKD [ag:1, epochs:1, few-ratio:1, kd_T:4]",
                           "PACKD [ag:1, epochs:240, few-ratio:0.25, kd_T:4]",
                           "PACKD [ag:1, epochs:240, few-ratio:1, kd_T:2]",
                           "PACKD [ag:1, epochs:240, few-ratio:1, kd_T:4]"]
    assert table["PACKD [ag:1, epochs:240, few-ratio:1, kd_T:4]"][R56] == cell([72.0, 73.0])
    assert table["PACKD [ag:1, epochs:1, few-ratio:1, kd_T:4]"][R56] == "10.00 (n=1)"
    assert table["PACKD [ag:0, epochs:240, few-ratio:1, kd_T:4]"][R56] == "71.00 (n=1)"
    assert table["KD"][R56] == cell([70.0, 71.0])
    below = section_text(text, "Last epoch")
    assert ("- PACKD on resnet56 → resnet20: 5 distinct experiments (differing in alpha_aug, epochs, few_ratio, "
            "kd_T), shown in separate rows, not averaged.") in below
    assert "never averaged together" in below and "- KD on" not in below


def test_settings_shown_only_where_they_differ_and_across_pairs(tmp_path):
    sm = tmp_path / "student_model"
    new_student(sm, "a", acc=72.0)
    new_student(sm, "b", model_t="vgg13", model_s="vgg8", acc=5.0, epochs=1, fp=FP_B)
    table = as_dict(section(report_of(tmp_path), "Last epoch"))
    # no (pair, method) holds two experiments, but one row must not claim both are the same
    assert table["PACKD [epochs:1]"] == {R56: "-", "vgg13 <br> vgg8": "5.00 (n=1)"}
    assert table["PACKD [epochs:240]"] == {R56: "72.00 (n=1)", "vgg13 <br> vgg8": "-"}


def test_older_runs_compare_by_their_recorded_flags(tmp_path):
    """run.json without identity: the settings the newer runs' identities name are read from
    its flags, so an older vanilla run of the same settings is averaged with a newer one."""
    models = tmp_path / "models"
    new_teacher(models, "new", acc=72.0)
    make_run(models, "old", kind="teacher", model="resnet56", trial=1, curve=[73.0], last=73.0, best=73.0,
             extra={"few_ratio": 1.0, "learning_rate": 0.05, "dataset": "cifar100", "seed": 1})
    make_run(models, "old_lr", kind="teacher", model="resnet56", trial=2, curve=[60.0], last=60.0, best=60.0,
             extra={"few_ratio": 1.0, "learning_rate": 0.1, "dataset": "cifar100"})
    vanilla = as_dict(section(report_of(tmp_path), "Vanilla (cross-entropy) runs"))
    assert vanilla == {"resnet56 [learning_rate:0.05]": {"last epoch": cell([72.0, 73.0]),
                                                         "best epoch": cell([72.0, 73.0])},
                       "resnet56 [learning_rate:0.1]": {"last epoch": "60.00 (n=1)", "best epoch": "60.00 (n=1)"}}


def test_vanilla_runs_group_by_settings_except_seed(tmp_path):
    models = tmp_path / "models"
    new_teacher(models, "r56_0", trial=0, acc=72.0)
    new_teacher(models, "r56_1", trial=1, acc=73.0)
    new_teacher(models, "r56_short", acc=20.0, epochs=2)
    new_teacher(models, "r20_0", model="resnet20", acc=69.0)
    new_teacher(models, "r20_short", model="resnet20", acc=15.0, epochs=2)
    new_student(tmp_path / "student_model", "kd", distill="kd", acc=70.0)
    text = report_of(tmp_path)
    vanilla = as_dict(section(text, "Vanilla (cross-entropy) runs"))
    assert vanilla["resnet56 [epochs:240]"]["last epoch"] == cell([72.0, 73.0])
    assert vanilla["resnet56 [epochs:2]"]["last epoch"] == "20.00 (n=1)"
    assert "never averaged together: resnet20, resnet56" in section_text(text, "Vanilla (cross-entropy) runs")
    table = as_dict(section(text, "Last epoch"))
    # the Student row: one row per experiment of the student model's vanilla runs
    assert table["Student [epochs:2]"][R56] == "15.00 (n=1)"
    assert table["Student [epochs:240]"][R56] == "69.00 (n=1)"


def test_teacher_fallback_does_not_average_different_experiments(tmp_path):
    models = tmp_path / "models"
    make_run(models, "r56_0", kind="teacher", model="resnet56", curve=[72.0], last=72.0, best=72.0)
    make_run(models, "r56_short", kind="teacher", model="resnet56", epochs=2, curve=[20.0], last=20.0, best=20.0)
    make_run(tmp_path / "student_model", "s0", model_s="resnet20", model_t="resnet56", distill="kd",
             curve=[70.0], last=70.0, best=70.0)
    text = report_of(tmp_path)
    assert as_dict(section(text, "Last epoch"))["Teacher"][R56] == "-"
    assert "2 different vanilla experiments of resnet56, not guessed" in section_text(text, "Last epoch")


# --- 2. the teachers used, under every table -----------------------------------------

def test_every_table_names_its_teachers(tmp_path):
    sm = tmp_path / "student_model"
    new_student(sm, "a0", trial=0, acc=72.0)
    new_student(sm, "a1", trial=1, acc=73.0, path_t="save/models/r56_copy/resnet56_last.pth")  # same weights
    new_student(sm, "v", model_t="vgg13", model_s="vgg8", fp=FP_B, teacher_acc=74.64,
                path_t="save_t/vgg13_vanilla/ckpt_epoch_240.pth")
    text = report_of(tmp_path)
    for title in ("Last epoch", "Best epoch"):
        below = section_text(text, title)
        assert ("- resnet56 → resnet20: T1 `save/models/r56_copy/resnet56_last.pth`, "
                "`save_t/resnet56_vanilla/ckpt_epoch_240.pth`, weights 0123456789abcdef, top-1 72.34, "
                "2 student run(s)") in below
        assert ("- vgg13 → vgg8: T1 `save_t/vgg13_vanilla/ckpt_epoch_240.pth`, weights fedcba9876543210, "
                "top-1 74.64, 1 student run(s)") in below
    table = as_dict(section(text, "Last epoch"))
    assert table["PACKD"][R56] == cell([72.0, 73.0])  # one teacher: one row
    assert table["Teacher"] == {R56: "72.34", "vgg13 <br> vgg8": "74.64"}


def test_students_of_several_teachers_are_kept_apart(tmp_path):
    sm = tmp_path / "student_model"
    new_student(sm, "a0", trial=0, acc=72.0)
    new_student(sm, "a1", trial=1, acc=73.0)
    new_student(sm, "b0", acc=60.0, fp=FP_B, teacher_acc=65.5, path_t="save/models/r56_short/resnet56_last.pth")
    new_student(sm, "v", model_t="vgg13", model_s="vgg8", fp="1111111111111111", teacher_acc=74.64)
    text = report_of(tmp_path)
    table = as_dict(section(text, "Last epoch"))
    assert table["PACKD [T1]"] == {R56: cell([72.0, 73.0]), "vgg13 <br> vgg8": "70.00 (n=1)"}
    assert table["PACKD [T2]"] == {R56: "60.00 (n=1)", "vgg13 <br> vgg8": "-"}
    assert table["Teacher"][R56] == "T1: 72.34, T2: 65.50"
    below = section_text(text, "Best epoch")
    line = next(l for l in below.splitlines() if l.startswith("- resnet56 → resnet20:"))
    assert "T1 `save_t/resnet56_vanilla/ckpt_epoch_240.pth`, weights 0123456789abcdef, top-1 72.34, 2" in line
    assert "T2 `save/models/r56_short/resnet56_last.pth`, weights fedcba9876543210, top-1 65.50, 1" in line
    assert "used 2 different teachers" in line
    assert "- PACKD on resnet56 → resnet20: 2 distinct experiments (differing in teacher)" in below


def test_older_runs_without_fingerprint(tmp_path):
    """No fingerprint recorded: teachers told apart by path and measured accuracy, and said so."""
    sm = tmp_path / "student_model"
    for trial in (0, 1):
        make_run(sm, f"old{trial}", model_s="resnet20", model_t="resnet56", distill="kd", trial=trial,
                 teacher_acc=72.34, path_t="save_t/r56.pth", curve=[70.0 + trial], last=70.0 + trial,
                 best=70.0 + trial)
    make_run(sm, "other", model_s="resnet20", model_t="resnet56", distill="kd", teacher_acc=71.0,
             path_t="save_t/r56.pth", curve=[65.0], last=65.0, best=65.0)
    text = report_of(tmp_path)
    table = as_dict(section(text, "Last epoch"))
    assert {k: v[R56] for k, v in table.items()} == {
        "Teacher": "T1: 71.00, T2: 72.34", "KD [T1]": "65.00 (n=1)", "KD [T2]": cell([70.0, 71.0])}
    assert "T2 `save_t/r56.pth`, weights fingerprint not recorded (older run), top-1 72.34, 2" in text


# --- 3. generated data -------------------------------------------------------------------

def test_generated_data_runs_have_their_own_section(tmp_path):
    sm = tmp_path / "student_model"
    new_student(sm, "real", acc=72.0)
    new_student(sm, "gen0", trial=0, acc=5.0, generated=True)
    new_student(sm, "gen1", trial=1, acc=7.0, generated=True)
    # recorded in summary.json only
    folder = new_student(sm, "gen_summary", distill="kd", acc=3.0, generated=None)
    summary = json.loads((folder / "summary.json").read_text())
    (folder / "summary.json").write_text(json.dumps({**summary, "generated_data": True}))
    new_teacher(tmp_path / "models", "t_gen", acc=4.0, generated=True)
    text = report_of(tmp_path)
    real = as_dict(section(text, "Last epoch"))
    assert real == {"Teacher": {R56: "72.34"}, "PACKD": {R56: "72.00 (n=1)"}}
    assert "\n## Vanilla (cross-entropy) runs" not in text
    assert text.count("\n## ") == 3  # Last epoch, Best epoch, the generated section
    generated = text.split("\n## Runs on GENERATED data (not CIFAR-100; for trying the code only)\n")[1]
    gen = as_dict(section(generated, "Last epoch (GENERATED data)", "###"))
    assert gen["PACKD"][R56] == cell([5.0, 7.0]) and gen["KD"][R56] == "3.00 (n=1)"
    vanilla = as_dict(section(generated, "Vanilla (cross-entropy) runs (GENERATED data)", "###"))
    assert vanilla == {"resnet56": {"last epoch": "4.00 (n=1)", "best epoch": "4.00 (n=1)"}}
    assert "4 run(s) trained on GENERATED data" in text
    assert "do not record whether" not in text  # every real run here says it is real


def test_runs_without_the_flag_are_taken_as_real_but_not_claimed(save):
    runs, problems = summarize.find_runs([str(save)])
    assert all(r.generated is None for r in runs)
    text = summarize.report(runs, problems, [str(save)])
    assert "12 run(s) here do not record whether their data was CIFAR-100 or generated" in text
    assert "GENERATED data" not in text.split("do not record")[1]


# --- 4. method names from the method classes ---------------------------------------------

def test_method_names_and_order_come_from_the_registry(tmp_path, registry):
    registry["newmethod"] = FakeMethod("NewM", 5)       # a new method file: no other edit needed
    registry["plain"] = FakeMethod()                     # no display_name / table_order: defaults
    sm = tmp_path / "student_model"
    for distill in ("packd", "kd", "newmethod", "plain", "oldmethod"):
        new_student(sm, distill, distill=distill)
    rows = section(report_of(tmp_path), "Last epoch")
    # table_order, then name; "plain" at the default 1000; unknown to the registry last, raw name
    assert [r[0] for r in rows[3:]] == ["NewM", "KD", "PACKD", "plain", "oldmethod"]


def test_without_distiller_zoo_raw_names(save, monkeypatch):
    monkeypatch.setitem(sys.modules, "distiller_zoo", None)  # import distiller_zoo -> ImportError
    monkeypatch.setattr(summarize.methods, "_registry", None)
    text = report_of(save)
    assert [r[0] for r in section(text, "Last epoch")[2:]] == ["Teacher", "Student", "kd", "packd"]
    assert "Method names are the raw --distill names: distiller_zoo could not be imported (ModuleNotFoundError" in text


def test_real_registry(monkeypatch):
    try:
        from distiller_zoo import METHODS
    except Exception as e:  # noqa: BLE001 (torch missing, or a method file mid-edit)
        pytest.skip(f"distiller_zoo not importable: {e}")
    monkeypatch.setattr(summarize.methods, "_registry", None)
    for name, cls in METHODS.items():
        assert summarize.method_name(name) == getattr(cls, "display_name", name)
    order = sorted(METHODS, key=summarize.method_order)
    assert order == sorted(METHODS, key=lambda n: (getattr(METHODS[n], "table_order", 1000), n))
    assert summarize.method_name("no_such_method") == "no_such_method"
    assert summarize.method_order("no_such_method") > summarize.method_order(order[-1])


def test_command_line_from_another_folder_uses_the_method_classes(save, tmp_path):
    res = subprocess.run([sys.executable, str(SCRIPT), str(save)], capture_output=True, text=True, timeout=120,
                         cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    if "could not be imported" in res.stdout:  # the registry itself is broken: only sys.path is checked
        assert "No module named 'distiller_zoo'" not in res.stdout
    else:
        assert [r[0] for r in section(res.stdout, "Last epoch")[2:]] == ["Teacher", "Student", "KD", "PACKD"]


# --- 5. plots ------------------------------------------------------------------------------

def test_plot_data_drops_forward_only_epochs(tmp_path):
    sm = tmp_path / "student_model"
    new_student(sm, "packd", curve=[1.0, 40.0, 50.0, 60.0], forward_only=(1,), acc=60.0)
    new_student(sm, "kd", distill="kd", curve=[41.0, 51.0, 61.0], acc=61.0)
    new_student(sm, "gen", distill="kd", curve=[5.0], acc=5.0, generated=True)
    new_teacher(tmp_path / "models", "t", acc=72.0)
    plots = {p["name"]: p for p in summarize.plot_data(summarize.find_runs([str(tmp_path)])[0])}
    assert sorted(plots) == ["generated_resnet56_resnet20", "resnet56_resnet20", "vanilla"]
    lines = {l["group"]: l for l in plots["resnet56_resnet20"]["lines"]}
    assert lines["PACKD"]["x"] == [1, 2, 3] and lines["PACKD"]["y"] == [40.0, 50.0, 60.0]
    assert lines["KD"]["x"] == [1, 2, 3] and lines["KD"]["y"] == [41.0, 51.0, 61.0]
    assert "GENERATED" in plots["generated_resnet56_resnet20"]["title"]
    assert plots["vanilla"]["lines"][0]["x"] == [1]


def test_plot_curve_renumbers_after_every_forward_only_epoch():
    run = summarize.Run(folder="f", kind="student", model="s", trial="0", epochs=5,
                        curve=[(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)], forward_only=frozenset({1, 3}))
    assert summarize.plot_curve(run) == ([1, 2], [2.0, 4.0])
    run.forward_only = frozenset()
    assert summarize.plot_curve(run) == ([1, 2, 3, 4], [1.0, 2.0, 3.0, 4.0])


def test_plots_integer_epochs_and_overlaps_visible(tmp_path, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    sm = tmp_path / "student_model"
    same = [40.0, 50.0, 60.0]
    new_student(sm, "packd", curve=[1.0] + same, forward_only=(1,), acc=60.0)
    new_student(sm, "kd", distill="kd", curve=same, acc=60.0)  # exactly under PACKD's curve
    figures, close = [], plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: (figures.append(fig), close(fig)))
    written = summarize.write_plots(summarize.find_runs([str(tmp_path)])[0], str(tmp_path / "p"))
    assert [Path(p).name for p in written] == ["resnet56_resnet20.png"]
    assert Path(written[0]).read_bytes()[:8] == PNG_MAGIC
    (ax,) = figures[0].axes
    assert isinstance(ax.xaxis.get_major_locator(), MaxNLocator)
    assert all(float(t).is_integer() for t in ax.get_xticks())
    kd, packd = ax.get_lines()
    assert list(kd.get_xdata()) == list(packd.get_xdata()) == [1, 2, 3]
    assert kd.get_marker() != packd.get_marker() and kd.get_linestyle() != packd.get_linestyle()
    assert kd.get_markerfacecolor() == "none" and packd.get_alpha() < 1


# --- 6. few-shot students are labelled as such ----------------------------------------------

def test_few_shot_runs_are_labelled_even_alone(tmp_path):
    """A few-shot sweep alone (run_few_shot.sh with one ratio) must not look like full-data runs."""
    sm = tmp_path / "student_model"
    new_student(sm, "few_0", trial=0, acc=50.0, few_ratio=0.25)
    new_student(sm, "few_1", trial=1, acc=52.0, few_ratio=0.25)
    new_student(sm, "kd", distill="kd", acc=70.0)  # full data: no label
    new_teacher(tmp_path / "models", "r20_few", model="resnet20", acc=40.0, few_ratio=0.5)
    text = report_of(tmp_path)
    table = as_dict(section(text, "Last epoch"))
    assert list(table) == ["Teacher", "Student [few-ratio:0.5]", "KD", "PACKD [few-ratio:0.25]"]
    assert table["PACKD [few-ratio:0.25]"][R56] == cell([50.0, 52.0])
    assert "few-ratio: --few-ratio, the fraction of the training set used, shown whenever below 1" in text
    vanilla = section_text(text, "Vanilla (cross-entropy) runs")
    assert "| resnet20 [few-ratio:0.5] |" in vanilla and "shown whenever below 1" in vanilla
    assert "never averaged together" not in vanilla  # one experiment per model: nothing was split


# --- 7. representation transfer (eval_rep.py's linear probes) -------------------------------

def student_info(model_t="resnet32x4", model_s="resnet8x4", distill="packd", trial=0, fp=FP_A,
                 path_t="save_t/resnet32x4_vanilla/ckpt_epoch_240.pth", generated=False, **settings):
    """The copy of a student's run.json that eval_rep.py keeps in the probe's run.json (`student`)."""
    values = {**SETTINGS, "seed": trial, **settings}
    return {"kind": "student", "model_s": model_s, "model_t": model_t, "distill": distill, "trial": trial,
            "gamma": values["gamma"], "alpha": values["alpha"], "beta": values["beta"],
            "few_ratio": values["few_ratio"], "epochs": values["epochs"], "generated_data": generated,
            "path_t": path_t, "identity": {"kind": "student", "model_s": model_s, "model_t": model_t,
                                           "distill": distill, "teacher_weights": fp, "settings": values}}


def vanilla_info(model="resnet32x4", trial=0, **settings):
    """The copy of a vanilla (train_teacher.py) run's run.json."""
    values = {"epochs": 240, "few_ratio": 1.0, "learning_rate": 0.05, "seed": trial, **settings}
    return {"kind": "teacher", "model": model, "trial": trial, "epochs": values["epochs"],
            "few_ratio": values["few_ratio"], "generated_data": False,
            "identity": {"kind": "teacher", "model": model, "dataset": "cifar100", "settings": values}}


PROBE_SETTINGS = {"batch_size": 64, "epochs": 100, "learning_rate": 0.1, "lr_decay_epochs": [30, 60, 90],
                  "lr_decay_rate": 0.1, "momentum": 0.9, "nesterov": True, "warmup_epoch": 0, "weight_decay": 0.0}


def new_probe(root, name, *, student=None, model_s=None, dataset="STL-10", trial=0, acc=60.0, best=None,
              weights="5555555555555555", checkpoint="best", generated=False, finished=True, curve=None,
              student_checkpoint=None, **probe):
    """A run folder as eval_rep.py writes it (save/transfer/<dataset>_<student run>[_<ckpt>]_<trial>/):
    run.json (kind transfer, the probe's flags, identity, a copy of the student's run.json),
    metrics.jsonl, summary.json."""
    student = {} if student is None else student
    model_s = model_s or student.get("model_s") or student.get("model")
    values = {**PROBE_SETTINGS, "seed": trial, **probe}
    best = acc if best is None else best
    run_name = name
    tag = "" if checkpoint == "best" else f"_{checkpoint}"
    folder = Path(root) / "transfer" / f"{dataset}_{run_name}{tag}_{trial}"
    folder.mkdir(parents=True)
    identity = {"kind": "transfer", "dataset": dataset, "model_s": model_s, "student_weights": weights,
                "generated_data": generated, "settings": values}
    info = {**values, "trial": str(trial), "dataset": dataset, "data_folder": "./data", "save_dir": "save",
            "device": "cpu", "checkpoint": checkpoint, "kind": "transfer", "recipe": "smuelpeng/PACKD",
            "model_s": model_s, "student_checkpoint": student_checkpoint or f"save/student_model/{run_name}/"
                                                                         f"{model_s}_{checkpoint}.pth",
            "student_weights": weights, "student_run": run_name, "student_checkpoint_tag": checkpoint,
            "student": student, "num_classes": 10, "generated_data": generated, "identity": identity}
    (folder / "run.json").write_text(json.dumps(info))
    curve = curve if curve is not None else [acc]
    (folder / "metrics.jsonl").write_text("".join(
        json.dumps({"epoch": e, "lr": 0.1, "train_loss": 1.0, "train_acc": 50.0, "test_loss": 1.0, "test_acc": a,
                    "test_acc_top5": 90.0, "seconds": 1.0}) + "\n" for e, a in enumerate(curve, start=1)))
    if finished:
        (folder / "summary.json").write_text(json.dumps(
            {"last_acc": acc, "best_acc": best, "best_epoch": 1, "epochs": values["epochs"], "last_acc_top5": 90.0,
             "dataset": dataset, "model_s": model_s, "student_run": run_name, "student_weights": weights,
             "generated_data": generated}))
    return folder


STL = "Representation transfer: linear probe on STL-10, test top-1 %"
TINY = "Representation transfer: linear probe on Tiny-ImageNet-200, test top-1 %"
R32 = "resnet32x4 <br> resnet8x4"


def test_transfer_tables_per_data_set(tmp_path):
    for trial, (last, best) in enumerate([(70.0, 71.0), (71.0, 71.5), (72.0, 72.0)]):
        new_probe(tmp_path, f"packd_{trial}", student=student_info(trial=trial), acc=last, best=best)
    new_probe(tmp_path, "kd_0", student=student_info(distill="kd"), acc=65.0, best=66.0)
    new_probe(tmp_path, "r20", student=student_info("resnet56", "resnet20", fp=FP_B), acc=55.0)
    new_probe(tmp_path, "packd_0", student=student_info(), dataset="TinyImageNet200", acc=30.0)
    new_probe(tmp_path, "packd_1", student=student_info(trial=1), dataset="TinyImageNet200", acc=32.0)
    text = report_of(tmp_path)
    assert "7 finished run(s), 0 unfinished, 0 with problems" in text
    assert "\n## Last epoch" not in text  # no CIFAR-100 run here: no CIFAR-100 table
    assert text.index(f"## {STL}") < text.index(f"## {TINY}")
    rows = section(text, "Last epoch (linear probe on STL-10)", "###")
    assert rows[0] == ["Teacher <br> Student", R56, R32]  # the benchmark's column order
    table = as_dict(rows)
    assert list(table) == ["Teacher", "KD", "PACKD"]
    assert table["PACKD"] == {R56: "55.00 (n=1)", R32: cell([70.0, 71.0, 72.0])}
    assert table["KD"] == {R56: "-", R32: "65.00 (n=1)"}
    assert table["Teacher"] == {R56: "-", R32: "-"}  # no probe of the teachers' weights here
    best = as_dict(section(text, "Best epoch (linear probe on STL-10)", "###"))
    assert best["PACKD"][R32] == cell([71.0, 71.5, 72.0]) and best["KD"][R32] == "66.00 (n=1)"
    tiny = as_dict(section(text, "Last epoch (linear probe on Tiny-ImageNet-200)", "###"))
    assert tiny == {"Teacher": {R32: "-"}, "PACKD": {R32: cell([30.0, 32.0])}}
    below = section_text(text, "Last epoch (linear probe on STL-10)", "###")
    assert ("- resnet32x4 → resnet8x4: 4 probe(s) of 4 student run(s); T1 "
            "`save_t/resnet32x4_vanilla/ckpt_epoch_240.pth`, weights 0123456789abcdef, not probed") in below


def test_transfer_never_mixes_experiments(tmp_path):
    new_probe(tmp_path, "a0", student=student_info(trial=0), acc=70.0)
    new_probe(tmp_path, "a1", student=student_info(trial=1), acc=72.0)
    new_probe(tmp_path, "a1", student=student_info(trial=1), trial=1, acc=74.0)  # a 2nd probe of a student
    new_probe(tmp_path, "short", student=student_info(epochs=1), acc=20.0)        # another student experiment
    new_probe(tmp_path, "few", student=student_info(few_ratio=0.25), acc=50.0)    # few-shot student
    new_probe(tmp_path, "t2", student=student_info(fp=FP_B), acc=60.0)            # another teacher
    new_probe(tmp_path, "a0", student=student_info(trial=0), checkpoint="last", acc=69.0)  # its last epoch
    new_probe(tmp_path, "a2", student=student_info(trial=2), acc=40.0, epochs=10)  # another probe recipe
    text = report_of(tmp_path)
    table = as_dict(section(text, "Last epoch (linear probe on STL-10; probe epochs:100)", "###"))
    assert {k: v[R32] for k, v in table.items()} == {
        "Teacher": "T1: -, T2: -",
        "PACKD [epochs:1, few-ratio:1, checkpoint:best, T1]": "20.00 (n=1)",
        "PACKD [epochs:240, few-ratio:0.25, checkpoint:best, T1]": "50.00 (n=1)",
        "PACKD [epochs:240, few-ratio:1, checkpoint:best, T1]": cell([70.0, 72.0, 74.0]),
        "PACKD [epochs:240, few-ratio:1, checkpoint:best, T2]": "60.00 (n=1)",
        "PACKD [epochs:240, few-ratio:1, checkpoint:last, T1]": "69.00 (n=1)"}
    below = section_text(text, "Last epoch (linear probe on STL-10; probe epochs:100)", "###")
    assert "- PACKD on resnet32x4 → resnet8x4: 5 distinct experiments (differing in checkpoint, epochs, " \
           "few_ratio, teacher), shown in separate rows, not averaged." in below
    assert "checkpoint: the student's checkpoint that was probed" in below
    other = as_dict(section(text, "Last epoch (linear probe on STL-10; probe epochs:10)", "###"))
    assert other == {"Teacher": {R32: "-"}, "PACKD": {R32: "40.00 (n=1)"}}


def test_transfer_teacher_and_student_rows(tmp_path):
    new_probe(tmp_path, "packd", student=student_info(), acc=70.0)
    new_probe(tmp_path, "packd_r56", student=student_info("resnet56", "resnet20", fp=FP_B), acc=61.0)
    # the very weights of the packd students' teacher, probed from a vanilla run folder
    new_probe(tmp_path, "resnet32x4_vanilla", student=vanilla_info(), weights=FP_A, acc=75.0)
    new_probe(tmp_path, "resnet32x4_vanilla", student=vanilla_info(), weights=FP_A, trial=1, acc=77.0)
    # the released resnet56 teacher (no run.json beside it): matched by its fingerprint alone
    new_probe(tmp_path, "resnet56_vanilla", model_s="resnet56", weights=FP_B, acc=66.0,
              student_checkpoint="save_t/resnet56_vanilla/ckpt_epoch_240.pth")
    # vanilla runs of the student models: the Student row
    new_probe(tmp_path, "resnet8x4_0", student=vanilla_info("resnet8x4"), weights="8", acc=64.0)
    new_probe(tmp_path, "resnet8x4_1", student=vanilla_info("resnet8x4", trial=1), weights="9", acc=65.0)
    new_probe(tmp_path, "resnet20_few", student=vanilla_info("resnet20", few_ratio=0.5), weights="7", acc=50.0)
    # a checkpoint nobody knows
    new_probe(tmp_path, "mystery", model_s="resnet8x4", weights="6666666666666666", acc=33.0,
              student_checkpoint="downloads/resnet8x4.pth")
    text = report_of(tmp_path)
    table = as_dict(section(text, "Last epoch (linear probe on STL-10)", "###"))
    assert table == {"Teacher": {R56: "66.00 (n=1)", R32: cell([75.0, 77.0])},
                     "Student [few-ratio:0.5]": {R56: "50.00 (n=1)", R32: "-"},
                     "Student [few-ratio:1]": {R56: "-", R32: cell([64.0, 65.0])},
                     "PACKD": {R56: "61.00 (n=1)", R32: "70.00 (n=1)"}}
    vanilla = as_dict(section(text, "Vanilla (cross-entropy) models (linear probe on STL-10)", "###"))
    assert vanilla == {"resnet20 [few-ratio:0.5]": {"last epoch": "50.00 (n=1)", "best epoch": "50.00 (n=1)"},
                       "resnet32x4": {"last epoch": cell([75.0, 77.0]), "best epoch": cell([75.0, 77.0])},
                       "resnet8x4": {"last epoch": cell([64.0, 65.0]), "best epoch": cell([64.0, 65.0])}}
    others = section_text(text, "Other checkpoints (linear probe on STL-10)", "###")
    assert ("- resnet8x4, `downloads/resnet8x4.pth`, weights 6666666666666666: last epoch 33.00 (n=1), "
            "best epoch 33.00 (n=1)") in others
    assert "- resnet56, `save_t/resnet56_vanilla/ckpt_epoch_240.pth`, weights fedcba9876543210" in others
    below = section_text(text, "Best epoch (linear probe on STL-10)", "###")
    assert "T1 `save_t/resnet32x4_vanilla/ckpt_epoch_240.pth`, weights 0123456789abcdef, 2 probe(s) of it" in below


def test_transfer_generated_data_apart(tmp_path):
    new_probe(tmp_path, "real", student=student_info(), acc=70.0)
    new_probe(tmp_path, "gen_probe", student=student_info(trial=1), acc=10.0, generated=True)
    new_probe(tmp_path, "gen_student", student=student_info(trial=2, generated=True), acc=12.0)
    text = report_of(tmp_path)
    real = as_dict(section(text, "Last epoch (linear probe on STL-10)", "###"))
    assert real["PACKD"][R32] == "70.00 (n=1)"
    assert "2 run(s) trained on GENERATED data" in text
    generated = text.split("\n## Runs on GENERATED data (not CIFAR-100; for trying the code only)\n")[1]
    assert f"### {STL} (GENERATED data)" in generated
    assert "say nothing about CIFAR-100" not in generated  # only probes here
    gen = as_dict(section(generated, "Last epoch (linear probe on STL-10, GENERATED data)", "####"))
    assert gen["PACKD"][R32] == cell([10.0, 12.0])


def test_transfer_unfinished_problems_and_plots(tmp_path):
    new_probe(tmp_path, "done", student=student_info(), acc=70.0)
    new_probe(tmp_path, "running", student=student_info(trial=1), finished=False, curve=[20.0, 30.0])
    new_probe(tmp_path, "vanilla_running", student=vanilla_info(), finished=False, curve=[])
    broken = tmp_path / "transfer" / "STL-10_broken_0"
    broken.mkdir()
    (broken / "run.json").write_text(json.dumps({"kind": "transfer", "student": {}}))
    new_student(tmp_path / "student_model", "s", acc=72.0)
    runs, problems = summarize.find_runs([str(tmp_path)])
    text = summarize.report(runs, problems, [str(tmp_path)])
    assert "2 finished run(s), 2 unfinished, 1 with problems" in text
    unfinished = text.split("## Unfinished runs")[1].split("## ")[0]
    assert ("- linear probe on STL-10 of resnet32x4 → resnet8x4, PACKD, student trial 1, probe trial 0: "
            "epoch 2/100, test top-1 30.00") in unfinished
    assert "- linear probe on STL-10 of resnet32x4 (vanilla), trial 0, probe trial 0: no epoch finished yet" \
        in unfinished
    assert "STL-10_broken_0`: run.json lacks the student model or the probe's data set" in text
    # the CIFAR-100 tables hold the student run only; the probes are not plotted
    assert as_dict(section(text, "Last epoch")) == {"Teacher": {R56: "72.34"}, "PACKD": {R56: "72.00 (n=1)"}}
    assert [p["name"] for p in summarize.plot_data(runs)] == ["resnet56_resnet20"]
