"""util.malloc.keep_freed_memory: glibc's thresholds set through ctypes, None where it does
not apply, never an exception."""
import sys

import pytest

from util import malloc

MIB = 1 << 20


class FakeGlibc:
    """A C library with `gnu_get_libc_version` and a `mallopt` that records its calls."""

    def __init__(self, refuse=lambda param, value: False, fail=False):
        self.calls = []

        def mallopt(param, value):
            if fail:
                raise OSError("mallopt exploded")
            self.calls.append((param, value))
            return 0 if refuse(param, value) else 1

        self.mallopt = mallopt
        self.gnu_get_libc_version = lambda: b"2.36"


def use_libc(monkeypatch, libc):
    monkeypatch.setattr(malloc.sys, "platform", "linux")
    monkeypatch.setattr(malloc.ctypes, "CDLL", lambda name: libc)


@pytest.mark.skipif(not sys.platform.startswith("linux") or malloc._glibc() is None, reason="needs Linux with glibc")
def test_sets_every_tunable_on_this_linux():
    applied = malloc.keep_freed_memory(environ={})
    assert set(applied) == {"M_MMAP_THRESHOLD", "M_TRIM_THRESHOLD", "M_TOP_PAD"}
    assert applied["M_MMAP_THRESHOLD"] in (64 * MIB, 32 * MIB)
    assert applied["M_TRIM_THRESHOLD"] == 1024 * MIB and applied["M_TOP_PAD"] == 64 * MIB
    assert malloc.keep_freed_memory(environ={}) == applied  # again: harmless, same answer


def test_none_when_ctypes_cannot_reach_the_c_library(monkeypatch):
    def no_library(name):
        raise OSError("cannot load")

    monkeypatch.setattr(malloc.sys, "platform", "linux")
    monkeypatch.setattr(malloc.ctypes, "CDLL", no_library)
    assert malloc.keep_freed_memory(environ={}) is None


@pytest.mark.parametrize("platform", ["darwin", "win32"])
def test_none_off_linux(monkeypatch, platform):
    libc = FakeGlibc()
    use_libc(monkeypatch, libc)
    monkeypatch.setattr(malloc.sys, "platform", platform)
    assert malloc.keep_freed_memory(environ={}) is None and libc.calls == []


def test_none_for_a_c_library_that_is_not_glibc(monkeypatch):
    libc = FakeGlibc()
    del libc.gnu_get_libc_version  # musl has mallopt as a stub, and no gnu_get_libc_version
    use_libc(monkeypatch, libc)
    assert malloc.keep_freed_memory(environ={}) is None and libc.calls == []


def test_none_instead_of_an_exception(monkeypatch):
    use_libc(monkeypatch, FakeGlibc(fail=True))
    assert malloc.keep_freed_memory(environ={}) is None


def test_an_older_glibc_gets_the_32_mib_mmap_threshold(monkeypatch):
    libc = FakeGlibc(refuse=lambda param, value: param == -3 and value > 32 * MIB)
    use_libc(monkeypatch, libc)
    applied = malloc.keep_freed_memory(environ={})
    assert applied["M_MMAP_THRESHOLD"] == 32 * MIB
    assert [c for c in libc.calls if c[0] == -3] == [(-3, 64 * MIB), (-3, 32 * MIB)]


def test_a_value_refused_everywhere_is_left_out(monkeypatch):
    use_libc(monkeypatch, FakeGlibc(refuse=lambda param, value: param == -2))
    assert set(malloc.keep_freed_memory(environ={})) == {"M_MMAP_THRESHOLD", "M_TRIM_THRESHOLD"}


@pytest.mark.parametrize("environ", [{"MALLOC_TRIM_THRESHOLD_": "1"},
                                     {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.trim_threshold=1"}])
def test_what_the_user_set_in_the_environment_is_left_alone(monkeypatch, environ):
    libc = FakeGlibc()
    use_libc(monkeypatch, libc)
    applied = malloc.keep_freed_memory(environ=environ)
    assert "M_TRIM_THRESHOLD" not in applied and all(param != -1 for param, _ in libc.calls)
    assert "M_MMAP_THRESHOLD" in applied
