"""Benchmark tables (markdown) and accuracy curves of every run under the given folders.

    python scripts/summarize.py save/ [more folders] [--out results.md] [--plots DIR]

A run is a folder holding run.json (found at any depth). Finished runs (summary.json)
are averaged over trials; the tables follow the README layout: teacher/student pairs
as columns, methods as rows, each cell "mean ± sample std (n=trials)" of the test top-1
at the last epoch (the papers' convention), and a second table at the best epoch.
Unfinished runs are listed with their last epoch, never averaged; unreadable files are
reported, never fatal.
"""
import argparse
import json
import math
import os
import re
import statistics
import sys
from dataclasses import dataclass, field
from typing import Optional

# Column order of the benchmark (the PACKD authors' run_distill.sh); other pairs follow.
BENCHMARK_PAIRS = [
    ("wrn_40_2", "wrn_16_2"), ("wrn_40_2", "wrn_40_1"), ("resnet56", "resnet20"),
    ("resnet110", "resnet32"), ("resnet32x4", "resnet8x4"), ("vgg13", "vgg8"),
    ("vgg13", "MobileNetV2"), ("ResNet50", "MobileNetV2"), ("ResNet50", "vgg8"),
    ("resnet32x4", "ShuffleV1"), ("resnet32x4", "ShuffleV2"), ("wrn_40_2", "ShuffleV1"),
]
# Row order and names of the RepDistiller / PACKD tables; other methods follow.
METHOD_NAMES = {
    "kd": "KD", "hint": "FitNet", "attention": "AT", "similarity": "SP", "correlation": "CC",
    "vid": "VID", "rkd": "RKD", "pkt": "PKT", "abound": "AB", "factor": "FT", "fsp": "FSP",
    "nst": "NST", "kdsvd": "KDSVD", "crd": "CRD", "packd": "PACKD",
}
# Settings that make two runs of one method different experiments (never averaged together).
CONFIG_FIELDS = (("gamma", "r"), ("alpha", "a"), ("beta", "b"), ("epochs", "epochs"))
STUDENT_FOLDER = re.compile(r"S:(?P<model_s>.+?)_T:(?P<model_t>.+?)_")
MISSING = "-"


@dataclass
class Run:
    folder: str
    kind: str                        # "teacher" (plain training) or "student"
    model: str                       # the trained network (the student for student runs)
    trial: str
    epochs: Optional[int]            # expected number of epochs
    model_t: Optional[str] = None
    distill: Optional[str] = None
    config: tuple = ()               # values of CONFIG_FIELDS
    teacher_acc: Optional[float] = None
    last_acc: Optional[float] = None  # set when finished
    best_acc: Optional[float] = None
    curve: list = field(default_factory=list)  # [(epoch, test top-1)]

    @property
    def finished(self):
        return self.last_acc is not None

    @property
    def pair(self):
        return (self.model_t, self.model)

    def describe(self):
        what = f"{self.model_t} → {self.model}, {METHOD_NAMES.get(self.distill, self.distill)}" \
            if self.kind == "student" else f"{self.model} (vanilla)"
        return f"{what}, trial {self.trial}"


# --- reading ------------------------------------------------------------------------

