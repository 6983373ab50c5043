"""A run from start to finish: state, checkpoints, resume, pre-training stage, epochs.

Used by both train_teacher.py and train_student.py. The resumable state is the whole
distiller (student and the method's modules, memory banks and constants; the frozen
teacher excepted), the optimizer, epoch and step, best accuracy, the loaders'
generators, the global RNGs and the stage (pre-training or main loop).

Every epoch ends with an atomic `latest.pth`; `--resume auto` continues from it. A run
killed in the middle of an epoch redoes that epoch from its start with the saved
generators, so with `--deterministic` it ends bit for bit where an uninterrupted run
ends. SIGINT/SIGTERM finish the current step and save a mid-epoch `latest.pth`.
Which folder a run uses and whether it may resume is `helper.run_folder`'s decision;
run.json / metrics / TensorBoard are `helper.run_log`'s.
"""
import json
import os
import sys
import time

import torch

from helper import distributed, run_folder
from helper.checkpoint import atomic_save, atomic_write_json, capture_rng, load_checkpoint, plain, restore_rng
from helper.checkpoint import remove_stale_temp_files
from helper.loops import EpochStats, evaluate, train_epoch, uses_cuda_graphs
from helper.run_folder import LATEST, SUMMARY
from helper.run_log import Progress, RunLog
from helper.signals import Interrupted, StopRequest
from helper.util import learning_rate_at, set_lr
from util.errors import NonFiniteLoss, UsageError

# What a checkpoint must hold to be resumed from (a teacher release holds only "model").
RESUME_KEYS = ("model", "optimizer", "distiller", "epoch", "step", "stage", "loader", "rng", "run")


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


def check_run_folder(run_dir, opt, identity, log=print):
    """`helper.run_folder.check_run_folder` reading this project's checkpoints."""
    return run_folder.check_run_folder(run_dir, opt, identity, read_resumable, log)


