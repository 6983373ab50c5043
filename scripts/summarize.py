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
imported. A few-shot run (--few-ratio below 1) always says so in its row label.

Linear-probe transfer runs of eval_rep.py (`kind: "transfer"`) get a section per data set
(STL-10, Tiny-ImageNet-200): the same pairs-by-methods tables of the probes' top-1, probes
averaged only when their students are one experiment and the probed checkpoint and the
probe's settings are the same; a Teacher row from probes of the very teacher weights the
students used (matched by fingerprint), a Student row from probes of vanilla runs.

The work is done in scripts/summary/ (runs: reading; experiments: grouping; tables and
transfer: markdown; report: the document; plots).
"""
import argparse
import os
import sys

# `python scripts/summarize.py` from any folder: the repository root holds distiller_zoo/ and scripts/.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

# The names below are the ones tests and older callers import from this file.
from scripts.summary import methods  # noqa: E402  (its _registry is what tests replace)
from scripts.summary.experiments import BENCHMARK_PAIRS, student_rows, vanilla_groups  # noqa: E402,F401
from scripts.summary.methods import method_classes, method_name, method_order  # noqa: E402,F401
from scripts.summary.plots import plot_curve, plot_data, write_plots  # noqa: E402,F401
from scripts.summary.report import GENERATED_TITLE, report  # noqa: E402,F401
from scripts.summary.runs import Run, find_runs, load_run, read_curve, read_metrics  # noqa: E402,F401
from scripts.summary.tables import benchmark_table, format_cell, vanilla_table  # noqa: E402,F401


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
