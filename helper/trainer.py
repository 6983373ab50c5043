"""Everything around the loop: run folder, checkpoints, resume, logs, signals.

Used by both train_teacher.py and train_student.py. The resumable state is the whole
distiller (student and the method's modules, memory banks and constants; the frozen
teacher excepted), the optimizer, epoch and step, best accuracy, the loaders'
generators, the global RNGs and the stage (pre-training or main loop).
"""
import json
import os
import signal
import sys
import time

import torch

from helper.checkpoint import atomic_save, atomic_write_json, load_checkpoint, plain
from helper.errors import UsageError
from helper.loops import EpochStats, NonFiniteLoss, evaluate, train_epoch
from helper.util import learning_rate_at, rng_state, set_lr, set_rng_state

LATEST = "latest.pth"


class StopRequest:
    """SIGINT/SIGTERM: finish the current step, write 'latest', exit non-zero."""

    def __init__(self):
        self.signal = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:  # second signal: give up at once
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def __call__(self):
        return self.signal is not None


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
            count = max(float(stats.count), 1.0)
            self.bar.set_postfix(loss=f"{float(stats.loss) / count:.3f}", acc=f"{100 * float(stats.correct) / count:.1f}")

    def close(self):
        if self.bar is not None:
            self.bar.close()


def check_run_folder(run_dir, opt, identity):
    """Decide how a run folder may be used, before anything is written to it.

    identity: dict of the values that must match for a resume (model names, method).
    Returns the checkpoint path to resume from, or None for a fresh start.
    """
    summary = os.path.join(run_dir, "summary.json")
    resume = getattr(opt, "resume", None)
    if resume:
        path = os.path.join(run_dir, LATEST) if resume == "auto" else resume
        if resume == "auto" and not os.path.isfile(path):
            return None  # nothing to resume: a fresh start
        ckpt = load_checkpoint(path, "--resume checkpoint")
        if not isinstance(ckpt, dict) or "run" not in ckpt:
            raise UsageError(f"--resume '{path}' is not a checkpoint written by this project's training scripts")
        theirs = ckpt["run"].get("identity", {})
        for k, v in identity.items():
            if theirs.get(k) != v:
                raise UsageError(f"--resume '{path}' is a run of {k}={theirs.get(k)!r}, not {v!r}; "
                                 f"point --resume at a run of the same {k}")
        return path
    if os.path.isfile(summary) and not getattr(opt, "overwrite", False):
        raise UsageError(f"'{run_dir}' already holds a finished run; use --resume auto to reuse it, "
                         f"--overwrite to train again, or another --trial")
    return None


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
            "rng": rng_state(),
            "args": plain(vars(self.opt)),
            "run": {"identity": plain(self.identity), "total_epochs": self.total_epochs},
        }

    def load(self, path):
        ckpt = load_checkpoint(path, "--resume checkpoint")
        self.distiller.student.load_state_dict(ckpt["model"])
        missing, unexpected = self.distiller.load_state_dict(
            {**{f"student.{k}": v for k, v in ckpt["model"].items()}, **ckpt["distiller"]}, strict=False)
        unexpected = [k for k in unexpected if not k.startswith("teacher.")]
        missing = [k for k in missing if not k.startswith("teacher.")]
        if missing or unexpected:
            raise UsageError(f"--resume '{path}' does not fit this method (missing {missing[:3]}, unexpected {unexpected[:3]})")
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.epoch, self.step, self.stage = ckpt["epoch"], ckpt["step"], ckpt["stage"]
        self.best_acc, self.best_epoch = ckpt["best_acc"], ckpt.get("best_epoch", 0)
        self.last_acc = ckpt["accuracy"]
        self.epoch_start_loader = ckpt["loader"]
        self.train_loader.load_state_dict(ckpt["loader"])
        self.stats_state = ckpt["epoch_stats"]
        set_rng_state(ckpt["rng"])
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

    def _record(self, row):
        with open(os.path.join(self.run_dir, "metrics.jsonl"), "a") as fh:
            fh.write(json.dumps(row) + "\n")
        if self.writer is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)):
                    self.writer.add_scalar(k, v, row["epoch"])
            self.writer.flush()

    # -- the run -----------------------------------------------------------------------
    def fit(self, resume_path=None):
        fresh = resume_path is None
        if fresh:
            # a fresh start in a folder holding an unfinished (or overwritten) run
            for stale in ("metrics.jsonl", "summary.json"):
                p = os.path.join(self.run_dir, stale)
                if os.path.exists(p):
                    os.unlink(p)
        self._open_logs()
        if not fresh:
            self.load(resume_path)
        if self.epoch >= self.total_epochs and self.stage == "main":
            return self._finish()
        with StopRequest() as stop:
            if self.stage == "pretrain":
                self.distiller.pretrain(self.train_loader, self.opt, self.device, self.log)
                self.stage = "main"
                self.epoch_start_loader = self.train_loader.state_dict()
                self.save(LATEST)
            while self.epoch < self.total_epochs:
                epoch = self.epoch + 1
                if not self._run_epoch(epoch, stop):
                    self.save(LATEST)
                    self.log(f"stopped by signal at epoch {epoch}, step {self.step}; state saved to "
                             f"'{os.path.join(self.run_dir, LATEST)}'. Resume with the same command plus --resume auto")
                    raise SystemExit(130)
        return self._finish()

    def _run_epoch(self, epoch, stop):
        opt = self.opt
        forward_only = self.distiller.forward_only_first_epoch and epoch == 1
        lr = learning_rate_at(epoch, opt.learning_rate, opt.lr_decay_epochs, opt.lr_decay_rate)
        set_lr(self.optimizer, lr)
        stats = EpochStats(self.device)
        if self.stats_state is not None and self.step:
            stats.load_state_dict(self.stats_state)
        t0 = time.time()
        desc = f"epoch {epoch}/{self.total_epochs}" + (" (forward only)" if forward_only else "")
        progress = Progress(len(self.train_loader), desc, enabled=not getattr(opt, "no_progress", False))
        try:
            stats, steps, stopped = train_epoch(
                self.distiller, self.train_loader, self.optimizer, epoch, self.device, amp=opt.amp,
                forward_only=forward_only, skip=self.step, stats=stats, print_freq=opt.print_freq,
                should_stop=stop, progress=progress)
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
        if acc > self.best_acc:
            self.best_acc, self.best_epoch = acc, epoch
            self.save(f"{self.model_name}_best.pth", acc)
        if opt.save_freq > 0 and epoch % opt.save_freq == 0:
            self.save(f"ckpt_epoch_{epoch}.pth", acc)
        self.save(LATEST, acc)
        return True

    def _finish(self):
        self.save(f"{self.model_name}_last.pth")
        summary = {"last_acc": self.last_acc, "best_acc": self.best_acc, "best_epoch": self.best_epoch,
                   "epochs": self.total_epochs}
        atomic_write_json(summary, os.path.join(self.run_dir, "summary.json"))
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
    """Run a script's main: UsageError -> one line on stderr + exit 2; NaN -> exit 3."""
    try:
        main()
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
    except NonFiniteLoss as e:
        print(f"error: {e}; the run stopped and its last good checkpoints are untouched "
              f"(try a lower --learning_rate or loss weights)", file=sys.stderr)
        raise SystemExit(3)
