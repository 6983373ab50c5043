"""The sweeps behind `scripts/sweep.py` (run_distill.sh, run_vanilla.sh), one responsibility
per module.

    config     the settings from environment variables (Config, read_config), ConfigError,
               the exit statuses and the repository root the runs start in
    runs       what to run: the benchmark's pairs and teachers, the methods and their flags
               from the registry, one Run per trial x method x pair, the teachers' checkpoints
    plan       skip markers (LOG_DIR/<run>.done) and the DRY_RUN listing
    pool       the child processes on GPU slots, their logs, and Ctrl-C forwarded to them
    help_text  the -h text of both sweeps
    cli        distill / vanilla: configuration -> runs -> plan -> pool; main

Each module imports only those above it in this list.
"""
