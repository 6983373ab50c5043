"""Accuracy curves: one PNG per teacher/student pair (and one for the vanilla runs), real and
generated-data runs in separate files. Drawing needs matplotlib; `plot_data` does not."""
import os
import re

from scripts.summary.experiments import _pair_text, student_rows, vanilla_groups, vanilla_labels

MARKERS = "osD^vP*Xph<>"
LINESTYLES = ("-", "--", "-.", ":")


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
