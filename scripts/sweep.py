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
"""
import collections
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # the sweep imports the method registry and the teacher lookup
    sys.path.insert(0, ROOT)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# train_student.py / train_teacher.py exit 2 for bad input, including a run folder whose
# recorded settings differ from the command's (one line naming the differing flags).
CHILD_REFUSED = 2

ALL_PAIRS = ("wrn_40_2:wrn_16_2 wrn_40_2:wrn_40_1 resnet56:resnet20 resnet110:resnet32 resnet32x4:resnet8x4 "
             "vgg13:vgg8 vgg13:MobileNetV2 ResNet50:MobileNetV2 ResNet50:vgg8 resnet32x4:ShuffleV1 "
             "resnet32x4:ShuffleV2 wrn_40_2:ShuffleV1").split()
TEACHERS = ("wrn_40_2", "resnet56", "resnet110", "resnet32x4", "vgg13", "ResNet50")
DEFAULT_METHODS = "packd"
POLL_SECONDS = 0.05

COMMON_HELP = """\
#   TRIALS        trials per {per}, run as --trial 0 .. TRIALS-1 (default: 1)
{pairs_var}#   GPUS          comma list of GPU ids (default: 0); every run sees exactly one of them
#                 through CUDA_VISIBLE_DEVICES (GPUS_PER_RUN of them with GPUS_PER_RUN > 1)
#   JOBS_PER_GPU  runs at the same time on each GPU (group) (default: 1)
#   GPUS_PER_RUN  GPUs of one run (default: 1); > 1 starts each run under torchrun
#                 (python -m torch.distributed.run --standalone --nproc_per_node N), the
#                 GPUS split into groups of N
{save_t_var}#   SAVE_DIR      --save_dir of the runs (default: ./save)
#   LOG_DIR       one <run>.log per run, plus <run>.done markers (default: $SAVE_DIR/logs)
#   EXTRA_ARGS    appended to every command, split on spaces
#                 (e.g. "--epochs 1 --data_folder /data --device cpu")
#   PYTHON        interpreter of the runs (default: python); the sweep itself runs under
#                 SWEEP_PYTHON (default: python3, else python)
#   DRY_RUN=1     print one command per run (stdout) and run nothing
#   FORCE=1       run again even the runs that already finished
#
# Relative paths are relative to the repository root (the runs start there).
#
# Finished runs are skipped: when a command exits 0 its arguments are written to
# LOG_DIR/<run>.done; a later sweep skips the run when that marker records the same
# arguments. With other arguments (e.g. another --epochs in EXTRA_ARGS) the run is
# started again with --resume auto and {script} decides: it continues or
# trains a fresh run, or refuses in one line naming the flags that differ from the run
# folder's (exit 2, reported as REFUSED). Failed or interrupted runs have no marker and
# run again with --resume auto, continuing from their last latest.pth (FORCE=1 passes
# --overwrite instead and trains from scratch).
#
# Ctrl-C (or SIGTERM) stops the sweep: no new run starts, each running one gets one
# SIGINT, saves its latest.pth and stops; the sweep waits for them and exits 130.
# Running the same command again continues them. A second Ctrl-C makes the runs give up
# at once (their last finished epoch is kept).
"""

DISTILL_HELP = """\
# Distil every teacher -> student pair of the CIFAR-100 benchmark (PACKD by default).
#
# Usage:  sh scripts/run_distill.sh          (run the sweep; = python scripts/sweep.py distill)
#         sh scripts/run_distill.sh -h       (this help)
#
{pair_list}
#
# Configuration (environment variables):
#   METHODS       methods to run, space or comma separated (default: packd). Any
#                 --distill name of distiller_zoo, or name+variant for one of the class's
#                 sweep_variants (kd+ls, dkd+ls: --logit_stand); each gets the loss weights
#                 its class uses for the pair (default_weights, or its per-pair recipe) as
#                 -r/-a/-b and its sweep_args:
{methods}
""" + COMMON_HELP + """\
#
# TEACHER_LAYOUT (default: packd) orders the released layouts. Teacher checkpoint of
# model T, first that exists:
#   $SAVE_T/T_cifar100_lr_0.05_decay_0.0005_trial_0/ckpt_epoch_240.pth   (PACKD's save_t)
#   $SAVE_T/T_vanilla/ckpt_epoch_240.pth                               (RepDistiller's archive)
#   (TEACHER_LAYOUT=repdistiller: these two the other way round)
#   {{$SAVE_T,$SAVE_DIR}}/models/T_cifar100_lr_*_decay_*_trial_0/T_last.pth  (run_vanilla.sh,
#       only when its summary.json says it finished), else ckpt_epoch_240.pth there
# The file used for each teacher and its recorded test accuracy are printed (stderr).
# A missing teacher is reported on stderr with the paths looked at; its runs are
# skipped, the other runs go on, and the sweep exits with status 2 at the end.
#
# Exit status: 0 all runs finished (or were skipped as finished), 1 a run failed or was
# refused, 2 bad configuration or a missing teacher, 130 interrupted.
"""

VANILLA_HELP = """\
# Train the teachers (plain cross-entropy) of the CIFAR-100 benchmark.
#
# Usage:  sh scripts/run_vanilla.sh [MODEL ...]   (the teachers, plus any models named;
#                                                  = python scripts/sweep.py vanilla [MODEL ...])
#         sh scripts/run_vanilla.sh -h            (this help)
#         e.g. sh scripts/run_vanilla.sh vgg8     (also trains the vgg8 baseline)
#
# Teachers: {teachers}. Each run writes
# $SAVE_DIR/models/<model>_cifar100_lr_<lr>_decay_<wd>_trial_<trial>/, where
# run_distill.sh looks for teachers (trial 0).
#
# Configuration (environment variables):
#   MODELS        replaces the teacher list (MODELS= with only command-line models)
""" + COMMON_HELP + """\
#
# Exit status: 0 all runs finished (or were skipped as finished), 1 a run failed or was
# refused, 2 bad configuration, 130 interrupted.
"""


class ConfigError(Exception):
    """Bad configuration: reported as one line 'error: ...' and exit status 2."""


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------
@dataclass
class Config:
    """The settings shared by both sweeps, read from the environment (sh's ${VAR:-default}:
    an empty variable counts as unset)."""
    gpus: list               # one entry per slot group: "0", or "0,1" with GPUS_PER_RUN=2
    jobs_per_gpu: int
    trials: int
    save_dir: str
    log_dir: str
    extra_args: list
    python: list
    dry_run: bool
    force: bool
    environ: dict = field(default_factory=dict)
    gpus_per_run: int = 1

    @property
    def launcher(self):
        """The command a run starts with: the interpreter, under torchrun for several GPUs."""
        if self.gpus_per_run == 1:
            return self.python
        return [*self.python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                str(self.gpus_per_run)]

    @property
    def resume_args(self):
        """An interrupted or re-configured run continues from its latest.pth; FORCE=1 trains again."""
        return ["--overwrite"] if self.force else ["--resume", "auto"]


def env_value(environ, name, default):
    return environ.get(name) or default


def positive_int(environ, name):
    """TRIALS, JOBS_PER_GPU, GPUS_PER_RUN: digits, no leading zero (as the shell scripts accepted)."""
    text = env_value(environ, name, "1")
    if not re.fullmatch(r"[1-9][0-9]*", text):
        raise ConfigError(f"{name} must be a positive integer, got '{text}'")
    return int(text)


def words(text):
    """Lists in the environment are separated by commas and/or white space, never globbed."""
    return text.replace(",", " ").split()


def read_config(environ):
    gpus = words(env_value(environ, "GPUS", "0"))
    if not gpus:
        raise ConfigError("GPUS must list at least one GPU id, e.g. GPUS=0,1")
    jobs_per_gpu = positive_int(environ, "JOBS_PER_GPU")
    per_run = positive_int(environ, "GPUS_PER_RUN")
    if len(gpus) % per_run:
        raise ConfigError(f"GPUS_PER_RUN={per_run} must divide the {len(gpus)} GPUS ({','.join(gpus)}) into groups")
    gpus = [",".join(gpus[i:i + per_run]) for i in range(0, len(gpus), per_run)]
    trials = positive_int(environ, "TRIALS")
    save_dir = env_value(environ, "SAVE_DIR", "./save")
    python = env_value(environ, "PYTHON", "python").split()
    if not python:
        python = ["python"]
    return Config(gpus=gpus, jobs_per_gpu=jobs_per_gpu, trials=trials, save_dir=save_dir,
                  log_dir=env_value(environ, "LOG_DIR", f"{save_dir}/logs"),
                  extra_args=env_value(environ, "EXTRA_ARGS", "").split(), python=python,
                  dry_run=environ.get("DRY_RUN") == "1", force=environ.get("FORCE") == "1",
                  environ=dict(environ), gpus_per_run=per_run)


def shell_quote(args):
    """One line that sh splits back into the same words (the shell scripts' quoting, so
    markers they wrote still match)."""
    out = []
    for word in args:
        if word == "" or re.search(r"[^A-Za-z0-9_./:=,+@%-]", word):
            word = "'" + word.replace("'", "'\\''") + "'"
        out.append(word)
    return " ".join(out)


# ---------------------------------------------------------------------------------------
# What to run
# ---------------------------------------------------------------------------------------
@dataclass
class Run:
    name: str   # the log and marker file names: LOG_DIR/<name>.log, LOG_DIR/<name>.done
    args: list  # after $PYTHON: the script and its arguments


def load_methods():
    """The `--distill` name -> Distiller class registry: a new method file shows up here
    with no edit to the sweep."""
    try:
        from distiller_zoo import METHODS
    except Exception as e:  # noqa: BLE001 - torch missing, a broken method file: say which
        raise ConfigError(f"cannot load the methods from distiller_zoo under {sys.executable} "
                          f"({type(e).__name__}: {e}); set SWEEP_PYTHON to the training environment's python")
    return METHODS


def method_flags(cls, pair=None, variant_args=()):
    """The weights a method was benchmarked with, then its extra sweep flags (and a variant's).

    The weights are the ones train_student.py would use when none are given: for a pair, as
    the class resolves them for it (a per-pair recipe, e.g. logit standardization's KD
    weight), else `default_weights`; writing them out keeps each command self-explanatory
    in logs and markers.
    """
    extra = [str(x) for x in (*getattr(cls, "sweep_args", ()), *variant_args)]
    w = (pair_weights(cls, pair, extra) if pair is not None else None) or cls.default_weights
    return ["-r", f"{w['gamma']:g}", "-a", f"{w['alpha']:g}", "-b", f"{w['beta']:g}", *extra]


def pair_weights(cls, pair, extra):
    """gamma/alpha/beta as train_student.py resolves them for (teacher, student) and these
    flags; None for a class the training script does not know (e.g. a test's stand-in)."""
    try:
        import train_student
        from distiller_zoo.base import resolve_weights
        from util.errors import UsageError
    except ImportError:
        return None
    teacher, student = pair
    try:
        opt = train_student.parse_args(["--path_t", "unused", "--distill", cls.name, "--model_s", student, *extra])
    except (UsageError, SystemExit):
        return None
    opt.model_t = teacher
    cls.resolve_pair_settings(opt)
    return resolve_weights(cls, opt)


def split_variant(entry, registry):
    """METHODS entry 'kd' or 'kd+ls' -> (class, variant CLI words); a variant is one of the
    class's `sweep_variants` (e.g. logit standardization: {"ls": ("--logit_stand",)})."""
    name, _, variant = entry.partition("+")
    cls = registry[name]
    if not variant:
        return cls, ()
    variants = getattr(cls, "sweep_variants", {}) or {}
    if variant not in variants:
        raise ConfigError(f"method '{name}' has no variant '+{variant}' in METHODS; its variants: "
                          f"{' '.join('+' + v for v in variants) or 'none'}")
    return cls, tuple(variants[variant])


def parse_methods(text, registry):
    """METHODS -> names in order, each once (a name twice would run twice in one folder)."""
    methods = list(dict.fromkeys(words(text)))
    if not methods:
        raise ConfigError("METHODS is empty")
    for m in methods:
        if m.partition("+")[0] not in registry:
            raise ConfigError(f"unknown method '{m}' in METHODS; use any of {' '.join(registry)}")
        split_variant(m, registry)  # an unknown variant is a configuration error too
    return methods


def parse_pairs(text):
    """PAIRS -> (teacher, student) in order, each once."""
    pairs = []
    for pair in dict.fromkeys(words(text)):
        teacher, sep, student = pair.partition(":")
        if not sep or not teacher or not student or ":" in student:
            raise ConfigError(f"PAIRS entry '{pair}' is not teacher:student (e.g. PAIRS=resnet56:resnet20,vgg13:vgg8)")
        pairs.append((teacher, student))
    if not pairs:
        raise ConfigError("PAIRS is empty")
    return pairs


def distill_runs(config, methods, pairs, registry, teacher_paths):
    """One run per trial x method x pair whose teacher was found (teacher_paths[t] not None)."""
    runs = []
    for trial in range(config.trials):
        for method in methods:
            for teacher, student in pairs:
                path_t = teacher_paths.get(teacher)
                if path_t is None:
                    continue
                cls, variant_args = split_variant(method, registry)
                runs.append(Run(f"{teacher}-{student}_{method}_trial_{trial}",
                                ["train_student.py", "--path_t", path_t, "--model_s", student, "--distill", cls.name,
                                 *method_flags(cls, (teacher, student), variant_args), "--trial", str(trial),
                                 "--save_dir", config.save_dir, *config.resume_args, *config.extra_args]))
    return runs


def vanilla_runs(config, models):
    return [Run(f"teacher_{model}_trial_{trial}",
                ["train_teacher.py", "--model", model, "--trial", str(trial), "--save_dir", config.save_dir,
                 *config.resume_args, *config.extra_args])
            for trial in range(config.trials) for model in models]


def locate_teachers(teachers, save_t, save_dir, layout):
    """-> {teacher: checkpoint path or None}, saying which file (and accuracy) each uses,
    or where a missing one was looked for."""
    from helper.teacher import find_teacher, recorded_accuracy, teacher_search_places
    found = {}
    for t in dict.fromkeys(teachers):
        path = find_teacher(t, save_t, save_dir, layout)
        found[t] = path
        if path is None:
            print(f"error: no checkpoint of teacher '{t}'; looked for:", file=sys.stderr)
            for place in teacher_search_places(t, save_t, save_dir, layout):
                print(f"    {place}", file=sys.stderr)
            print("  fetch the released teachers (sh scripts/fetch_teachers.sh) or train it "
                  "(sh scripts/run_vanilla.sh); skipping the runs with this teacher", file=sys.stderr)
            continue
        acc, source = recorded_accuracy(path)
        shown = f"test top-1 {acc:.2f} (from {source})" if acc is not None else "accuracy not recorded"
        print(f"teacher {t}: {path}, {shown}", file=sys.stderr)
    return found


# ---------------------------------------------------------------------------------------
# Skip markers
# ---------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------
# The job pool
# ---------------------------------------------------------------------------------------
class StopRequest:
    """SIGINT/SIGTERM/SIGHUP to the sweep: start no new run and forward one SIGINT per
    signal (at most two) to each running child.

    Children run in their own sessions, so a terminal's Ctrl-C reaches only the sweep and
    each child gets exactly one SIGINT: train_student.py then finishes its step, saves
    latest.pth and exits 130. (A second SIGINT makes it give up at once, which is what a
    second Ctrl-C on the sweep asks for.)
    """
    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self.count = 0
        self._old = {}

    def __enter__(self):
        for sig in self.SIGNALS:
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _handle(self, signum, frame):
        self.count += 1  # acted on by the pool loop, not here: no work inside a handler

    def __bool__(self):
        return self.count > 0


@dataclass
class Job:
    run: Run
    gpu: str
    log: str
    proc: subprocess.Popen = None
    signals_sent: int = 0


def child_env(config, gpu):
    """The sweep's environment, one GPU visible, and unbuffered output so a run's log can
    be followed while it trains."""
    env = dict(config.environ)
    env["CUDA_VISIBLE_DEVICES"] = gpu
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def start(config, run, gpu):
    """Start one run on `gpu`, its output appended to its log; -> Job (proc None when the
    interpreter could not be started; the reason is in the log)."""
    log = os.path.join(config.log_dir, f"{run.name}.log")
    job = Job(run, gpu, log)
    command = config.launcher + run.args
    stale = marker_path(config, run)
    if os.path.exists(stale):  # other arguments (or FORCE=1): it no longer describes the run folder
        os.unlink(stale)
    with open(log, "a") as fh:
        fh.write(f"==== {datetime.now():%Y-%m-%d %H:%M:%S} GPU {gpu}: {shell_quote(command)}\n")
        fh.flush()
        try:
            job.proc = subprocess.Popen(command, cwd=ROOT, env=child_env(config, gpu), stdin=subprocess.DEVNULL,
                                        stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            fh.write(f"error: cannot start {config.python[0]}: {e}\n")
    print(f"[gpu {gpu}] start {run.name} (log: {log})")
    return job


def forward_stop(job, wanted):
    """Send SIGINT to the child's process group until it got `wanted` of them (at most 2).

    The group, not only the process: a PYTHON that is a wrapper script passes it on, as a
    terminal's Ctrl-C would have.
    """
    while job.signals_sent < min(wanted, 2):
        job.signals_sent += 1
        try:
            os.killpg(job.proc.pid, signal.SIGINT)
        except (ProcessLookupError, PermissionError):
            try:
                job.proc.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass


def last_line(path):
    """The last non-blank line of a log (progress bars' carriage returns count as line ends)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 8192))
            tail = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in re.split(r"[\r\n]", tail) if line.strip()]
    return lines[-1] if lines else ""


@dataclass
class Outcome:
    finished: int = 0
    failed: int = 0
    refused: int = 0
    interrupted: int = 0


def record(config, job, rc, stopping, outcome):
    """Report a finished child; only exit 0 writes the marker."""
    name, gpu = job.run.name, job.gpu
    if rc == 0:
        with open(marker_path(config, job.run), "w") as fh:
            fh.write(shell_quote(job.run.args) + "\n")
        outcome.finished += 1
        print(f"[gpu {gpu}] done  {name}")
    elif rc == CHILD_REFUSED:
        outcome.refused += 1
        print(f"[gpu {gpu}] REFUSED {name}: {last_line(job.log)}", file=sys.stderr)
    elif stopping:
        outcome.interrupted += 1
        print(f"[gpu {gpu}] stopped {name} ({exit_text(rc)}), see {job.log}", file=sys.stderr)
    else:
        outcome.failed += 1
        print(f"[gpu {gpu}] FAILED {name} ({exit_text(rc)}), see {job.log}", file=sys.stderr)


def exit_text(rc):
    """'exit 3', or 'killed by SIGKILL' for a child ended by a signal (Popen's negative codes)."""
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit {rc}"


def run_pool(config, queue, stop):
    """Run the queue on GPUS x JOBS_PER_GPU slots, each slot one run at a time; -> Outcome.

    Polled rather than threaded: one loop owns every child, so a stop request is seen
    between two launches and no run can start after it.
    """
    slots = [gpu for _ in range(config.jobs_per_gpu) for gpu in config.gpus][:len(queue)]
    pending = collections.deque(queue)
    running = {}  # slot index -> Job
    outcome = Outcome()
    while running or (pending and not stop):
        for i, gpu in enumerate(slots):
            if stop or not pending:
                break
            if i not in running:
                job = start(config, pending.popleft(), gpu)
                if job.proc is None:
                    outcome.failed += 1
                    print(f"[gpu {gpu}] FAILED {job.run.name} (cannot start {config.python[0]}), see {job.log}",
                          file=sys.stderr)
                else:
                    running[i] = job
        for i, job in list(running.items()):
            if stop:
                forward_stop(job, stop.count)
            rc = job.proc.poll()
            if rc is not None:
                del running[i]
                record(config, job, rc, bool(stop), outcome)
        if running:
            time.sleep(POLL_SECONDS)
    return outcome


def execute(config, queue, skipped):
    """Run the planned queue; -> exit status (0, 1 a run failed or was refused, 130 stopped)."""
    if config.dry_run:
        print(f"dry run: {len(queue)} runs, {skipped} already finished", file=sys.stderr)
        return EXIT_OK
    if not queue:
        print(f"nothing to run ({skipped} already finished)")
        return EXIT_OK
    slots = min(len(queue), len(config.gpus) * config.jobs_per_gpu)
    print(f"running {len(queue)} runs on {slots} slots (GPUS={','.join(config.gpus)}, "
          f"JOBS_PER_GPU={config.jobs_per_gpu}); {skipped} already finished")
    with StopRequest() as stop:
        outcome = run_pool(config, queue, stop)
    if stop:
        left = len(queue) - outcome.finished - outcome.failed - outcome.refused - outcome.interrupted
        print(f"interrupted: {outcome.interrupted} running run(s) stopped (state saved for --resume auto), "
              f"{left} not started; run the same command again to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"sweep done: {outcome.finished} finished, {outcome.failed} failed, {outcome.refused} refused, "
          f"{skipped} skipped (already finished); logs in {config.log_dir}")
    return EXIT_FAILED if outcome.failed or outcome.refused else EXIT_OK


# ---------------------------------------------------------------------------------------
# The two sweeps
# ---------------------------------------------------------------------------------------
def help_comment(text):
    """The help as the shell scripts printed it: their comment block without the '# '."""
    return "\n".join(re.sub(r"^# ?", "", line) for line in text.splitlines()) + "\n"


def distill_help():
    """The distill sweep's help; the method list and weights come from the registry."""
    try:
        entries = [f"{name} {' '.join(method_flags(cls))}" for name, cls in load_methods().items()]
    except ConfigError as e:
        entries = [f"(the list could not be loaded: {e})"]
    lines = [""]
    for entry in entries:
        if lines[-1] and len(lines[-1]) + 3 + len(entry) > 66:
            lines.append("")
        lines[-1] = f"{lines[-1]} | {entry}" if lines[-1] else entry
    return help_comment(DISTILL_HELP.format(
        pair_list=textwrap.fill(" ".join(ALL_PAIRS), width=88, initial_indent="# Pairs (teacher:student): ",
                                subsequent_indent="#   ", break_on_hyphens=False),
        methods="\n".join(f"#                   {line}" for line in lines),
        per="pair and method", script="train_student.py",
        pairs_var="#   PAIRS         subset of pairs, e.g. resnet56:resnet20,vgg13:vgg8 (default: all 12)\n",
        save_t_var="#   SAVE_T        folder of the teacher checkpoints (default: ./save_t)\n"))


def vanilla_help():
    return help_comment(VANILLA_HELP.format(teachers=" ".join(TEACHERS), per="model", script="train_teacher.py",
                                            pairs_var="", save_t_var=""))


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


if __name__ == "__main__":
    sys.exit(main())
