"""The two sweeps' command lines: distill and vanilla, each planned and run, and main."""
import os
import sys

from scripts.sweeping.config import (EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, ROOT, ConfigError, env_value, read_config,
                                     words)
from scripts.sweeping.help_text import distill_help, vanilla_help
from scripts.sweeping.plan import plan
from scripts.sweeping.pool import execute
from scripts.sweeping.runs import (ALL_PAIRS, DEFAULT_METHODS, TEACHERS, distill_runs, load_methods, locate_teachers,
                                   parse_methods, parse_pairs, vanilla_runs)


def distill_main(args, environ):
    """run_distill.sh: every trial x method x pair; configured by the environment only."""
    if args and args[0] in ("-h", "--help"):
        print(distill_help(), end="")
        return EXIT_OK
    if args:
        raise ConfigError(f"unknown argument '{args[0]}'; configure by environment variables, "
                          f"see: sh scripts/run_distill.sh -h")
    from helper.teacher import check_layout
    config = read_config(environ)
    registry = load_methods()
    methods = parse_methods(env_value(environ, "METHODS", DEFAULT_METHODS), registry)
    pairs = parse_pairs(env_value(environ, "PAIRS", " ".join(ALL_PAIRS)))
    layout = env_value(environ, "TEACHER_LAYOUT", "packd")
    try:
        check_layout(layout)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    save_t = env_value(environ, "SAVE_T", "./save_t")
    teacher_paths = locate_teachers([t for t, _ in pairs], save_t, config.save_dir, layout)
    missing = [t for t, path in teacher_paths.items() if path is None]
    status = sweep(config, distill_runs(config, methods, pairs, registry, teacher_paths))
    if missing:
        print(f"error: skipped all runs of the missing teacher(s): {' '.join(missing)}", file=sys.stderr)
        if status == EXIT_OK:
            status = EXIT_USAGE
    return status


def vanilla_main(args, environ):
    """run_vanilla.sh: the teachers (MODELS) plus the models named on the command line."""
    for arg in args:
        if arg in ("-h", "--help"):
            print(vanilla_help(), end="")
            return EXIT_OK
        if arg.startswith("-"):
            raise ConfigError(f"unknown option '{arg}'; see: sh scripts/run_vanilla.sh -h")
    config = read_config(environ)
    listed = environ.get("MODELS")  # set but empty: only the command line's models
    models = list(dict.fromkeys((words(listed) if listed is not None else list(TEACHERS)) + list(args)))
    if not models:
        raise ConfigError("no model to train; name some (sh scripts/run_vanilla.sh vgg8) or unset MODELS")
    return sweep(config, vanilla_runs(config, models))


def sweep(config, runs):
    """Plan (skip markers, DRY_RUN listing) and run."""
    if not config.dry_run:
        try:
            os.makedirs(config.log_dir, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create LOG_DIR '{config.log_dir}': {e.strerror}") from None
    queue, skipped = plan(config, runs)
    return execute(config, queue, skipped)


MODES = {"distill": distill_main, "vanilla": vanilla_main}


def main(argv=None, environ=None):
    """-> exit status. Runs from the repository root whatever the caller's folder, so the
    relative defaults (./save, ./save_t) and the runs' paths mean the same everywhere."""
    argv = sys.argv[1:] if argv is None else list(argv)
    environ = os.environ if environ is None else environ
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # progress lines in order with the runs' starts
    if not argv or argv[0] not in MODES:
        given = f"'{argv[0]}'" if argv else "none"
        print(f"error: the first argument must be one of {', '.join(MODES)} (got {given}); "
              f"e.g. python scripts/sweep.py distill -h", file=sys.stderr)
        return EXIT_USAGE
    try:
        os.chdir(ROOT)
        return MODES[argv[0]](argv[1:], environ)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # before any run started (the pool handles its own signals)
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
