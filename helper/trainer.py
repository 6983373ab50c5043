"""Everything around the loop: run folder, checkpoints, resume, logs, signals.

Used by both train_teacher.py and train_student.py. The resumable state is the whole
distiller (student and the method's modules, memory banks and constants; the frozen
teacher excepted), the optimizer, epoch and step, best accuracy, the loaders'
generators, the global RNGs and the stage (pre-training or main loop).

Every epoch ends with an atomic `latest.pth`; `--resume auto` continues from it. A run
killed in the middle of an epoch redoes that epoch from its start with the saved
generators, so with `--deterministic` it ends bit for bit where an uninterrupted run
ends. SIGINT/SIGTERM finish the current step and save a mid-epoch `latest.pth`.

Test hooks (environment variables, read once when the Trainer is built; E = epoch,
S = step within the epoch, both counted from 1 as in the log messages):
  KD_TEST_KILL_AT=E:S          SIGKILL this process as step S of epoch E starts
  KD_TEST_SIGNAL_AT=E:S[:SIG]  send SIGTERM (or SIGINT) to this process during step S
  KD_TEST_NAN_AT=E:S           make every loss term of step S of epoch E NaN
They let tests interrupt or break a run at an exact point without timing races.
"""
import json
import os
import signal
import sys
import threading
import time

import torch

from helper.checkpoint import (atomic_save, atomic_write_json, atomic_write_text, capture_rng, load_checkpoint, plain,
                               remove_stale_temp_files, restore_rng)
from helper.errors import NonFiniteLoss, UsageError
from helper.loops import EpochStats, evaluate, train_epoch, uses_cuda_graphs
from helper.util import learning_rate_at, set_lr

LATEST = "latest.pth"
SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
# What a checkpoint must hold to be resumed from (a teacher release holds only "model").
RESUME_KEYS = ("model", "optimizer", "distiller", "epoch", "step", "stage", "loader", "rng", "run")
HOOK_KILL, HOOK_SIGNAL, HOOK_NAN = "KD_TEST_KILL_AT", "KD_TEST_SIGNAL_AT", "KD_TEST_NAN_AT"


class Interrupted(Exception):
    """A signal during a stage that cannot be saved half-way (pre-training)."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopRequest:
    """SIGINT/SIGTERM: finish the current step, write 'latest', exit non-zero.

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


class Progress:
    """A tqdm bar per epoch, refreshed only at print intervals (when metrics are read back)."""

    def __init__(self, total, desc, enabled=True):
        self.bar = None
        if enabled:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)

    def update_to(self, n, stats):
        if self.bar is not None:
            self.bar.n = n
            loss, acc = stats.running()
            self.bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.1f}")

    def close(self):
        if self.bar is not None:
            self.bar.close()


def read_resumable(path, what="--resume checkpoint"):
    """Load a checkpoint written by Trainer; one-line UsageError when it is something else."""
    ckpt = load_checkpoint(path, what)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("run"), dict):
        raise UsageError(f"{what} '{path}' is not a checkpoint written by this project's training scripts; "
                         f"point --resume at a run folder's latest.pth")
    missing = [k for k in RESUME_KEYS if k not in ckpt]
    if missing:
        raise UsageError(f"{what} '{path}' lacks {', '.join(missing)} and cannot be resumed from; "
                         f"use the run folder's latest.pth")
    return ckpt


# Identity entries added after the first release: checkpoints without them still resume.
OPTIONAL_IDENTITY = {"teacher_weights"}
IDENTITY_HINTS = {"teacher_weights": "the teacher's weights differ from the ones the run started with; pass "
                                     "that --path_t, or start another --trial"}


def check_run_folder(run_dir, opt, identity):
    """Decide how a run folder may be used, before anything is written to it.

    identity: dict of the values that must match for a resume (model names, method).
    Returns the checkpoint path to resume from, or None for a fresh start.
    """
    summary = os.path.join(run_dir, SUMMARY)
    resume = getattr(opt, "resume", None)
    if resume is not None and not str(resume).strip():
        raise UsageError("--resume needs a checkpoint path or 'auto'")
    if resume:
        path = os.path.join(run_dir, LATEST) if resume == "auto" else resume
        if resume == "auto" and not os.path.isfile(path):
            if os.path.isfile(summary) and not getattr(opt, "overwrite", False):
                raise UsageError(f"'{run_dir}' holds a finished run without {LATEST}; use --overwrite to "
                                 f"train again or another --trial")
            return None  # nothing to resume: a fresh start
        ckpt = read_resumable(path)
        theirs = ckpt["run"].get("identity", {})
        for k, v in identity.items():
            if k not in theirs and k in OPTIONAL_IDENTITY:
                print(f"note: '{path}' predates the {k} check; its {k} is not verified")
            elif theirs.get(k) != v:
                raise UsageError(f"--resume '{path}' is a run of {k}={theirs.get(k)!r}, not {v!r}; "
                                 f"{IDENTITY_HINTS.get(k, f'point --resume at a run of the same {k}')}")
        return path
    if os.path.isfile(summary) and not getattr(opt, "overwrite", False):
        raise UsageError(f"'{run_dir}' already holds a finished run; use --resume auto to reuse it, "
                         f"--overwrite to train again, or another --trial")
    return None


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


