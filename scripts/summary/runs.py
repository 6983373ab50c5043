"""Reading runs: a folder holding run.json -> Run, with its curve (metrics.jsonl), its result
(summary.json), the teacher it used and the settings that make its experiment.

Three kinds of run: `teacher` (plain cross-entropy training, train_teacher.py), `student`
(distillation, train_student.py) and `transfer` (a linear probe of a frozen student on another
data set, eval_rep.py: its run.json carries a copy of the student's run.json as `student`).
Unreadable files are reported as problems, never fatal.
"""
import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Optional

# Settings compared for every run, also when run.json has no `identity.settings` (older
# runs): read from run.json's flags. Runs differing in any of them are never averaged.
LEGACY_SETTINGS = {"student": ("gamma", "alpha", "beta", "epochs", "few_ratio"),
                   "teacher": ("epochs", "few_ratio"),
                   # a probe: its student's flags, which checkpoint of the student, the probe's recipe
                   "transfer": ("gamma", "alpha", "beta", "epochs", "few_ratio", "checkpoint",
                                "probe_epochs", "probe_learning_rate", "probe_batch_size")}
# Never part of the experiment: trials differ only by seed; the rest names the row/column.
NOT_SETTINGS = {"seed", "trial", "kind", "model", "model_s", "model_t", "distill", "teacher_weights",
                "settings", "path_t"}
# A probe's own settings are named with this prefix (its `epochs` is not its student's).
PROBE = "probe_"
STUDENT_FOLDER = re.compile(r"S:(?P<model_s>.+?)_T:(?P<model_t>.+?)_")


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


@dataclass
class Run:
    folder: str
    kind: str                        # "teacher" (plain training), "student" or "transfer" (a probe)
    model: str                       # the trained network (the student for student and transfer runs)
    trial: str                       # a probe's own trial for transfer runs
    epochs: Optional[int]            # expected number of epochs (a probe's epochs for transfer runs)
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
    flags: Optional[dict] = field(default=None, repr=False)  # where settings the identity lacks are read
    # transfer runs only: the probe's data set and the student probed
    dataset: Optional[str] = None
    student_kind: Optional[str] = None     # "student" (distilled), "teacher" (vanilla), None (no run.json)
    student_trial: Optional[str] = None
    student_weights: Optional[str] = None  # fingerprint of the probed weights
    student_checkpoint: Optional[str] = None

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


def _identity(info):
    return info.get("identity") if isinstance(info.get("identity"), dict) else {}


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


def _generated_flags(info):
    """What a run.json says about generated data: its own flag, its identity's, its settings'."""
    identity = _identity(info)
    settings = identity.get("settings") if isinstance(identity.get("settings"), dict) else {}
    return [info.get("generated_data"), identity.get("generated_data"), settings.get("generated_data")]


def _training_run(folder, info, kind):
    """A teacher or student run from its run.json; None without the model names or the method."""
    identity = _identity(info)
    model = (info.get("model_s") or identity.get("model_s")) if kind == "student" \
        else (info.get("model") or identity.get("model"))
    model_t = info.get("model_t") or identity.get("model_t")
    distill = info.get("distill") or identity.get("distill")
    if kind == "student" and not model_t:
        match = STUDENT_FOLDER.match(os.path.basename(folder))
        model_t = match.group("model_t") if match else None
    if not model or (kind == "student" and not (model_t and distill)):
        return None
    epochs = _number(info.get("epochs"))
    fingerprint = identity.get("teacher_weights") if kind == "student" else None
    return Run(folder=folder, kind=kind, model=str(model), trial=str(info.get("trial", "?")),
               epochs=int(epochs) if epochs is not None else None,
               model_t=str(model_t) if model_t and kind == "student" else None,
               distill=str(distill) if kind == "student" else None,
               info=info, recorded=_recorded_settings(info),
               teacher_weights=str(fingerprint) if fingerprint else None,
               path_t=str(info["path_t"]) if kind == "student" and info.get("path_t") else None,
               teacher_acc=_number(info.get("teacher_acc")) if kind == "student" else None)


