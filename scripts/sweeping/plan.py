"""Skip markers: which runs finished with the same arguments, and the DRY_RUN listing."""
import os
import re
import sys


def shell_quote(args):
    """One line that sh splits back into the same words (the shell scripts' quoting, so
    markers they wrote still match)."""
    out = []
    for word in args:
        if word == "" or re.search(r"[^A-Za-z0-9_./:=,+@%-]", word):
            word = "'" + word.replace("'", "'\\''") + "'"
        out.append(word)
    return " ".join(out)


def marker_path(config, run):
    return os.path.join(config.log_dir, f"{run.name}.done")


def read_marker(path):
    try:
        with open(path) as fh:
            return fh.read().rstrip("\n")
    except OSError:
        return None


def plan(config, runs):
    """-> (runs to start, number skipped). A run whose marker records the same arguments
    finished and is skipped; with other arguments it is started again (--resume auto lets
    train_student.py decide whether the run folder fits). DRY_RUN prints the commands."""
    queue, skipped = [], 0
    python = shell_quote(config.launcher)
    for run in runs:
        marker = marker_path(config, run)
        recorded = None if config.force else read_marker(marker)
        if recorded is not None:
            if recorded == shell_quote(run.args):
                print(f"skip {run.name}: finished (remove {marker} or set FORCE=1 to run it again)", file=sys.stderr)
                skipped += 1
                continue
            print(f"rerun {run.name}: it finished with other arguments ({marker})", file=sys.stderr)
        if config.dry_run:
            print(f"{python} {shell_quote(run.args)}")
        queue.append(run)
    return queue, skipped
