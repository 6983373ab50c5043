"""Benchmark tables (markdown) and accuracy curves of every run under the given folders.

    python scripts/summarize.py save/ [more folders] [--out results.md] [--plots DIR]

A run is a folder holding run.json (found at any depth). Finished runs (summary.json)
of the same experiment are averaged over trials; the tables follow the README layout:
teacher/student pairs as columns, methods as rows, each cell "mean ± sample std
(n=trials)" of the test top-1 at the last epoch (the papers' convention), and a second
table at the best epoch.

Runs are averaged only when they are the same experiment: same pair and method, same
teacher weights (the SHA-256 fingerprint in run.json's `identity`), and the same value of
every setting that changes what is trained (`identity.settings`: epochs, --few-ratio, the
loss weights, ...) except the seed/trial. Several experiments of one method become
separate rows, labelled by the settings that tell them apart. Under each table the
teachers the students used are listed (checkpoint path, fingerprint, measured top-1).
Runs on a generated data set get their own section and plots, never mixed with real
ones. Unfinished runs are listed with their last epoch, never averaged; unreadable files
are reported, never fatal. Method names and row order come from the method classes
(`distiller_zoo.METHODS`: `display_name`, `table_order`), raw names when that cannot be
imported.
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

# `python scripts/summarize.py` from any folder: the repository root holds distiller_zoo/.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

# Column order of the benchmark (the PACKD authors' run_distill.sh); other pairs follow.
BENCHMARK_PAIRS = [
    ("wrn_40_2", "wrn_16_2"), ("wrn_40_2", "wrn_40_1"), ("resnet56", "resnet20"),
    ("resnet110", "resnet32"), ("resnet32x4", "resnet8x4"), ("vgg13", "vgg8"),
    ("vgg13", "MobileNetV2"), ("ResNet50", "MobileNetV2"), ("ResNet50", "vgg8"),
    ("resnet32x4", "ShuffleV1"), ("resnet32x4", "ShuffleV2"), ("wrn_40_2", "ShuffleV1"),
]
# Settings compared for every run, also when run.json has no `identity.settings` (older
# runs): read from run.json's flags. Runs differing in any of them are never averaged.
LEGACY_SETTINGS = {"student": ("gamma", "alpha", "beta", "epochs", "few_ratio"),
                   "teacher": ("epochs", "few_ratio")}
# Never part of the experiment: trials differ only by seed; the rest names the row/column.
NOT_SETTINGS = {"seed", "trial", "kind", "model", "model_s", "model_t", "distill", "teacher_weights",
                "settings", "path_t"}
# Short names in row labels (as in the run folders' names: r:<gamma>_a:<alpha>_b:<beta>).
SHORT = {"gamma": "r", "alpha": "a", "beta": "b", "alpha_aug": "ag", "few_ratio": "few"}
STUDENT_FOLDER = re.compile(r"S:(?P<model_s>.+?)_T:(?P<model_t>.+?)_")
MISSING = "-"
GENERATED_TITLE = "Runs on GENERATED data (not CIFAR-100; for trying the code only)"


# --- method names -------------------------------------------------------------------

_registry = None          # {name: Distiller subclass}, read once
_registry_problem = None  # why distiller_zoo could not be read (raw names are used then)


def method_classes():
    """`distiller_zoo.METHODS`, imported on first use; {} when it cannot be imported (e.g.
    torch missing), so the tables still come out, with the methods' raw names."""
    global _registry, _registry_problem
    if _registry is None:
        try:
            from distiller_zoo import METHODS
            _registry, _registry_problem = dict(METHODS), None
        except Exception as e:  # ImportError, or a method file broken mid-edit: still summarise
            _registry, _registry_problem = {}, f"{type(e).__name__}: {e}"
    return _registry


def method_name(distill):
    cls = method_classes().get(distill)
    return str(getattr(cls, "display_name", None) or distill) if cls is not None else str(distill)