class Trainer:
    def __init__(self, opt, distiller, train_loader, test_loader, run_dir, model_name, identity, run_info,
                 device, log=print):
        self.opt, self.distiller = opt, distiller
        self.train_loader, self.test_loader = train_loader, test_loader
        self.run_dir, self.model_name, self.identity = run_dir, model_name, identity
        self.run_info = run_info
        self.device = device
        self.log = log
        self.optimizer = make_optimizer(distiller.trainable_parameters(), opt, device)
        self.total_epochs = opt.epochs + (1 if distiller.forward_only_first_epoch else 0)
        self.epoch = 0          # last finished epoch
        self.step = 0           # steps done in the current (unfinished) epoch
        self.stage = "pretrain"
        self.best_acc = 0.0
        self.best_epoch = 0
        self.last_acc = None
        self.stats_state = None
        self.epoch_start_loader = train_loader.state_dict()
        self.writer = None
        self.hooks = FaultHooks.from_env()
        if self.hooks is not None:
            self.hooks.install(distiller)

    # -- state ---------------------------------------------------------------------
    def state(self, accuracy=None):
        d_state = {k: v for k, v in self.distiller.state_dict().items()
                   if not k.startswith(("student.", "teacher."))}
        return {
            "model": self.distiller.student.state_dict(),
            "model_name": self.model_name,
            "epoch": self.epoch,
            "accuracy": accuracy if accuracy is not None else self.last_acc,
            "best_acc": self.best_acc,
            "best_epoch": self.best_epoch,
            "optimizer": self.optimizer.state_dict(),
            "distiller": d_state,
            "stage": self.stage,
            "step": self.step,
            "loader": self.epoch_start_loader,
            "epoch_stats": self.stats_state,
            "rng": capture_rng(),
            "args": plain(vars(self.opt)),
            "run": {"identity": plain(self.identity), "total_epochs": self.total_epochs},
        }

    def load(self, path):
        """Restore everything `state` saved; UsageError (nothing changed on disk) when it does not fit."""
        ckpt = read_resumable(path)
        student_keys = set(self.distiller.student.state_dict())
        if set(ckpt["model"]) != student_keys:
            raise UsageError(f"--resume '{path}' holds another student architecture than {self.model_name}; "
                             f"point --resume at a run of the same model")
        try:
            missing, unexpected = self.distiller.load_state_dict(
                {**{f"student.{k}": v for k, v in ckpt["model"].items()}, **ckpt["distiller"]}, strict=False)
        except RuntimeError as e:  # same names, other shapes (e.g. another --feat_dim or data set size)
            first = " ".join(str(e).split())[:200]
            raise UsageError(f"--resume '{path}' does not fit this run's settings ({first}); resume with "
                             f"the flags the run was started with") from None
        unexpected = [k for k in unexpected if not k.startswith("teacher.")]
        missing = [k for k in missing if not k.startswith("teacher.")]
        if missing or unexpected:
            raise UsageError(f"--resume '{path}' does not fit this method (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]}); resume with the flags the run was started with")
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except ValueError as e:
            raise UsageError(f"--resume '{path}': its optimizer state does not fit ({e}); resume with the "
                             f"flags the run was started with") from None
        self.epoch, self.step, self.stage = ckpt["epoch"], ckpt["step"], ckpt["stage"]
        self.best_acc, self.best_epoch = ckpt["best_acc"], ckpt.get("best_epoch", 0)
        self.last_acc = ckpt["accuracy"]
        try:
            self.train_loader.load_state_dict(ckpt["loader"])
        except (RuntimeError, KeyError, TypeError) as e:
            raise UsageError(f"--resume '{path}': the data loader state does not fit ({type(e).__name__}); "
                             f"resume on the same kind of device (cpu/cuda) and with the same --loader") from None
        self.epoch_start_loader = ckpt["loader"]
        self.stats_state = ckpt["epoch_stats"]
        restore_rng(ckpt["rng"])
        where = f"epoch {self.epoch + 1}, step {self.step}" if self.step else f"the end of epoch {self.epoch}"
        self.log(f"resumed from '{path}' at {where} (stage {self.stage})")

    def save(self, name, accuracy=None):
        atomic_save(self.state(accuracy), os.path.join(self.run_dir, name))

    # -- logging ---------------------------------------------------------------------
    def _open_logs(self):
        os.makedirs(self.run_dir, exist_ok=True)
        atomic_write_json(plain(self.run_info), os.path.join(self.run_dir, "run.json"))
        if not getattr(self.opt, "no_tensorboard", False):
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.writer = SummaryWriter(os.path.join(self.run_dir, "tb"))
            except ImportError:
                self.log("note: tensorboard is not installed; TensorBoard logs are off (pip install tensorboard)")

    def _trim_metrics(self):
        """Drop metric rows of epochs after the resumed one (written before a crash, redone now)."""
        path = os.path.join(self.run_dir, METRICS)
        if not os.path.isfile(path):
            return
        with open(path) as fh:
            lines = [line for line in fh if line.strip()]
        keep = []
        for line in lines:
            try:
                if json.loads(line).get("epoch", 0) <= self.epoch:
                    keep.append(line)
            except ValueError:
                pass  # a line cut off by a crash
        if len(keep) != len(lines):
            atomic_write_text("".join(keep), path)

    def _record(self, row):
        with open(os.path.join(self.run_dir, METRICS), "a") as fh:
            fh.write(json.dumps(row) + "\n")
        if self.writer is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)):
                    self.writer.add_scalar(k, v, row["epoch"])
            self.writer.flush()

    # -- the run -----------------------------------------------------------------------
    def fit(self, resume_path=None):
        fresh = resume_path is None
        if not fresh:
            self.load(resume_path)  # before anything is written: a checkpoint that does not fit changes nothing
        os.makedirs(self.run_dir, exist_ok=True)
        remove_stale_temp_files(self.run_dir)
        if fresh:
            # a fresh start in a folder holding an unfinished (or overwritten) run
            if os.path.isfile(os.path.join(self.run_dir, LATEST)):
                self.log(f"note: starting afresh in '{self.run_dir}'; its {LATEST} will be replaced "
                         f"(add --resume auto to continue it instead)")
            for stale in (METRICS, SUMMARY):
                p = os.path.join(self.run_dir, stale)
                if os.path.exists(p):
                    os.unlink(p)
        else:
            self._trim_metrics()
        self._open_logs()
        if self.epoch >= self.total_epochs and self.stage == "main":
            return self._finish()
        if self.stage == "pretrain":
            self._pretrain()
        with StopRequest() as stop:
            while self.epoch < self.total_epochs:
                epoch = self.epoch + 1
                finished = self._run_epoch(epoch, stop)
                if stop() and not (finished and self.epoch >= self.total_epochs):
                    self._stopped(stop, epoch, finished)
        return self._finish()

    def _pretrain(self):
        """The method's pre-training stage, then a 'latest' at stage 'main'.

        The global RNGs and the loader's generator are put back as they were before the
        stage, so the main loop draws the same numbers whether the stage ran or was
        loaded from a cache (PACKD's teacher head). A signal during the stage ends the
        run at once: there is nothing to save yet, the stage restarts on the next run.
        """
        rng, loader_state = capture_rng(), self.train_loader.state_dict()
        try:
            with StopRequest(immediate=True):
                self.distiller.pretrain(self.train_loader, self.opt, self.device, self.log)
        except Interrupted as e:
            print(f"stopped by {e} during the pre-training stage; nothing to save yet: the same command "
                  f"(with or without --resume auto) redoes the stage", file=sys.stderr)
            raise SystemExit(128 + e.signum) from None
        restore_rng(rng)
        self.train_loader.load_state_dict(loader_state)
        self.stage = "main"
        self.epoch_start_loader = self.train_loader.state_dict()
        self.save(LATEST)

    def _stopped(self, stop, epoch, finished):
        if not finished:
            self.save(LATEST)
            where = f"epoch {epoch} after step {self.step}/{len(self.train_loader)}"
        else:
            where = f"the end of epoch {epoch}"
        print(f"stopped by {stop.name} at {where}; state saved to '{os.path.join(self.run_dir, LATEST)}'. "
              f"Resume with the same command plus --resume auto", file=sys.stderr)
        raise SystemExit(128 + stop.signal)

    def _run_epoch(self, epoch, stop):
        """Train and evaluate one epoch; False when a signal stopped it mid-way (state kept)."""
        opt = self.opt
        forward_only = self.distiller.forward_only_first_epoch and epoch == 1
        lr = learning_rate_at(epoch, opt.learning_rate, opt.lr_decay_epochs, opt.lr_decay_rate)
        set_lr(self.optimizer, lr)
        stats = EpochStats(self.device)
        if self.stats_state is not None and self.step:
            stats.load_state_dict(self.stats_state)
        if self.hooks is not None:
            self.hooks.start_epoch(epoch, self.step)
        t0 = time.time()
        desc = f"epoch {epoch}/{self.total_epochs}" + (" (forward only)" if forward_only else "")
        progress = Progress(len(self.train_loader), desc, enabled=not getattr(opt, "no_progress", False))
        try:
            stats, steps, stopped = train_epoch(
                self.distiller, self.train_loader, self.optimizer, epoch, self.device, amp=opt.amp,
                forward_only=forward_only, skip=self.step, stats=stats, print_freq=opt.print_freq,
                should_stop=stop, progress=progress, cuda_graph_steps=uses_cuda_graphs(opt))
        finally:
            progress.close()
        if stopped:
            self.step, self.stats_state = steps, stats.state_dict()
            return False
        test = evaluate(self.distiller, self.test_loader, self.device, amp=opt.amp)
        self.epoch, self.step, self.stats_state = epoch, 0, None
        self.epoch_start_loader = self.train_loader.state_dict()
        acc = test["test_acc"]
        self.last_acc = acc
        row = {"epoch": epoch, "lr": lr, **stats.summary(), **test, "seconds": round(time.time() - t0, 3)}
        if forward_only:
            row["forward_only"] = True
        self._record(row)
        self.log(f"epoch {epoch}/{self.total_epochs} lr {lr:.4g} | train loss {row['train_loss']:.4f} "
                 f"acc {row['train_acc']:.2f} | test loss {test['test_loss']:.4f} acc {acc:.2f} "
                 f"top5 {test['test_acc_top5']:.2f} | {row['seconds']:.1f}s")
        if acc > self.best_acc or self.best_epoch == 0:
            self.best_acc, self.best_epoch = acc, epoch
            self.save(f"{self.model_name}_best.pth", acc)
        if opt.save_freq > 0 and epoch % opt.save_freq == 0:
            self.save(f"ckpt_epoch_{epoch}.pth", acc)
        self.save(LATEST, acc)  # last: a crash before this line redoes the epoch
        return True

    def _finish(self):
        self.save(f"{self.model_name}_last.pth")
        summary = {"last_acc": self.last_acc, "best_acc": self.best_acc, "best_epoch": self.best_epoch,
                   "epochs": self.total_epochs}
        atomic_write_json(summary, os.path.join(self.run_dir, SUMMARY))
        if self.writer is not None:
            self.writer.close()
        self.log(f"finished: last-epoch test top-1 {self.last_acc:.2f} (reported), "
                 f"best {self.best_acc:.2f} at epoch {self.best_epoch}; run folder '{self.run_dir}'")
        return summary


