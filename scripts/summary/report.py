"""The whole markdown document: the CIFAR-100 tables, the transfer tables, the runs on
generated data in their own section, unfinished runs and problems."""
import os

from scripts.summary.methods import method_name, registry_problem
from scripts.summary.tables import cifar_tables
from scripts.summary.transfer import dataset_title, transfer_sections

GENERATED_TITLE = "Runs on GENERATED data (not CIFAR-100; for trying the code only)"


def describe(run):
    """One line naming a run: pair and method (or the vanilla model), trial, generated data;
    for a probe, also its data set and the student's trial."""
    generated = " [GENERATED data]" if run.generated else ""
    if run.kind == "transfer":
        if run.student_kind == "student":
            what = f"{run.model_t} → {run.model}, {method_name(run.distill)}, student trial {run.student_trial}"
        elif run.student_kind == "teacher":
            what = f"{run.model} (vanilla), trial {run.student_trial}"
        else:
            what = f"{run.model} (`{run.student_checkpoint or '?'}`)"
        return f"linear probe on {dataset_title(run.dataset)} of {what}, probe trial {run.trial}{generated}"
    what = f"{run.model_t} → {run.model}, {method_name(run.distill)}" \
        if run.kind == "student" else f"{run.model} (vanilla)"
    return f"{what}, trial {run.trial}{generated}"


def _display(path):
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else path


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
    problem = registry_problem()
    if problem:
        doc += [f"Method names are the raw --distill names: distiller_zoo could not be imported "
                f"({problem}).", ""]
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
    doc += cifar_tables(real, "##")
    doc += transfer_sections(real, "##")
    if generated:
        doc += [f"## {GENERATED_TITLE}", ""]
        if any(r.kind != "transfer" for r in generated):
            doc += ["These runs trained on a generated data set in the CIFAR-100 format; their accuracies "
                    "say nothing about CIFAR-100 and are never mixed with the CIFAR-100 runs.", ""]
        doc += cifar_tables(generated, "###", " (GENERATED data)")
        doc += transfer_sections(generated, "###", generated=True)
    if unfinished:
        doc += ["## Unfinished runs (no summary.json; not averaged)", ""]
        for run in sorted(unfinished, key=lambda r: r.folder):
            if run.curve:
                epoch, acc = run.curve[-1]
                state = f"epoch {epoch}/{run.epochs if run.epochs is not None else '?'}, test top-1 {acc:.2f}"
            else:
                state = "no epoch finished yet"
            doc.append(f"- {describe(run)}: {state} (`{_display(run.folder)}`)")
        doc.append("")
    if problems:
        doc += ["## Problems", ""]
        doc += [f"- `{_display(folder)}`: {problem}" for folder, problem in sorted(problems)]
        doc.append("")
    return "\n".join(doc)
