"""The job pool: runs as child processes on GPU slots, their logs and markers, and
Ctrl-C/SIGTERM forwarded to them once each."""
import collections
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime

from scripts.sweeping.config import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, ROOT
from scripts.sweeping.plan import marker_path, shell_quote
from scripts.sweeping.runs import Run

# train_student.py / train_teacher.py exit 2 for bad input, including a run folder whose
# recorded settings differ from the command's (one line naming the differing flags).
CHILD_REFUSED = 2
POLL_SECONDS = 0.05


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
