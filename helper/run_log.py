"""What a run writes besides checkpoints: run.json, metrics.jsonl, TensorBoard, the progress bar.

Rank-free and method-free: rows are plain dicts of numbers, the same names everywhere
(`loss_<term>` for each weighted loss term a method returns).
"""
import json
import os
import sys

from util.atomic import atomic_write_json, atomic_write_text

METRICS = "metrics.jsonl"


class Progress:
    """A tqdm bar per epoch: its count moves every step (known on the host, no sync); the
    loss/accuracy shown are read back only at print intervals."""

    def __init__(self, total, desc, enabled=True, start=0):
        self.bar = None
        if enabled:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr, initial=start)

    def step(self, n):
        """Steps done so far in the epoch (host-side count)."""
        if self.bar is not None:
            self.bar.update(n - self.bar.n)

    def update_to(self, n, stats):
        """Count plus the running loss and top-1 (one host read, at print intervals)."""
        if self.bar is not None:
            loss, acc = stats.running()
            self.bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.1f}", refresh=False)
            self.step(n)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class RunLog:
    """run.json (written once, when a run starts), metrics.jsonl and TensorBoard of one run folder."""

    def __init__(self, run_dir, tensorboard=True, log=print):
        self.run_dir, self.tensorboard, self.log = run_dir, tensorboard, log
        self.writer = None

    def open(self, run_info=None):
        """Start logging; `run_info` is written as run.json (only for a fresh run)."""
        os.makedirs(self.run_dir, exist_ok=True)
        if run_info is not None:
            atomic_write_json(run_info, os.path.join(self.run_dir, "run.json"))
        if self.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.writer = SummaryWriter(os.path.join(self.run_dir, "tb"))
            except ImportError:
                self.log("note: tensorboard is not installed; TensorBoard logs are off (pip install tensorboard)")

    def forget_metrics(self):
        """A fresh start: drop the rows of the run this folder held before."""
        path = os.path.join(self.run_dir, METRICS)
        if os.path.exists(path):
            os.unlink(path)

    def trim_metrics(self, last_epoch):
        """Drop rows of epochs after `last_epoch` (written before a crash, redone now)."""
        path = os.path.join(self.run_dir, METRICS)
        if not os.path.isfile(path):
            return
        with open(path) as fh:
            lines = [line for line in fh if line.strip()]
        keep = []
        for line in lines:
            try:
                if json.loads(line).get("epoch", 0) <= last_epoch:
                    keep.append(line)
            except ValueError:
                pass  # a line cut off by a crash
        if len(keep) != len(lines):
            atomic_write_text("".join(keep), path)

    def record(self, row):
        with open(os.path.join(self.run_dir, METRICS), "a") as fh:
            fh.write(json.dumps(row) + "\n")
        if self.writer is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.writer.add_scalar(k, v, row["epoch"])
            self.writer.flush()

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