def _number(value):
    """float(value) for finite numbers, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        out = float(value)
    except ValueError:
        return None
    return out if math.isfinite(out) else None


def _read_json(path):
    """-> (object, problem): problem is a short text when the file is unreadable."""
    try:
        with open(path) as fh:
            obj = json.load(fh)
    except FileNotFoundError:
        return None, f"{os.path.basename(path)} missing"
    except (OSError, ValueError) as e:
        return None, f"{os.path.basename(path)} unreadable ({type(e).__name__})"
    if not isinstance(obj, dict):
        return None, f"{os.path.basename(path)} is not a JSON object"
    return obj, None


def read_curve(path):
    """metrics.jsonl -> ([(epoch, test_acc)], problem). Bad lines (e.g. a line cut short
    by a crash) are skipped and counted in the problem text."""
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return [], "metrics.jsonl missing"
    except (OSError, UnicodeDecodeError) as e:
        return [], f"metrics.jsonl unreadable ({type(e).__name__})"
    curve, bad = [], 0
    for line in lines:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            epoch, acc = int(row["epoch"]), _number(row["test_acc"])
        except (ValueError, KeyError, TypeError):
            bad += 1
            continue
        if acc is None:
            bad += 1
            continue
        curve.append((epoch, acc))
    curve.sort()
    return curve, (f"metrics.jsonl: {bad} unreadable line(s) skipped" if bad else None)


def load_run(folder):
    """-> (Run or None, [problems]). None when run.json itself is unusable."""
    info, problem = _read_json(os.path.join(folder, "run.json"))
    if info is None:
        return None, [problem]
    kind = info.get("kind") or ("student" if "model_s" in info else "teacher")
    model = info.get("model_s") if kind == "student" else info.get("model")
    model_t = info.get("model_t")
    if kind == "student" and not model_t:
        match = STUDENT_FOLDER.match(os.path.basename(folder))
        model_t = match.group("model_t") if match else None
    if not model or (kind == "student" and not (model_t and info.get("distill"))):
        return None, ["run.json lacks the model names or the method"]
    epochs = _number(info.get("epochs"))
    run = Run(folder=folder, kind=kind, model=str(model), trial=str(info.get("trial", "?")),
              epochs=int(epochs) if epochs is not None else None,
              model_t=str(model_t) if model_t else None,
              distill=str(info["distill"]) if kind == "student" else None,
              config=tuple(_number(info.get(key)) for key, _ in CONFIG_FIELDS),
              teacher_acc=_number(info.get("teacher_acc")))
    problems = []
    run.curve, problem = read_curve(os.path.join(folder, "metrics.jsonl"))
    if problem:
        problems.append(problem)
    if os.path.exists(os.path.join(folder, "summary.json")):
        summary, problem = _read_json(os.path.join(folder, "summary.json"))
        last = _number(summary.get("last_acc")) if summary else None
        best = _number(summary.get("best_acc")) if summary else None
        if last is None or best is None:
            problems.append(problem or "summary.json lacks last_acc/best_acc")
        else:
            run.last_acc, run.best_acc = last, best
    return run, problems


def find_runs(roots):
    """-> (runs, [(folder, problem)]) for every folder holding run.json under roots."""
    runs, problems, seen = [], [], set()
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            if "run.json" not in files:
                continue
            real = os.path.realpath(folder)
            if real in seen:
                continue
            seen.add(real)
            run, run_problems = load_run(folder)
            problems += [(folder, p) for p in run_problems]
            if run is not None:
                runs.append(run)
    return runs, problems


# --- tables -------------------------------------------------------------------------

def format_cell(values):
    if not values:
        return MISSING
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.2f} (n=1)"
    return f"{mean:.2f} ± {statistics.stdev(values):.2f} (n={len(values)})"


def _pair_order(pair):
    if pair in BENCHMARK_PAIRS:
        return (0, BENCHMARK_PAIRS.index(pair), "")
    return (1, 0, "/".join(pair))


def _method_order(distill):
    names = list(METHOD_NAMES)
    return (names.index(distill), "") if distill in names else (len(names), distill)


def row_labels(runs):
    """{(distill, config): label}: the method's name, plus the settings that tell apart
    several configurations of the same method (e.g. 'CRD (a=1)' and 'CRD (a=0)')."""
    configs = {}
    for run in runs:
        configs.setdefault(run.distill, set()).add(run.config)
    labels = {}
    for distill, seen in configs.items():
        name = METHOD_NAMES.get(distill, distill)
        varying = [i for i in range(len(CONFIG_FIELDS)) if len({c[i] for c in seen}) > 1]
        for config in seen:
            parts = [f"{CONFIG_FIELDS[i][1]}={'default' if config[i] is None else format(config[i], 'g')}"
                     for i in varying]
            labels[(distill, config)] = f"{name} ({', '.join(parts)})" if parts else name
    return labels


def _markdown(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---:"] * len(header)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def benchmark_table(runs, metric):
    """Markdown table of `metric` ('last_acc' or 'best_acc') for the student runs' pairs."""
    students = [r for r in runs if r.kind == "student"]
    vanilla = [r for r in runs if r.kind == "teacher" and r.finished]
    pairs = sorted({r.pair for r in students}, key=_pair_order)
    header = ["Teacher <br> Student"] + [f"{t} <br> {s}" for t, s in pairs]

    # The teacher the students actually used, as they measured it before training; a
    # teacher run of that model only when no student run recorded it (the two differ
    # when the students used the released checkpoints rather than the local teachers).
    teacher_row = ["Teacher"]
    for t, s in pairs:
        measured = sorted({round(r.teacher_acc, 2) for r in students
                           if r.pair == (t, s) and r.teacher_acc is not None})
        if len(measured) == 1:
            teacher_row.append(f"{measured[0]:.2f}")
        elif measured:  # several teacher checkpoints
            teacher_row.append(format_cell(measured))
        else:  # the checkpoint is the last epoch's
            teacher_row.append(format_cell([r.last_acc for r in vanilla if r.model == t]))
    rows = [teacher_row]
    student_row = ["Student"] + [format_cell([getattr(r, metric) for r in vanilla if r.model == s])
                                 for _, s in pairs]
    if any(cell != MISSING for cell in student_row[1:]):
        rows.append(student_row)

    labels = row_labels(students)
    for key in sorted(labels, key=lambda k: (_method_order(k[0]), labels[k])):
        cells = []
        for pair in pairs:
            values = [getattr(r, metric) for r in students
                      if r.finished and r.pair == pair and (r.distill, r.config) == key]
            cells.append(format_cell(values))
        rows.append([labels[key]] + cells)
    return _markdown(header, rows)


