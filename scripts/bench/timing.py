"""Clocks, and only clocks: what the other modules use to measure.

On CUDA work is asynchronous, so a wall-clock reading says when the host queued the work,
not when it finished: GPU timings use CUDA events around the work. On a shared machine
noise only ever adds time, so "the fastest of R windows" is the estimate of a cost, while
the training step reports the median too (what a long run sees).
"""
import os
import platform
import resource
import sys
import time
import warnings

import torch

from util.errors import UsageError

# Concurrent jobs (--barrier) poll their meeting folder this often, and give up after this long.
BARRIER_POLL_S = 0.01
BARRIER_TIMEOUT_S = 300


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device):
    """Seconds taken by fn(): CUDA events on the GPU (work finished), perf_counter on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def timed_best(fn, device, repeats):
    """Fastest of `repeats` timings of fn() (seconds): on a shared machine noise only adds time."""
    return min(timed(fn, device) for _ in range(max(int(repeats), 1)))


class Stopwatch:
    """start() / stop() from inside code that is not ours to wrap (e.g. a loader handed to a
    pre-training stage): syncs the device at both ends, so the interval holds finished work."""

    def __init__(self, device):
        self.device = device
        self.started = self.stopped = None

    def start(self):
        synchronize(self.device)
        self.started = time.perf_counter()

    def stop(self):
        if self.started is not None and self.stopped is None:
            synchronize(self.device)
            self.stopped = time.perf_counter()

    @property
    def seconds(self):
        return None if self.started is None or self.stopped is None else self.stopped - self.started


def _children_cpu_seconds():
    """{pid: CPU seconds} of this process's live children (DataLoader workers); None off Linux."""
    if not os.path.isdir("/proc"):
        return None
    me, tick = os.getpid(), os.sysconf("SC_CLK_TCK")
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # fields after "(comm)": state, ppid, ...
        if len(fields) > 12 and int(fields[1]) == me:
            out[int(entry)] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return out


class CpuMeter:
    """CPU seconds used by this process (all threads) and its live child processes."""

    def __enter__(self):
        self.children0 = _children_cpu_seconds()
        self.self0 = time.process_time()
        return self

    def __exit__(self, *exc):
        self.seconds = time.process_time() - self.self0
        children = _children_cpu_seconds()
        self.measured_children = children is not None and self.children0 is not None
        if self.measured_children:
            self.seconds += sum(cpu - self.children0.get(pid, 0.0) for pid, cpu in children.items())
        return False


def peak_memory(device):
    """(bytes, what was measured)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "torch.cuda.max_memory_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss * (1 if sys.platform == "darwin" else 1024), "ru_maxrss (whole process)"


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def host_syncs(fn, device):
    """First lines of the warnings torch's sync debug mode raises while fn() runs (CUDA only):
    each is a call that made the host wait for the device."""
    torch.cuda.synchronize(device)
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    return [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message).lower()]


def wait_at_barrier(folder, count, timeout_s=BARRIER_TIMEOUT_S):
    """Announce this job in `folder` and wait until `count` jobs have, so that concurrent
    jobs (one GPU shared by several runs) time overlapping windows."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"ready.{os.getpid()}"), "w"):
        pass
    deadline = time.time() + timeout_s
    while sum(name.startswith("ready.") for name in os.listdir(folder)) < count:
        if time.time() > deadline:
            raise UsageError(f"--barrier '{folder}': only some of the {count} jobs arrived within {timeout_s}s")
        time.sleep(BARRIER_POLL_S)