def _transfer_run(folder, info):
    """A linear-probe run of eval_rep.py: the probe's data set and settings, and from the copy of
    the student's run.json (`student`) the student's kind, pair, method, teacher and settings.
    None without the student model or the data set."""
    identity = _identity(info)
    model = info.get("model_s") or identity.get("model_s")
    dataset = info.get("dataset") or identity.get("dataset")
    if not model or not dataset:
        return None
    student = info.get("student") if isinstance(info.get("student"), dict) else {}
    s_identity = _identity(student)
    s_kind = student.get("kind") or s_identity.get("kind") or ("student" if student.get("distill") else None)
    model_t = student.get("model_t") or s_identity.get("model_t")
    distill = student.get("distill") or s_identity.get("distill")
    if s_kind == "student" and not (model_t and distill):
        s_kind = None  # a student whose run.json names no teacher or method: not placed in a row
    if s_kind not in ("student", "teacher"):
        s_kind = None
    # the student's settings under their own names, the probe's as probe_<name>, and which
    # checkpoint of the student was probed (its best, its last, ...)
    checkpoint = info.get("student_checkpoint_tag") or "best"
    probe = identity.get("settings") if isinstance(identity.get("settings"), dict) else None
    s_recorded = _recorded_settings(student) if s_kind else {}
    recorded = None
    if probe is not None or s_recorded is not None:
        recorded = {**(s_recorded or {}), **{PROBE + k: v for k, v in (probe or {}).items() if k != "seed"},
                    "checkpoint": checkpoint}
    flags = {**(student if s_kind else {}), **{PROBE + k: v for k, v in info.items()}, "checkpoint": checkpoint}
    fingerprint = s_identity.get("teacher_weights") if s_kind == "student" else None
    epochs = _number(info.get("epochs"))
    weights = info.get("student_weights") or identity.get("student_weights")
    return Run(folder=folder, kind="transfer", model=str(model), trial=str(info.get("trial", "?")),
               epochs=int(epochs) if epochs is not None else None,
               model_t=str(model_t) if s_kind == "student" else None,
               distill=str(distill) if s_kind == "student" else None,
               info=info, recorded=recorded, flags=flags,
               teacher_weights=str(fingerprint) if fingerprint else None,
               path_t=str(student["path_t"]) if s_kind == "student" and student.get("path_t") else None,
               teacher_acc=_number(student.get("teacher_acc")) if s_kind == "student" else None,
               dataset=str(dataset), student_kind=s_kind,
               student_trial=str(student["trial"]) if "trial" in student else None,
               student_weights=str(weights) if weights else None,
               student_checkpoint=str(info.get("student_checkpoint") or "") or None)


def load_run(folder):
    """-> (Run or None, [problems]). None when run.json itself is unusable."""
    info, problem = _read_json(os.path.join(folder, "run.json"))
    if info is None:
        return None, [problem]
    identity = _identity(info)
    kind = info.get("kind") or identity.get("kind") or ("student" if "model_s" in info else "teacher")
    flags = _generated_flags(info)
    if kind == "transfer":
        run = _transfer_run(folder, info)
        if run is None:
            return None, ["run.json lacks the student model or the probe's data set"]
        student = info.get("student") if isinstance(info.get("student"), dict) else {}
        flags += _generated_flags(student)  # a student trained on generated data: not a real result either
    else:
        run = _training_run(folder, info, kind)
        if run is None:
            return None, ["run.json lacks the model names or the method"]
    problems = []
    run.curve, forward_only, problem = read_metrics(os.path.join(folder, "metrics.jsonl"))
    run.forward_only = frozenset(forward_only)
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
        flags = run.info if run.flags is None else run.flags
        for name in sorted(names[(run.kind, run.distill)] - NOT_SETTINGS):
            recorded = run.recorded if run.recorded is not None and name in run.recorded else flags
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
