"""Run a training script with a fault injected at an exact (epoch, step): for tests only.

    python tests/fault_hooks.py train_student.py [its arguments]

Environment variables (E = epoch, S = step within the epoch, both counted from 1 as in
the log messages):
  KD_TEST_KILL_AT=E:S          SIGKILL the process as step S of epoch E starts
  KD_TEST_SIGNAL_AT=E:S[:SIG]  send SIGTERM (or SIGINT) to the process during step S
  KD_TEST_NAN_AT=E:S           make every loss term of step S of epoch E NaN
  KD_TEST_DUMP_DIR=DIR         after the run (and as the main loop starts), each process saves
                               its distiller's state to DIR/rank<R>[_start].pth (under torchrun: R = its rank)
A hook may end in @R to act on rank R only (e.g. KD_TEST_KILL_AT=2:3@1).
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
        mine = {}
        for key in (HOOK_KILL, HOOK_SIGNAL, HOOK_NAN):
            text = environ.get(key, "")
            text, _, only_rank = text.partition("@")
            if text and (not only_rank or only_rank == environ.get("RANK", "0")):
                mine[key] = text
        environ = mine
        if not environ:
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



def install_dump(folder):
    """Wrap `Trainer` so each process saves its distiller's state at the main loop's start and end."""
    import torch
    from helper.trainer import Trainer
    original_wrap, original_finish = Trainer._wrap_for_processes, Trainer._finish
    rank = os.environ.get("RANK", "0")

    def dump(trainer, suffix):
        os.makedirs(folder, exist_ok=True)
        torch.save({k: v.detach().cpu().clone() for k, v in trainer.distiller.state_dict().items()},
                   os.path.join(folder, f"rank{rank}{suffix}.pth"))

    def _wrap_for_processes(self):
        original_wrap(self)
        dump(self, "_start")

    def _finish(self):
        dump(self, "")
        return original_finish(self)

    Trainer._wrap_for_processes, Trainer._finish = _wrap_for_processes, _finish


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
    if os.environ.get("KD_TEST_DUMP_DIR"):
        install_dump(os.environ["KD_TEST_DUMP_DIR"])
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
