"""Markdown: the cell format, and the CIFAR-100 tables (teacher/student pairs as columns,
methods as rows; last and best epoch; the vanilla runs) with the teachers under them."""
import statistics

from scripts.summary.experiments import (_label, _natural, _pair_order, _pair_text, _sorted_rows, _varying,
                                         pair_teachers, student_rows, vanilla_groups, vanilla_labels)
from scripts.summary.methods import method_name, method_order

MISSING = "-"


def format_cell(values):
    if not values:
        return MISSING
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.2f} (n=1)"
    return f"{mean:.2f} ± {statistics.stdev(values):.2f} (n={len(values)})"


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


def split_notes(rows, splits):
    """The note under a table whose rows carry [...] labels: what the brackets mean, and each
    (pair, method) whose runs are several experiments."""
    if not (splits or any("[" in row[0] for row in rows)):
        return []
    out = ["Rows with [...] are distinct experiments (of one method, or of the students' vanilla "
           "runs), told apart by the settings in "
           "brackets (r/a/b: the loss weights -r/-a/-b, ag: --alpha_aug, few-ratio: --few-ratio, the fraction "
           "of the training set used, shown whenever below 1, "
           "T<n>: the pair's n-th teacher below); runs of different rows are never averaged together."]
    for pair, distill, n, what in splits:
        out.append(f"- {method_name(distill)} on {_pair_text(pair)}: {n} distinct experiments "
                   f"(differing in {', '.join(what)}), shown in separate rows, not averaged.")
    return out + [""]


def method_rows(students, pairs, metric):
    """The method part of a table: a row per experiment, a cell per pair. -> (rows, splits)."""
    row_of, labels, splits = student_rows(students)
    rows = []
    for key in _sorted_rows(labels, lambda k: method_order(k[0])):
        cells = []
        for pair in pairs:
            values = [getattr(r, metric) for r in students
                      if r.finished and r.pair == pair and row_of[r.folder] == key]
            cells.append(format_cell(values))
        rows.append([labels[key]] + cells)
    return rows, splits


def group_rows(base, groups, models, metric):
    """Rows of plain-model groups {(model, settings): [runs]} for columns of `models` (one model
    per column): a row per settings, labelled by the settings that differ; empty rows dropped."""
    groups = {k: v for k, v in groups.items() if k[0] in set(models)}
    settings = {k[1] for k in groups}
    varying = _varying(settings)
    rows = []
    for s in sorted(settings, key=lambda s: _natural(_label(base, s, varying))):
        row = [_label(base, s, varying)] + [
            format_cell([getattr(r, metric) for r in groups.get((model, s), [])]) for model in models]
        if any(c != MISSING for c in row[1:]):
            rows.append(row)
    return rows


def benchmark_table(runs, metric):
    """Markdown of `metric` ('last_acc' or 'best_acc') for the student runs' pairs: the table,
    a note on rows split into several experiments, and the teachers used."""
    students = [r for r in runs if r.kind == "student"]
    vanilla = [r for r in runs if r.kind == "teacher" and r.finished]
    pairs = sorted({r.pair for r in students}, key=_pair_order)

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
    # Vanilla runs of the student models: a row per experiment (settings).
    out, _ = pair_table(pairs, teacher_row, vanilla_groups(vanilla), students, metric)
    out += teacher_notes(students, vanilla, pairs)
    return "\n".join(out)


def pair_table(pairs, teacher_row, student_groups, students, metric):
    """A table with the teacher/student pairs as columns: the teacher row, a Student row per
    plain-model experiment of `student_groups`, the methods' rows of `students`, then the note
    on rows split into several experiments. -> (lines, rows)."""
    header = ["Teacher <br> Student"] + [f"{t} <br> {s}" for t, s in pairs]
    rows = [teacher_row] + group_rows("Student", student_groups, [s for _, s in pairs], metric)
    method_part, splits = method_rows(students, pairs, metric)
    rows += method_part
    return [_markdown(header, rows), "", *split_notes(rows, splits)], rows


def model_table(groups, what="settings in brackets"):
    """Markdown of plain-model groups {(model, settings): [finished runs]}: a row per group,
    the last and the best epoch; a note on models split into several experiments."""
    labels = vanilla_labels(groups)
    keys = sorted(groups, key=lambda k: (k[0], _natural(labels[k])))
    rows = [[labels[k], format_cell([r.last_acc for r in groups[k]]),
             format_cell([r.best_acc for r in groups[k]])] for k in keys]
    out = [_markdown(["Model", "last epoch", "best epoch"], rows)]
    split = sorted({k[0] for k in keys if sum(1 for other in keys if other[0] == k[0]) > 1})
    if split or any("[" in labels[k] for k in keys):
        out.append("")
    if split:
        out.append(f"Rows with [...] are distinct experiments of one model ({what}); "
                   f"never averaged together: {', '.join(split)}.")
    if any("few-ratio:" in labels[k] for k in keys):
        out.append("few-ratio: --few-ratio, the fraction of the training set used (shown whenever below 1).")
    return "\n".join(out)


def vanilla_table(runs):
    return model_table(vanilla_groups([r for r in runs if r.finished]))


def cifar_tables(runs, level, suffix=""):
    """The Last/Best/Vanilla sections of one data kind."""
    doc = []
    if any(r.kind == "student" for r in runs):
        doc += [f"{level} Last epoch{suffix}", "", benchmark_table(runs, "last_acc"), "",
                f"{level} Best epoch{suffix}", "", benchmark_table(runs, "best_acc"), ""]
    if any(r.kind == "teacher" and r.finished for r in runs):
        doc += [f"{level} Vanilla (cross-entropy) runs{suffix}", "", vanilla_table(runs), ""]
    return doc
