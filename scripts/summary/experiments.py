"""Grouping runs into experiments, and what tells experiments apart.

Runs are one experiment when they share the pair, the method, the teacher's weights and the
value of every setting (`Run.settings`) and differ only in trial/seed. Several experiments of
one method become separate rows, labelled by the settings that differ among them.
"""
import re

from scripts.summary.methods import method_name, method_order

# Column order of the benchmark (the PACKD authors' run_distill.sh); other pairs follow.
BENCHMARK_PAIRS = [
    ("wrn_40_2", "wrn_16_2"), ("wrn_40_2", "wrn_40_1"), ("resnet56", "resnet20"),
    ("resnet110", "resnet32"), ("resnet32x4", "resnet8x4"), ("vgg13", "vgg8"),
    ("vgg13", "MobileNetV2"), ("ResNet50", "MobileNetV2"), ("ResNet50", "vgg8"),
    ("resnet32x4", "ShuffleV1"), ("resnet32x4", "ShuffleV2"), ("wrn_40_2", "ShuffleV1"),
]
# Short names in row labels (as in the run folders' names: r:<gamma>_a:<alpha>_b:<beta>).
SHORT = {"gamma": "r", "alpha": "a", "beta": "b", "alpha_aug": "ag", "few_ratio": "few-ratio"}
# Settings always in a label when the test holds, even when every run of the row's method
# shares the value: a few-shot run (trained on a part of the training set) never looks like
# a full-data one.
ALWAYS_SHOWN = {"few_ratio": lambda value: isinstance(value, float) and value != 1.0}


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
    """'PACKD [ag:0, epochs:1, T2]': the settings in `varying` and those of ALWAYS_SHOWN whose
    test holds (e.g. 'PACKD [few-ratio:0.25]'), the loss weights, epochs and data subset first,
    then the tag."""
    values = dict(settings)
    first = ("gamma", "alpha", "beta", "alpha_aug", "epochs", "few_ratio")
    varying = set(varying) | {n for n, shown in ALWAYS_SHOWN.items() if n in values and shown(values[n])}
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
