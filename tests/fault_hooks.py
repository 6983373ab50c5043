"""Run a training script with a fault injected at an exact (epoch, step): for tests only.

    python tests/fault_hooks.py train_student.py [its arguments]

Environment variables (E = epoch, S = step within the epoch, both counted from 1 as in
the log messages):
  KD_TEST_KILL_AT=E:S          SIGKILL the process as step S of epoch E starts
  KD_TEST_SIGNAL_AT=E:S[:SIG]  send SIGTERM (or SIGINT) to the process during step S
  KD_TEST_NAN_AT=E:S           make every loss term of step S of epoch E NaN
They let tests interrupt or break a run without timing races; the production classes
know nothing of them (this runner wraps `Trainer` before the script starts).
"""
import os
import pathlib
import runpy
import signal
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from util.errors import UsageError  # noqa: E402

HOOK_KILL, HOOK_SIGNAL, HOOK_NAN = "KD_TEST_KILL_AT", "KD_TEST_SIGNAL_AT", "KD_TEST_NAN_AT"


class FaultHooks:
    """Interrupt or break a run at an exact (epoch, step): see the module docstring."""

    def __init__(self, kill_at=None, signal_at=None, signal_number=signal.SIGTERM, nan_at=None):
        self.kill_at, self.signal_at, self.signal_number, self.nan_at = kill_at, signal_at, signal_number, nan_at
        self.epoch = self.step = 0

    @staticmethod
    def _parse(name, text):
        parts = text.split(":")
        try:
            epoch, step = int(parts[0]), int(parts[1])
        except (IndexError, ValueError):
            raise UsageError(f"test hook {name}='{text}' must be EPOCH:STEP (numbers from 1)") from None
        return (epoch, step), parts[2:]

    @classmethod
    def from_env(cls, environ=os.environ):
        """-> FaultHooks, or None when no hook variable is set (the normal case)."""
        if not any(environ.get(k) for k in (HOOK_KILL, HOOK_SIGNAL, HOOK_NAN)):
            return None
        hooks = cls()
        if environ.get(HOOK_KILL):
            hooks.kill_at, _ = cls._parse(HOOK_KILL, environ[HOOK_KILL])
        if environ.get(HOOK_SIGNAL):
            hooks.signal_at, rest = cls._parse(HOOK_SIGNAL, environ[HOOK_SIGNAL])
            if rest:
                name = rest[0].upper()
                hooks.signal_number = getattr(signal, name if name.startswith("SIG") else f"SIG{name}")
        if environ.get(HOOK_NAN):
            hooks.nan_at, _ = cls._parse(HOOK_NAN, environ[HOOK_NAN])
        return hooks

    def install(self, distiller):
        original = distiller.forward_train

        def forward_train(batch):
            self.step += 1
            here = (self.epoch, self.step)
            if here == self.kill_at:
                sys.stdout.flush()
                os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
            if here == self.signal_at:
                os.kill(os.getpid(), self.signal_number)
            logits, terms = original(batch)
            if here == self.nan_at:
                terms = {k: v * float("nan") for k, v in terms.items()}
            return logits, terms

        distiller.forward_train = forward_train

    def start_epoch(self, epoch, steps_done):
        self.epoch, self.step = epoch, steps_done



def install_into_trainer(hooks):
    """Wrap `Trainer` so every run installs `hooks` into its distiller and tells them the epoch."""
    from helper.trainer import Trainer
    original_init, original_epoch = Trainer.__init__, Trainer._run_epoch

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        hooks.install(self.distiller)

    def _run_epoch(self, epoch, stop):
        hooks.start_epoch(epoch, self.step)
        return original_epoch(self, epoch, stop)

    Trainer.__init__, Trainer._run_epoch = __init__, _run_epoch


def main(argv):
    script, args = argv[0], argv[1:]
    hooks = FaultHooks.from_env()
    if hooks is not None:
        install_into_trainer(hooks)
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