class Trainer:
    def __init__(self, opt, distiller, train_loader, test_loader, run_dir, model_name, identity, run_info,
                 device, log=print, procs=None):
        self.procs = procs or distributed.Processes()
        if not self.procs.is_main:
            log = _silent  # rank 0 alone prints and writes
        self.opt, self.distiller = opt, distiller
        self.train_loader, self.test_loader = train_loader, test_loader
        self.run_dir, self.model_name, self.identity = run_dir, model_name, identity
        self.run_info = run_info
        self.device = device
        self.log = log
        if getattr(opt, "sync_bn", False) and self.procs.distributed and device.type != "cuda":
            raise UsageError("--sync_bn needs CUDA: PyTorch's SyncBatchNorm does not run on the CPU (gloo); "
                             "drop it there")
        if getattr(opt, "sync_bn", False) and not self.procs.distributed:
            log("note: --sync_bn has no effect in one process (it syncs BatchNorm across torchrun's processes)")
        self.optimizer = make_optimizer(distiller.trainable_parameters(), opt, device)
        self.step_module = None  # the DDP wrapper, built once every rank holds the same state
        self.total_epochs = opt.epochs + (1 if distiller.forward_only_first_epoch else 0)
        self.epoch = 0          # last finished epoch
        self.step = 0           # steps done in the current (unfinished) epoch
        self.stage = "pretrain"
        self.best_acc = 0.0
        self.best_epoch = 0
        self.last_acc = None
        self.stats_state = None
        self.epoch_start_loader = train_loader.state_dict()
        self.run_log = RunLog(run_dir, tensorboard=not getattr(opt, "no_tensorboard", False), log=log)

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
            "run": {"identity": plain(self.identity), "total_epochs": self.total_epochs,
                    "world_size": self.procs.world_size},
        }

    def _per_rank_state(self, state):
        """Under torchrun: every rank's loader generators and RNGs, so each resumes its own."""
        if self.procs.distributed:
            ranks = distributed.gather_objects({"loader": state["loader"], "rng": state["rng"]})
            state["loader_ranks"] = [r["loader"] for r in ranks]
            state["rng_ranks"] = [r["rng"] for r in ranks]
        return state

    def load(self, path):
        """Restore everything `state` saved; UsageError (nothing changed on disk) when it does not fit."""
        ckpt = read_resumable(path)
        theirs = ckpt["run"].get("world_size", 1)
        if theirs != self.procs.world_size:
            raise UsageError(f"--resume '{path}' was trained by {theirs} process(es), this command runs "
                             f"{self.procs.world_size}; resume with the same torchrun --nproc_per_node x --nnodes "
                             f"(the data order and every rank's generators depend on it)")
        if self.procs.distributed:  # this rank's own generators
            ckpt["loader"] = ckpt["loader_ranks"][self.procs.rank]
            ckpt["rng"] = ckpt["rng_ranks"][self.procs.rank]
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
        """Collective under torchrun (every rank's generators are gathered); rank 0 writes."""
        state = self._per_rank_state(self.state(accuracy))
        if self.procs.is_main:
            atomic_save(state, os.path.join(self.run_dir, name))

    @property
    def finished(self):
        return self.stage == "main" and self.epoch >= self.total_epochs

    # -- the run -----------------------------------------------------------------------
    def fit(self, resume_path=None):
        fresh = resume_path is None
        if not fresh:
            self.load(resume_path)  # before anything is written: a checkpoint that does not fit changes nothing
            if self.finished:
                return self._already_finished()
        if not self.procs.is_main:
            pass  # files are rank 0's
        elif fresh:
            os.makedirs(self.run_dir, exist_ok=True)
            remove_stale_temp_files(self.run_dir)
            # a fresh start in a folder holding an unfinished (or overwritten) run
            if os.path.isfile(os.path.join(self.run_dir, LATEST)):
                self.log(f"note: starting afresh in '{self.run_dir}'; its {LATEST} will be replaced "
                         f"(add --resume auto to continue it instead)")
            self.run_log.forget_metrics()
            summary = os.path.join(self.run_dir, SUMMARY)
            if os.path.exists(summary):
                os.unlink(summary)
            self.run_log.open(plain(self.run_info))  # run.json: written once, by the run that starts
        else:
            remove_stale_temp_files(self.run_dir)
            self.run_log.trim_metrics(self.epoch)
            self.run_log.open()
        if self.stage == "pretrain":
            self._pretrain()
        self._wrap_for_processes()
        # Under torchrun a signal ends every rank at once (the ranks cannot agree on a step to
        # stop at without a sync per step): the run loses at most the current epoch.
        with StopRequest(immediate=self.procs.distributed) as stop:
            while self.epoch < self.total_epochs:
                epoch = self.epoch + 1
                try:
                    finished = self._run_epoch(epoch, stop)
                except Interrupted as e:
                    print(f"stopped by {e} during epoch {epoch}; '{os.path.join(self.run_dir, LATEST)}' holds the "
                          f"end of epoch {self.epoch}: the same command plus --resume auto continues",
                          file=sys.stderr)
                    raise SystemExit(128 + e.signum) from None
                if stop() and not (finished and self.epoch >= self.total_epochs):
                    self._stopped(stop, epoch, finished)
        return self._finish()

    def _already_finished(self):
        """A resume of a finished run of the same identity: report it, write nothing."""
        path = os.path.join(self.run_dir, SUMMARY)
        summary = None
        if os.path.isfile(path):
            with open(path) as fh:
                summary = json.load(fh)
        if summary is None:
            summary = {"last_acc": self.last_acc, "best_acc": self.best_acc, "best_epoch": self.best_epoch,
                       "epochs": self.total_epochs}
        self.log(f"already finished: this run of the same settings ended at epoch {self.epoch} with test "
                 f"top-1 {summary['last_acc']:.2f} (best {summary['best_acc']:.2f}); run folder "
                 f"'{self.run_dir}' (nothing rewritten; --overwrite trains it again)")
        return summary

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
                if self.procs.is_main:  # under torchrun: on the whole data, as one process; then broadcast
                    loader = self.train_loader.unsharded() if self.procs.distributed else self.train_loader
                    self.distiller.pretrain(loader, self.opt, self.device, self.log)
                distributed.broadcast_state(self.distiller)
        except Interrupted as e:
            print(f"stopped by {e} during the pre-training stage; nothing to save yet: the same command "
                  f"(with or without --resume auto) redoes the stage", file=sys.stderr)
            raise SystemExit(128 + e.signum) from None
        restore_rng(rng)
        self.train_loader.load_state_dict(loader_state)
        self.stage = "main"
        self.epoch_start_loader = self.train_loader.state_dict()
        self.save(LATEST)

    def _wrap_for_processes(self):
        """Under torchrun: make every rank hold rank 0's state, then let DDP average gradients.

        Buffers are not broadcast each step: memory banks stay in sync by their own gathered
        updates, and BatchNorm statistics are per rank (as in any DDP run; --sync_bn syncs them)."""
        if not self.procs.distributed or self.step_module is not None:
            return
        if getattr(self.opt, "sync_bn", False):
            # after any pre-training stage (rank 0 runs it alone: a SyncBatchNorm there would wait
            # for the other ranks); the converted layers keep the same Parameter objects
            distiller = self.distiller
            distiller.student = torch.nn.SyncBatchNorm.convert_sync_batchnorm(distiller.student)
            for name, module in list(distiller.named_children()):
                if any(module is extra for extra in distiller.extra_modules()):
                    setattr(distiller, name, torch.nn.SyncBatchNorm.convert_sync_batchnorm(module))
        self.step_module = distributed.wrap_step(self.distiller)

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
        t0 = time.time()
        desc = f"epoch {epoch}/{self.total_epochs}" + (" (forward only)" if forward_only else "")
        progress = Progress(len(self.train_loader), desc, start=self.step,
                            enabled=self.procs.is_main and not getattr(opt, "no_progress", False))
        try:
            stats, steps, stopped = train_epoch(
                self.distiller, self.train_loader, self.optimizer, epoch, self.device, amp=opt.amp,
                forward_only=forward_only, skip=self.step, stats=stats, print_freq=opt.print_freq,
                should_stop=stop, progress=progress, cuda_graph_steps=uses_cuda_graphs(opt),
                step_module=self.step_module)
        finally:
            progress.close()
        if stopped:
            self.step, self.stats_state = steps, stats.state_dict()
            return False
        if self.procs.distributed:
            # BatchNorm statistics are per process: every rank takes rank 0's (the weights that are
            # saved), so the sharded evaluation is that model's, and all ranks end the epoch identical
            distributed.broadcast_buffers(self.distiller.student)
        test = evaluate(self.distiller, self.test_loader, self.device, amp=opt.amp)
        stats.sum_over_ranks()
        self.epoch, self.step, self.stats_state = epoch, 0, None
        self.epoch_start_loader = self.train_loader.state_dict()
        acc = test["test_acc"]
        self.last_acc = acc
        row = {"epoch": epoch, "lr": lr, **stats.summary(), **test, "seconds": round(time.time() - t0, 3)}
        if forward_only:
            row["forward_only"] = True
        if self.procs.is_main:
            self.run_log.record(row)
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
        if "generated_data" in self.run_info:
            summary["generated_data"] = bool(self.run_info["generated_data"])
        if self.procs.is_main:
            atomic_write_json(summary, os.path.join(self.run_dir, SUMMARY))
        self.run_log.close()
        self.log(f"finished: last-epoch test top-1 {self.last_acc:.2f} (reported), "
                 f"best {self.best_acc:.2f} at epoch {self.best_epoch}; run folder '{self.run_dir}'")
        return summary


def _silent(*args, **kwargs):
    pass


def make_optimizer(params, opt, device):
    kwargs = dict(lr=opt.learning_rate, momentum=opt.momentum, weight_decay=opt.weight_decay)
    if device.type == "cuda":
        kwargs["fused"] = True
    return torch.optim.SGD(params, **kwargs)


def run_guarded(main):
    """Run a script's main with one-line errors and meaningful exit codes.

    UsageError (bad flag, path, checkpoint, data, method settings) -> exit 2; a non-finite
    loss -> exit 3; a second Ctrl-C -> exit 130. Anything else is a bug and shows its
    traceback (a ValueError in a method's __init__ included).
    """
    say = print if distributed.launched_processes().is_main else _silent  # one line, not one per rank
    try:
        main()
        distributed.stop()  # only after a run that ended well: a failed rank must not wait for the others
    except UsageError as e:
        say(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
    except NonFiniteLoss as e:
        print(f"error: {e}; the run stopped and its last good checkpoints are untouched ({e.hint})",
              file=sys.stderr)
        raise SystemExit(3)
    except KeyboardInterrupt:
        say("interrupted; resume from the last epoch's latest.pth with the same command plus --resume auto",
            file=sys.stderr)
        raise SystemExit(130)