def method_order(distill):
    """Sort key of a method's rows: the class's `table_order`, then its name; methods the
    registry does not know (e.g. from an older run) last, by raw name."""
    cls = method_classes().get(distill)
    if cls is None:
        return (1, 0, str(distill))
    order = _number(getattr(cls, "table_order", 1000))
    return (0, 1000 if order is None else order, str(distill))


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


def _freeze(value):
    """A hashable, comparable form of a setting's value (1 and 1.0 are the same)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    return str(value)


def _show(value):
    """A frozen setting value, compactly."""
    if value is None:
        return "?"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return format(value, "g")
    if isinstance(value, tuple):
        return ",".join(_show(v) for v in value)
    return str(value)


@dataclass
class Run:
    folder: str
    kind: str                        # "teacher" (plain training) or "student"
    model: str                       # the trained network (the student for student runs)
    trial: str
    epochs: Optional[int]            # expected number of epochs
    model_t: Optional[str] = None
    distill: Optional[str] = None
    info: dict = field(default_factory=dict, repr=False)  # run.json
    recorded: Optional[dict] = None  # the settings run.json's `identity` names (None: older run)
    settings: tuple = ()             # ((name, value), ...): the experiment, see resolve_settings
    teacher_weights: Optional[str] = None  # fingerprint of the teacher's weights
    path_t: Optional[str] = None
    teacher_acc: Optional[float] = None
    generated: Optional[bool] = None  # trained on a generated data set; None: not recorded
    last_acc: Optional[float] = None  # set when finished
    best_acc: Optional[float] = None
    curve: list = field(default_factory=list)  # [(epoch, test top-1)]
    forward_only: frozenset = frozenset()      # epochs that trained nothing (PACKD's first)

    @property
    def finished(self):
        return self.last_acc is not None

    @property
    def pair(self):
        return (self.model_t, self.model)

    @property
    def teacher_key(self):
        """Which teacher: its weights' fingerprint; for runs that did not record one, the
        checkpoint path and measured accuracy (different accuracies: different weights)."""
        if self.teacher_weights:
            return ("weights", self.teacher_weights)
        acc = None if self.teacher_acc is None else round(self.teacher_acc, 2)
        return ("path", self.path_t or "", acc)

    def describe(self):
        what = f"{self.model_t} → {self.model}, {method_name(self.distill)}" \
            if self.kind == "student" else f"{self.model} (vanilla)"
        return f"{what}, trial {self.trial}" + (" [GENERATED data]" if self.generated else "")


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


def read_metrics(path):
    """metrics.jsonl -> ([(epoch, test_acc)], {forward-only epochs}, problem). Bad lines
    (e.g. a line cut short by a crash) are skipped and counted in the problem text."""
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return [], set(), "metrics.jsonl missing"
    except (OSError, UnicodeDecodeError) as e:
        return [], set(), f"metrics.jsonl unreadable ({type(e).__name__})"
    curve, forward_only, bad = [], set(), 0
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
        if row.get("forward_only") is True:
            forward_only.add(epoch)
    curve.sort()
    return curve, forward_only, (f"metrics.jsonl: {bad} unreadable line(s) skipped" if bad else None)


def read_curve(path):
    """metrics.jsonl -> ([(epoch, test_acc)], problem)."""
    curve, _, problem = read_metrics(path)
    return curve, problem


def _recorded_settings(info):
    """The settings run.json's `identity` names: its `settings` plus any other entry of the
    identity that is not a name (e.g. `dataset`); None for runs written before identity."""
    identity = info.get("identity")
    if not isinstance(identity, dict):
        return None
    out = {k: v for k, v in identity.items() if k not in NOT_SETTINGS}
    if isinstance(identity.get("settings"), dict):
        out.update(identity["settings"])
    return out


def load_run(folder):
    """-> (Run or None, [problems]). None when run.json itself is unusable."""
    info, problem = _read_json(os.path.join(folder, "run.json"))
    if info is None:
        return None, [problem]
    identity = info.get("identity") if isinstance(info.get("identity"), dict) else {}
    kind = info.get("kind") or identity.get("kind") or ("student" if "model_s" in info else "teacher")
    model = (info.get("model_s") or identity.get("model_s")) if kind == "student" \
        else (info.get("model") or identity.get("model"))
    model_t = info.get("model_t") or identity.get("model_t")
    distill = info.get("distill") or identity.get("distill")
    if kind == "student" and not model_t:
        match = STUDENT_FOLDER.match(os.path.basename(folder))
        model_t = match.group("model_t") if match else None
    if not model or (kind == "student" and not (model_t and distill)):
        return None, ["run.json lacks the model names or the method"]
    epochs = _number(info.get("epochs"))
    fingerprint = identity.get("teacher_weights") if kind == "student" else None
    run = Run(folder=folder, kind=kind, model=str(model), trial=str(info.get("trial", "?")),
              epochs=int(epochs) if epochs is not None else None,
              model_t=str(model_t) if model_t and kind == "student" else None,
              distill=str(distill) if kind == "student" else None,
              info=info, recorded=_recorded_settings(info),
              teacher_weights=str(fingerprint) if fingerprint else None,
              path_t=str(info["path_t"]) if kind == "student" and info.get("path_t") else None,
              teacher_acc=_number(info.get("teacher_acc")) if kind == "student" else None)
    problems = []
    run.curve, forward_only, problem = read_metrics(os.path.join(folder, "metrics.jsonl"))
    run.forward_only = frozenset(forward_only)
    if problem:
        problems.append(problem)
    settings = identity.get("settings") if isinstance(identity.get("settings"), dict) else {}
    flags = [info.get("generated_data"), identity.get("generated_data"), settings.get("generated_data")]
    if os.path.exists(os.path.join(folder, "summary.json")):
        summary, problem = _read_json(os.path.join(folder, "summary.json"))
        last = _number(summary.get("last_acc")) if summary else None
        best = _number(summary.get("best_acc")) if summary else None
        if last is None or best is None:
            problems.append(problem or "summary.json lacks last_acc/best_acc")
        else:
            run.last_acc, run.best_acc = last, best
        if summary:
            flags.append(summary.get("generated_data"))
    run.generated = True if True in flags else (False if False in flags else None)
    return run, problems


def resolve_settings(runs):
    """Set each run's `settings`: the values of every setting that makes an experiment, for
    all runs of one kind and method the same names (those their identities record, plus
    LEGACY_SETTINGS); a name a run's identity lacks is read from its run.json flags, so an
    older run compares by the same flags. Seed and trial are not settings."""
    names = {}
    for run in runs:
        group = names.setdefault((run.kind, run.distill), set(LEGACY_SETTINGS.get(run.kind, ())))
        group.update(run.recorded or ())
    for run in runs:
        values = {}
        for name in sorted(names[(run.kind, run.distill)] - NOT_SETTINGS):
            recorded = run.recorded if run.recorded is not None and name in run.recorded else run.info
            values[name] = _freeze(recorded.get(name))
        run.settings = tuple(values.items())
    return runs


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
    return resolve_settings(runs), problems


# --- grouping -----------------------------------------------------------------------

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


def _pair_text(pair):
    return f"{pair[0]} → {pair[1]}"


def _varying(settings_list):
    """Names of the settings whose values differ among `settings_list` (tuples of items)."""
    dicts = [dict(s) for s in settings_list]
    names = sorted({n for d in dicts for n in d})
    return [n for n in names if len({repr(d.get(n)) for d in dicts}) > 1]


def _label(base, settings, varying, tag=None):
    """'PACKD [ag:0, epochs:1, T2]': the settings in `varying` (the loss weights, epochs and
    data subset first), then the tag."""
    values = dict(settings)
    first = ("gamma", "alpha", "beta", "alpha_aug", "epochs", "few_ratio")
    varying = sorted(varying, key=lambda n: (first.index(n) if n in first else len(first), n))
    parts = [f"{SHORT.get(n, n)}:{_show(values.get(n))}" for n in varying]
    if tag:
        parts.append(tag)
    return f"{base} [{', '.join(parts)}]" if parts else base


def pair_teachers(students):
    """{pair: [teacher_key, ...]}: the distinct teachers each pair's students used, fingerprinted
    ones first; the n-th is called T<n>."""
    out = {}
    for run in students:
        out.setdefault(run.pair, set()).add(run.teacher_key)
    return {pair: sorted(keys, key=lambda k: (k[0] != "weights", repr(k))) for pair, keys in out.items()}


def student_rows(students):
    """Rows of the method part of a table. -> (row_of, labels, splits):
    row_of {run folder: row key}, row key = (method, settings, teacher index in its pair);
    labels {row key: label}: the method's name plus, in brackets, the settings that tell
    apart this method's rows and T<n> when some pair's students used several teachers;
    splits [(pair, method, [what differs])] for each (pair, method) whose runs are several
    experiments (each in its own row, never averaged together)."""
    teachers = pair_teachers(students)
    row_of = {r.folder: (r.distill, r.settings, teachers[r.pair].index(r.teacher_key)) for r in students}
    by_method = {}
    for key in set(row_of.values()):
        by_method.setdefault(key[0], []).append(key)
    labels = {}
    for distill, keys in by_method.items():
        varying = _varying([k[1] for k in keys])
        several_teachers = any(k[2] > 0 for k in keys)
        for key in keys:
            labels[key] = _label(method_name(distill), key[1], varying,
                                 f"T{key[2] + 1}" if several_teachers else None)
    splits = []
    for pair in sorted(teachers, key=_pair_order):
        for distill in sorted({r.distill for r in students if r.pair == pair}, key=method_order):
            keys = {row_of[r.folder] for r in students if r.pair == pair and r.distill == distill}
            if len(keys) > 1:
                what = _varying([k[1] for k in keys]) + (["teacher"] if len({k[2] for k in keys}) > 1 else [])
                splits.append((pair, distill, len(keys), what))
    return row_of, labels, splits


def _natural(text):
    """Sort key of a label with numbers in numeric order ('epochs:2' before 'epochs:240')."""
    parts = re.split(r"(\d+(?:\.\d+)?)", text)
    return [(0, float(p), "") if i % 2 else (1, 0.0, p) for i, p in enumerate(parts)]


def _sorted_rows(labels, order):
    return sorted(labels, key=lambda k: (order(k), _natural(labels[k])))


def vanilla_groups(runs):
    """{(model, settings): [runs]} of the plain (teacher-kind) runs."""
    groups = {}
    for run in runs:
        if run.kind == "teacher":
            groups.setdefault((run.model, run.settings), []).append(run)
    return groups


def vanilla_labels(keys):
    """{(model, settings): label}: the model's name plus the settings that tell apart its groups."""
    by_model = {}
    for key in keys:
        by_model.setdefault(key[0], []).append(key)
    labels = {}
    for model, group in by_model.items():
        varying = _varying([k[1] for k in group])
        for key in group:
            labels[key] = _label(model, key[1], varying)
    return labels


