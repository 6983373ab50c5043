"""SIGINT/SIGTERM during training: finish the current step, save, exit 128 + signal."""
import signal
import threading


class Interrupted(Exception):
    """A signal during a stage that cannot be saved half-way (pre-training)."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopRequest:
    """Remembers the first SIGINT/SIGTERM so the loop can stop at the end of a step.

    A second signal gives up at once (KeyboardInterrupt). Handlers are only installed
    in the main thread (Python allows nothing else).
    """

    def __init__(self, immediate=False):
        self.signal = None
        self.immediate = immediate  # raise Interrupted at once instead of waiting for the step's end
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:  # second signal: give up at once
            raise KeyboardInterrupt
        self.signal = signum
        if self.immediate:
            raise Interrupted(signum)

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}

    def __call__(self):
        return self.signal is not None

    @property
    def name(self):
        return signal.Signals(self.signal).name if self.signal is not None else None
