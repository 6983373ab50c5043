"""Markdown: the representation-transfer tables (eval_rep.py: a linear classifier trained on
the frozen pooled features of a CIFAR-100 model, tested on STL-10 or Tiny-ImageNet-200).

One section per data set; within it one set of tables per probe recipe (the probe's own
settings, `probe_*`; one set when all probes used the same recipe, the usual case). Columns
are the students' teacher/student pairs, rows the students' methods, labelled as in the
CIFAR-100 tables (the student's settings that differ, few-ratio below 1, T<n>, and which
checkpoint of the student was probed when that differs). Probes are averaged only when their
students are one experiment (pair, method, teacher weights, settings; trials apart), the same
checkpoint of them was probed and the recipe is the same. Teacher row: probes of the very
weights the students' teacher had (matched by fingerprint). Student row: probes of vanilla
(cross-entropy) runs of the student model.
"""
from scripts.summary.experiments import _natural, _pair_order, _pair_text, _show, _varying, pair_teachers
from scripts.summary.runs import PROBE
from scripts.summary.tables import format_cell, model_table, pair_table

DATASET_TITLES = {"STL-10": "STL-10", "TinyImageNet200": "Tiny-ImageNet-200"}
DATASET_ORDER = ("STL-10", "TinyImageNet200")


def dataset_title(name):
    return DATASET_TITLES.get(name, name)


def _dataset_order(name):
    return (DATASET_ORDER.index(name), "") if name in DATASET_ORDER else (len(DATASET_ORDER), name)


def recipe(run):
    """The probe's own settings: ((probe_<name>, value), ...)."""
    return tuple(sorted((n, v) for n, v in run.settings if n.startswith(PROBE)))


def probe_groups(probes):
    """{(model, settings): [finished probes]} of the probes of vanilla (cross-entropy) runs."""
    groups = {}
    for run in probes:
        if run.student_kind == "teacher" and run.finished:
            groups.setdefault((run.model, run.settings), []).append(run)
    return groups


def _teacher_probes(probes, key):
    """Finished probes of the teacher weights `key` (a pair_teachers key); none for a teacher
    whose fingerprint the student did not record."""
    if key[0] != "weights":
        return []
    return [r for r in probes if r.finished and r.student_weights == key[1]]


def transfer_table(probes, metric):
    """Markdown of `metric` ('last_acc' or 'best_acc') of one data set and recipe: the table, a
    note on split rows, the students and teachers probed."""
    students = [r for r in probes if r.student_kind == "student"]
    pairs = sorted({r.pair for r in students}, key=_pair_order)
    teachers = pair_teachers(students)
    teacher_row = ["Teacher"]
    for pair in pairs:
        cells = [format_cell([getattr(r, metric) for r in _teacher_probes(probes, key)]) for key in teachers[pair]]
        teacher_row.append(cells[0] if len(cells) == 1 else
                           ", ".join(f"T{i + 1}: {c}" for i, c in enumerate(cells)))
    out, rows = pair_table(pairs, teacher_row, probe_groups(probes), students, metric)
    if any("checkpoint:" in row[0] for row in rows):
        out += ["checkpoint: the student's checkpoint that was probed (best: its `<model>_best.pth`, the "
                "authors' choice; last: its last epoch).", ""]
    out += student_notes(students, probes, pairs)
    return "\n".join(out)


def student_notes(students, probes, pairs):
    """Per pair: the students probed, and each teacher (checkpoint, fingerprint, whether its
    weights were probed: the Teacher row)."""
    teachers = pair_teachers(students)
    lines = ["Students and teachers (T<n>: the pair's n-th teacher, as the students' run.json names it: "
             "checkpoint given with --path_t, SHA-256 fingerprint of its weights; Teacher row: probes of "
             "exactly those weights, '-' when none is here):"]
    for pair in pairs:
        mine = [r for r in students if r.pair == pair]
        runs = {r.info.get("student_run") or r.folder for r in mine}
        texts = []
        for i, key in enumerate(teachers[pair]):
            of_teacher = [r for r in mine if r.teacher_key == key]
            paths = sorted({r.path_t for r in of_teacher if r.path_t})
            where = ", ".join(f"`{p}`" for p in paths) if paths else "path not recorded"
            fingerprint = f"weights {key[1]}" if key[0] == "weights" else \
                "weights fingerprint not recorded (older student run; its teacher cannot be matched to a probe)"
            n = len(_teacher_probes(probes, key))
            texts.append(f"T{i + 1} {where}, {fingerprint}, " + (f"{n} probe(s) of it" if n else "not probed"))
        lines.append(f"- {_pair_text(pair)}: {len(mine)} probe(s) of {len(runs)} student run(s); " + "; ".join(texts))
    return lines