# --- tables -------------------------------------------------------------------------

def _markdown(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---:"] * len(header)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _teacher_entries(students, pair):
    """[(tag, runs of that teacher)] for one pair, in T<n> order."""
    keys = pair_teachers(students).get(pair, [])
    return [(f"T{i + 1}", [r for r in students if r.pair == pair and r.teacher_key == key])
            for i, key in enumerate(keys)]


def _measured(runs):
    """The teacher top-1 the runs measured: '72.34', or '72.34/72.35' when it differed
    (another device or precision), or None when none recorded it."""
    accs = sorted({round(r.teacher_acc, 2) for r in runs if r.teacher_acc is not None})
    return "/".join(f"{a:.2f}" for a in accs) if accs else None


def _teacher_fallback(vanilla, model_t):
    """The teacher cell from the finished vanilla runs of model_t, when the students did
    not measure their teacher: only when those runs are one experiment. -> (cell, note)."""
    groups = {k: v for k, v in vanilla_groups(vanilla).items() if k[0] == model_t}
    if len(groups) == 1:
        runs = next(iter(groups.values()))
        return format_cell([r.last_acc for r in runs]), f"row: the vanilla runs of {model_t} (last epoch)"
    if groups:
        return MISSING, f"row left empty: {len(groups)} different vanilla experiments of {model_t}, not guessed"
    return MISSING, None


def teacher_notes(students, vanilla, pairs):
    """'Teachers' lines under a table: per pair, each teacher's checkpoint path(s) as given
    (--path_t), weights fingerprint, measured top-1 and number of student runs."""
    lines = ["Teachers (T<n>: the pair's n-th teacher; checkpoint as given with --path_t, SHA-256 "
             "fingerprint of its weights, test top-1 the students measured before training):"]
    for pair in pairs:
        entries = _teacher_entries(students, pair)
        texts = []
        for tag, runs in entries:
            paths = sorted({r.path_t for r in runs if r.path_t})
            where = ", ".join(f"`{p}`" for p in paths) if paths else "path not recorded"
            weights = runs[0].teacher_weights
            fingerprint = f"weights {weights}" if weights else "weights fingerprint not recorded (older run)"
            measured = _measured(runs)
            if measured is None:
                _, note = _teacher_fallback(vanilla, pair[0])
                measured_text = "top-1 not recorded" + (f" (Teacher {note})" if note else "")
            else:
                measured_text = f"top-1 {measured}"
            texts.append(f"{tag} {where}, {fingerprint}, {measured_text}, {len(runs)} student run(s)")
        line = f"- {_pair_text(pair)}: " + "; ".join(texts)
        if len(entries) > 1:
            line += (f" — this pair's students used {len(entries)} different teachers; "
                     f"their runs are in separate rows ([T1], [T2], ...), never averaged together")
        lines.append(line)
    return lines


def benchmark_table(runs, metric):
    """Markdown of `metric` ('last_acc' or 'best_acc') for the student runs' pairs: the table,
    a note on rows split into several experiments, and the teachers used."""
    students = [r for r in runs if r.kind == "student"]
    vanilla = [r for r in runs if r.kind == "teacher" and r.finished]
    pairs = sorted({r.pair for r in students}, key=_pair_order)
    header = ["Teacher <br> Student"] + [f"{t} <br> {s}" for t, s in pairs]

    # The teacher the students actually used, as they measured it before training; a
    # teacher run of that model only when no student run recorded it (the two differ
    # when the students used the released checkpoints rather than the local teachers).
    teacher_row = ["Teacher"]
    for pair in pairs:
        entries = _teacher_entries(students, pair)
        if len(entries) == 1:
            measured = _measured(entries[0][1])
            teacher_row.append(measured if measured is not None else _teacher_fallback(vanilla, pair[0])[0])
        else:
            teacher_row.append(", ".join(f"{tag}: {_measured(r) or '?'}" for tag, r in entries))
    rows = [teacher_row]

    # Vanilla runs of the student models: a row per experiment (settings).
    students_models = {s for _, s in pairs}
    groups = {k: v for k, v in vanilla_groups(vanilla).items() if k[0] in students_models}
    settings = {k[1] for k in groups}
    varying = _varying(settings)
    for s in sorted(settings, key=lambda s: _natural(_label("Student", s, varying))):
        row = [_label("Student", s, varying)] + [
            format_cell([getattr(r, metric) for r in groups.get((model_s, s), [])]) for _, model_s in pairs]
        if any(c != MISSING for c in row[1:]):
            rows.append(row)

    row_of, labels, splits = student_rows(students)
    for key in _sorted_rows(labels, lambda k: method_order(k[0])):
        cells = []
        for pair in pairs:
            values = [getattr(r, metric) for r in students
                      if r.finished and r.pair == pair and row_of[r.folder] == key]
            cells.append(format_cell(values))
        rows.append([labels[key]] + cells)

    out = [_markdown(header, rows), ""]
    if splits or any("[" in row[0] for row in rows):
        out.append("Rows with [...] are distinct experiments (of one method, or of the students' vanilla "
                   "runs), told apart by the settings in "
                   "brackets (r/a/b: the loss weights -r/-a/-b, ag: --alpha_aug, few: --few-ratio, "
                   "T<n>: the pair's n-th teacher below); runs of different rows are never averaged together.")
        for pair, distill, n, what in splits:
            out.append(f"- {method_name(distill)} on {_pair_text(pair)}: {n} distinct experiments "
                       f"(differing in {', '.join(what)}), shown in separate rows, not averaged.")
        out.append("")
    out += teacher_notes(students, vanilla, pairs)
    return "\n".join(out)


def vanilla_table(runs):
    groups = vanilla_groups([r for r in runs if r.finished])
    labels = vanilla_labels(groups)
    keys = sorted(groups, key=lambda k: (k[0], _natural(labels[k])))
    rows = [[labels[k], format_cell([r.last_acc for r in groups[k]]),
             format_cell([r.best_acc for r in groups[k]])] for k in keys]
    out = [_markdown(["Model", "last epoch", "best epoch"], rows)]
    split = sorted({k[0] for k in keys if labels[k] != k[0]})
    if split:
        out += ["", "Rows with [...] are distinct experiments of one model (settings in brackets); "
                    f"never averaged together: {', '.join(split)}."]
    return "\n".join(out)


def _display(path):
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else path


def _tables(runs, level, suffix=""):
    """The Last/Best/Vanilla sections of one data kind."""
    doc = []
    if any(r.kind == "student" for r in runs):
        doc += [f"{level} Last epoch{suffix}", "", benchmark_table(runs, "last_acc"), "",
                f"{level} Best epoch{suffix}", "", benchmark_table(runs, "best_acc"), ""]
    if any(r.kind == "teacher" and r.finished for r in runs):
        doc += [f"{level} Vanilla (cross-entropy) runs{suffix}", "", vanilla_table(runs), ""]
    return doc


def report(runs, problems, roots):
    """The whole markdown document."""
    finished = [r for r in runs if r.finished]
    unfinished = [r for r in runs if not r.finished]
    real = [r for r in runs if not r.generated]
    generated = [r for r in runs if r.generated]
    doc = ["# Results", "",
           f"{len(finished)} finished run(s), {len(unfinished)} unfinished, "
           f"{len({f for f, _ in problems})} with problems, under: {', '.join(roots)}.", "",
           "Test top-1 accuracy (%) of finished runs: mean ± sample standard deviation over "
           "trials, n = number of trials; only runs of the same experiment (pair, method, teacher "
           "weights, settings) are averaged. Teacher: the accuracy of the teacher checkpoint the "
           "students used (measured before training; else the teacher's own runs).", ""]
    method_classes()
    if _registry_problem:
        doc += [f"Method names are the raw --distill names: distiller_zoo could not be imported "
                f"({_registry_problem}).", ""]
    unknown = [r for r in real if r.generated is None]
    if generated:
        doc += [f"{len(generated)} run(s) trained on GENERATED data: they are in their own section "
                f"below, never in the CIFAR-100 tables.", ""]
    if unknown:
        flagged = sum(1 for r in unknown if r.info.get("generate_data") is True)
        doc += [f"{len(unknown)} run(s) here do not record whether their data was CIFAR-100 or generated "
                f"(written before run.json said so); they are taken as CIFAR-100 runs"
                + (f" ({flagged} of them were started with --generate_data, which generates data only "
                   f"when the data folder holds no CIFAR-100)" if flagged else "") + ".", ""]
    doc += _tables(real, "##")
    if generated:
        doc += [f"## {GENERATED_TITLE}", "",
                "These runs trained on a generated data set in the CIFAR-100 format; their accuracies "
                "say nothing about CIFAR-100 and are never mixed with the CIFAR-100 runs.", ""]
        doc += _tables(generated, "###", " (GENERATED data)")
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


def plot_curve(run):
    """(epochs, accuracies) as plotted: rows of forward-only epochs (PACKD's first, which
    trains nothing) are dropped and the later epochs renumbered, so a run's first training
    epoch is at 1 as every other method's."""
    xs, ys = [], []
    for epoch, acc in run.curve:
        if epoch in run.forward_only:
            continue
        xs.append(epoch - sum(1 for e in run.forward_only if e < epoch))
        ys.append(acc)
    return xs, ys


def plot_data(runs):
    """What write_plots draws: [{"name": file stem, "title", "lines": [{"label", "group",
    "trial", "x", "y", "finished"}]}], one plot per pair (and one for the vanilla runs), real
    and generated-data runs in separate plots ("generated_" names)."""
    plots = {}
    for generated in (False, True):
        section = [r for r in runs if bool(r.generated) == generated]
        prefix, note = ("generated_", " (GENERATED data, not CIFAR-100)") if generated else ("", "")
        students = [r for r in section if r.kind == "student"]
        row_of, labels, _ = student_rows(students)
        for run in students:
            name = prefix + run.model_t + "_" + run.model
            plot = plots.setdefault(name, {"name": name, "title": _pair_text(run.pair) + note, "lines": []})
            plot["lines"].append((labels[row_of[run.folder]], run))
        groups = vanilla_groups(section)
        vlabels = vanilla_labels(groups)
        for key, members in groups.items():
            plot = plots.setdefault(prefix + "vanilla", {"name": prefix + "vanilla", "title": "vanilla" + note,
                                                         "lines": []})
            plot["lines"] += [(vlabels[key], run) for run in members]
    out = []
    for name in sorted(plots):
        plot = plots[name]
        lines = []
        for group, run in sorted(plot["lines"], key=lambda m: (m[0], m[1].trial, m[1].folder)):
            xs, ys = plot_curve(run)
            if xs:
                lines.append({"label": f"{group} trial {run.trial}" + ("" if run.finished else " (unfinished)"),
                              "group": group, "trial": run.trial, "x": xs, "y": ys, "finished": run.finished})
        if lines:
            out.append({"name": plot["name"], "title": plot["title"], "lines": lines})
    return out


MARKERS = "osD^vP*Xph<>"
LINESTYLES = ("-", "--", "-.", ":")


def write_plots(runs, out_dir):
    """One PNG per teacher/student pair (plus vanilla.png; generated-data runs in their own
    generated_*.png): test top-1 per epoch, a line per method and trial. -> written paths.
    Needs matplotlib."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    os.makedirs(out_dir, exist_ok=True)
    written = []
    for plot in plot_data(runs):
        groups = list(dict.fromkeys(line["group"] for line in plot["lines"]))
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for line in plot["lines"]:
            # one colour, marker and dash per method row (a line per trial); hollow, translucent
            # markers of decreasing size, so a curve lying exactly under another still shows
            i = groups.index(line["group"])
            n = len(line["x"])
            ax.plot(line["x"], line["y"], label=line["label"], color=f"C{i % 10}", alpha=0.8, linewidth=1.2,
                    linestyle=LINESTYLES[i % len(LINESTYLES)], marker=MARKERS[i % len(MARKERS)],
                    markersize=max(3.0, 9.0 - 2.0 * (i % 4)), markerfacecolor="none",
                    markevery=max(1, n // 25), zorder=2 + i)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(title=plot["title"], xlabel="epoch", ylabel="test top-1 (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        path = os.path.join(out_dir, _safe(plot["name"]) + ".png")
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
