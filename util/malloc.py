"""Keep freed heap memory in the process (glibc), so a CPU training step stops paying page faults.

A CPU training step allocates and frees the same activations every step: several MiB per
tensor, a few hundred MiB in all. With glibc's defaults, blocks of that size come from fresh
`mmap`s (the mmap threshold adapts only up to the largest block freed so far) and memory
freed at the top of the heap goes back to the OS once more than twice that threshold is
free. The next step then maps the same memory again and page-faults every page of it in,
zeroed by the kernel: about 25-30% of a kd resnet56 -> resnet20 step on a 2-core CPU
(BENCHMARK.md, "glibc malloc tunables"). Setting the thresholds once, before the first large
allocation, makes the heap grow to one step's peak and stay there.

The CUDA caching allocator already keeps device memory, so only CPU runs need this. The
values are chosen in `TUNABLES`; a tunable the user set through the environment
(`MALLOC_TRIM_THRESHOLD_=...` or `GLIBC_TUNABLES=glibc.malloc.trim_threshold=...`) is left
as the user set it. M_ARENA_MAX is left at glibc's default: the step's large blocks come
from the main thread (the CPU autograd engine runs backward on the thread that calls it),
whose arena is the main one, so capping the other threads' arenas would change no step's
speed and could only add lock contention between OpenMP threads on many-core hosts.
"""
import ctypes
import os
import sys

MIB = 1 << 20

# (name, mallopt parameter number from glibc's <malloc.h>, values to try in order, env alias,
# GLIBC_TUNABLES name)
TUNABLES = (
    # Blocks below it come from the heap and are reused. Every activation and memory-bank score
    # matrix of the CIFAR models at batch 64 (PACKD's 4 views included) is below 64 MiB. Older
    # glibc refuses more than 32 MiB (half its 64 MiB heap size on 64-bit): then 32 MiB.
    ("M_MMAP_THRESHOLD", -3, (64 * MIB, 32 * MIB), "MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold"),
    # Free memory at the top of the heap is given back only beyond this. 1 GiB is above one
    # step's activations (BENCHMARK.md's 256 MiB is below a PACKD step's), so no step gives back
    # what the next one needs. No peak memory is added: every step reaches that peak anyway.
    ("M_TRIM_THRESHOLD", -1, (1024 * MIB,), "MALLOC_TRIM_THRESHOLD_", "glibc.malloc.trim_threshold"),
    # When the heap must grow it grows by this much more, so the warm-up steps reach the peak
    # in a few brk calls. Pages not yet touched cost address space, not resident memory.
    ("M_TOP_PAD", -2, (64 * MIB,), "MALLOC_TOP_PAD_", "glibc.malloc.top_pad"),
)


def _user_set(env_alias, tunable_name, environ):
    return env_alias in environ or tunable_name in environ.get("GLIBC_TUNABLES", "")


def _glibc():
    """The running process's C library through ctypes if it is glibc (has `mallopt` and
    `gnu_get_libc_version`), else None (musl, macOS, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None)  # the symbols already loaded in this process, libc among them
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return libc


def keep_freed_memory(environ=None):
    """Set glibc's malloc thresholds so freed activation memory stays in the process.

    Returns {parameter name: value set} (possibly empty when the user set every one of them
    through the environment), or None where it does not apply: not Linux, not glibc, or
    ctypes cannot reach the C library. Never raises. Call it once, early, in a process that
    trains on the CPU; calling it again is harmless.
    """
    environ = os.environ if environ is None else environ
    try:
        libc = _glibc()
        if libc is None:
            return None
        applied = {}
        for name, param, values, env_alias, tunable in TUNABLES:
            if _user_set(env_alias, tunable, environ):
                continue
            for value in values:
                if libc.mallopt(param, value) == 1:
                    applied[name] = value
                    break
        return applied
    except Exception:  # noqa: BLE001 (an optimisation must never stop a run)
        return None