def make_optimizer(params, opt, device):
    kwargs = dict(lr=opt.learning_rate, momentum=opt.momentum, weight_decay=opt.weight_decay)
    if device.type == "cuda":
        kwargs["fused"] = True
    return torch.optim.SGD(params, **kwargs)


def run_guarded(main):
    """Run a script's main with one-line errors and meaningful exit codes.

    UsageError (bad flag, path, checkpoint, data) -> exit 2; a ValueError raised while
    setting up (before the first epoch, e.g. a method rejecting its settings) -> exit 2;
    a non-finite loss -> exit 3; a second Ctrl-C -> exit 130. Set KD_DEBUG=1 to get
    the traceback of a set-up ValueError.
    """
    try:
        main()
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
    except NonFiniteLoss as e:
        print(f"error: {e}; the run stopped and its last good checkpoints are untouched "
              f"(try a lower --learning_rate or loss weights)", file=sys.stderr)
        raise SystemExit(3)
    except KeyboardInterrupt:
        print("interrupted; resume from the last epoch's latest.pth with the same command plus --resume auto",
              file=sys.stderr)
        raise SystemExit(130)
    except ValueError as e:
        if os.environ.get("KD_DEBUG") or _in_training():
            raise
        text = " ".join(str(e).split()) or type(e).__name__
        print(f"error: {text}", file=sys.stderr)
        raise SystemExit(2)


def _in_training():
    """Whether the failing call came from inside Trainer.fit (then a ValueError is a bug: show it)."""
    tb = sys.exc_info()[2]
    while tb is not None:
        if tb.tb_frame.f_code is Trainer.fit.__code__:
            return True
        tb = tb.tb_next
    return False
