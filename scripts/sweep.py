#!/usr/bin/env python3
"""The benchmark sweeps: many training runs, a pool of GPU slots, logs and skip markers.

    python scripts/sweep.py distill          (sh scripts/run_distill.sh: teacher -> student pairs)
    python scripts/sweep.py vanilla [MODEL]  (sh scripts/run_vanilla.sh: the teachers)
    python scripts/sweep.py distill -h       (the configuration: environment variables)

Configured by environment variables, as the shell scripts it replaces were, so their
commands keep working. Each run is one child process `$PYTHON train_*.py ...` started
in the repository root, pinned to one GPU through CUDA_VISIBLE_DEVICES, its output
appended to LOG_DIR/<run>.log. A run that exits 0 leaves LOG_DIR/<run>.done holding its
arguments; a later sweep with the same arguments skips it.

Exit status: 0 every run finished or was skipped, 1 a run failed or was refused,
2 bad configuration or a missing teacher, 130 interrupted (SIGINT/SIGTERM/SIGHUP).

The work is done in scripts/sweeping/ (config: the environment; runs: what to run; plan:
skip markers; pool: the processes and signals; help_text; cli: the two sweeps).
"""
import os
import sys

# `python scripts/sweep.py` from any folder: the repository root holds distiller_zoo/ and scripts/.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # the sweep imports the method registry and the teacher lookup
    sys.path.insert(0, ROOT)

# The names below are the ones tests and older callers import from this file.
from scripts.sweeping.config import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, Config,  # noqa: E402,F401
                                     ConfigError, env_value, positive_int, read_config, words)
from scripts.sweeping.runs import (ALL_PAIRS, DEFAULT_METHODS, TEACHERS, Run, distill_runs,  # noqa: E402,F401
                                   load_methods, locate_teachers, method_flags, pair_weights, parse_methods,
                                   parse_pairs, split_variant, vanilla_runs)
from scripts.sweeping.plan import marker_path, plan, read_marker, shell_quote  # noqa: E402,F401
from scripts.sweeping.pool import (CHILD_REFUSED, POLL_SECONDS, Job, Outcome, StopRequest,  # noqa: E402,F401
                                   child_env, execute, exit_text, forward_stop, last_line, record, run_pool, start)
from scripts.sweeping.help_text import (COMMON_HELP, DISTILL_HELP, VANILLA_HELP, distill_help,  # noqa: E402,F401
                                        help_comment, vanilla_help)
from scripts.sweeping.cli import MODES, distill_main, main, sweep, vanilla_main  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(main())