def vanilla_probe_table(probes):
    return model_table(probe_groups(probes), "settings of its training, or the checkpoint probed, in brackets")


def other_probes(probes):
    """Lines for finished probes of checkpoints with no run.json beside them (method and teacher
    unknown): one per weights fingerprint."""
    groups = {}
    for run in probes:
        if run.student_kind is None and run.finished:
            groups.setdefault((run.model, run.student_weights), []).append(run)
    lines = []
    for (model, weights), runs in sorted(groups.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        paths = sorted({r.student_checkpoint for r in runs if r.student_checkpoint})
        where = ", ".join(f"`{p}`" for p in paths) if paths else "checkpoint not recorded"
        lines.append(f"- {model}, {where}, weights {weights or 'not recorded'}: last epoch "
                     f"{format_cell([r.last_acc for r in runs])}, best epoch {format_cell([r.best_acc for r in runs])}")
    return lines


def _recipe_suffix(key, varying):
    values = dict(key)
    return f"; probe {', '.join(f'{n[len(PROBE):]}:{_show(values.get(n))}' for n in varying)}" if varying else ""


def transfer_sections(runs, level, generated=False):
    """The markdown sections of the transfer runs among `runs`, one per data set."""
    probes = [r for r in runs if r.kind == "transfer"]
    doc = []
    for dataset in sorted({r.dataset for r in probes}, key=_dataset_order):
        title = dataset_title(dataset)
        these = [r for r in probes if r.dataset == dataset]
        mark = " (GENERATED data)" if generated else ""
        doc += [f"{level} Representation transfer: linear probe on {title}, test top-1 %{mark}", "",
                f"A linear classifier trained on the frozen pooled features of each CIFAR-100 model (eval_rep.py, "
                f"the PACKD authors' recipe), tested on {title}. Cells: mean ± sample standard deviation over "
                f"probes (n = probes: the students' trials, and the probes' own trials when there are several); "
                f"probes are averaged only when their students are one experiment (pair, method, teacher weights, "
                f"settings) and the probed checkpoint and the probe's settings are the same.", ""]
        if generated:
            doc += [f"These probes ran on a generated data set in {title}'s format, or probed students trained on "
                    f"generated data: their accuracies say nothing about transfer.", ""]
        recipes = {}
        for run in these:
            recipes.setdefault(recipe(run), []).append(run)
        varying = _varying(list(recipes))
        for key in sorted(recipes, key=lambda k: _natural(_recipe_suffix(k, varying))):
            group = recipes[key]
            where = f"linear probe on {title}{_recipe_suffix(key, varying)}" + (", GENERATED data" if generated else "")
            sub = level + "#"
            if any(r.student_kind == "student" for r in group):
                doc += [f"{sub} Last epoch ({where})", "", transfer_table(group, "last_acc"), "",
                        f"{sub} Best epoch ({where})", "", transfer_table(group, "best_acc"), ""]
            if probe_groups(group):
                doc += [f"{sub} Vanilla (cross-entropy) models ({where})", "", vanilla_probe_table(group), ""]
            others = other_probes(group)
            if others:
                doc += [f"{sub} Other checkpoints ({where})", "",
                        "Probes of checkpoints without a run.json beside them (e.g. released teachers): method "
                        "and teacher unknown, so not in the tables above; one line per weights fingerprint.", ""]
                doc += others + [""]
    return doc