def vanilla_table(runs):
    vanilla = sorted((r for r in runs if r.kind == "teacher" and r.finished), key=lambda r: r.model)
    models = sorted({r.model for r in vanilla})
    rows = [[m, format_cell([r.last_acc for r in vanilla if r.model == m]),
             format_cell([r.best_acc for r in vanilla if r.model == m])] for m in models]
    return _markdown(["Model", "last epoch", "best epoch"], rows)


def _display(path):
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else path


def report(runs, problems, roots):
    """The whole markdown document."""
    finished = [r for r in runs if r.finished]
    unfinished = [r for r in runs if not r.finished]
    doc = ["# Results", "",
           f"{len(finished)} finished run(s), {len(unfinished)} unfinished, "
           f"{len({f for f, _ in problems})} with problems, under: {', '.join(roots)}.", "",
           "Test top-1 accuracy (%) of finished runs: mean ± sample standard deviation over "
           "trials, n = number of trials. Teacher: the accuracy of the teacher checkpoint the "
           "students used (measured before training; else the teacher's own runs).", ""]
    if any(r.kind == "student" for r in runs):
        doc += ["## Last epoch", "", benchmark_table(runs, "last_acc"), "",
                "## Best epoch", "", benchmark_table(runs, "best_acc"), ""]
    if any(r.kind == "teacher" and r.finished for r in runs):
        doc += ["## Vanilla (cross-entropy) runs", "", vanilla_table(runs), ""]
    if unfinished:
        doc += ["## Unfinished runs (no summary.json; not averaged)", ""]
        for run in sorted(unfinished, key=lambda r: r.folder):
            if run.curve:
                epoch, acc = run.curve[-1]
                state = f"epoch {epoch}/{run.epochs if run.epochs is not None else '?'}, test top-1 {acc:.2f}"
            else:
                state = "no epoch finished yet"
            doc.append(f"- {run.describe()}: {state} (`{_display(run.folder)}`)")
        doc.append("")
    if problems:
        doc += ["## Problems", ""]
        doc += [f"- `{_display(folder)}`: {problem}" for folder, problem in sorted(problems)]
        doc.append("")
    return "\n".join(doc)


# --- plots --------------------------------------------------------------------------

def _safe(name):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def write_plots(runs, out_dir):
    """One PNG per teacher/student pair (plus vanilla.png): test top-1 per epoch, a line
    per method and trial. -> written paths. Needs matplotlib."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    groups = {}  # title -> [(line label, colour key, run)]
    students = [r for r in runs if r.kind == "student"]
    labels = row_labels(students)
    for run in students:
        method = labels[(run.distill, run.config)]
        groups.setdefault(f"{run.model_t} → {run.model}", []).append((f"{method} trial {run.trial}", method, run))
    for run in runs:
        if run.kind == "teacher":
            groups.setdefault("vanilla", []).append((f"{run.model} trial {run.trial}", run.model, run))
    written = []
    for title, members in sorted(groups.items()):
        members = sorted((m for m in members if m[2].curve), key=lambda m: m[0])
        if not members:
            continue
        colours = {key: f"C{i % 10}" for i, key in enumerate(dict.fromkeys(m[1] for m in members))}
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for label, key, run in members:  # one colour per method, a line per trial
            epochs, accs = zip(*run.curve)
            ax.plot(epochs, accs, label=label if run.finished else f"{label} (unfinished)", linewidth=1,
                    color=colours[key], marker="." if len(epochs) < 20 else None)
        ax.set(title=title, xlabel="epoch", ylabel="test top-1 (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        name = "vanilla" if title == "vanilla" else title.replace(" → ", "_")
        path = os.path.join(out_dir, _safe(name) + ".png")
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


# --- command line -------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", help="folders searched (at any depth) for run.json")
    parser.add_argument("--out", help="write the markdown here (default: print it)")
    parser.add_argument("--plots", metavar="DIR", help="write one PNG per pair here (needs matplotlib)")
    args = parser.parse_args(argv)

    for root in args.roots:
        if not os.path.isdir(root):
            print(f"error: '{root}' is not a folder; give the --save_dir of the runs, e.g. save/",
                  file=sys.stderr)
            return 2
    runs, problems = find_runs(args.roots)
    if not runs and not problems:
        print(f"error: no run.json under {', '.join(args.roots)}", file=sys.stderr)
        return 1
    text = report(runs, problems, args.roots)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            fh.write(text)
        print(f"wrote {args.out}")
    else:
        print(text)
    if args.plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("error: --plots needs matplotlib (pip install matplotlib)", file=sys.stderr)
            return 2
        written = write_plots(runs, args.plots)
        # without --out the markdown owns stdout
        print(f"wrote {len(written)} plot(s) to {args.plots}", file=sys.stdout if args.out else sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
