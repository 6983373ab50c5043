"""The one training loop, shared by train_teacher.py and train_student.py.

A step: distiller(batch) -> (logits, weighted loss terms) -> sum -> backward -> step.
Metrics stay on the device and are read back once per print interval, so a step never
waits for the host. A non-finite loss is remembered on the device (first bad step and
its terms). On the CPU that flag is read after every step (a read costs nothing there);
on CUDA it is copied to pinned host memory without waiting and looked at once the copy
has landed, so a bad step stops the run one or two steps later, never by a host sync.
Every print interval (and the last step) also reads it synchronously.
"""
import contextlib

import torch
import torch.nn.functional as F

from util.errors import NonFiniteLoss
from helper.util import topk_correct
from util.dist import sum_over_ranks
from util.precision import autocast_context


class EpochStats:
    """Running sums of one epoch, on the device.

    A GPU step is bound by kernel launches, so `add` keeps to about 15 small ops: the loss
    and its terms stacked into one float64 vector, the top-1 hits, and the first
    non-finite step with its values. The sample count lives on the host.
    """

    def __init__(self, device):
        self.device = torch.device(device)
        self._names = []
        self.sums = None  # float64 [loss * n, term * n ..., top-1 hits], created by the first add
        self.bad = None   # float64 [first non-finite step (-1: none), its loss, its terms ...]
        self.count = 0
        self.steps = 0
        self._host_flag = self._flag_event = None
        if self.device.type == "cuda":
            self._host_flag = torch.full((), -1.0, dtype=torch.float64, pin_memory=True)
            self._flag_event = torch.cuda.Event()

    def _allocate(self, names, device):
        self._names = list(names)
        width = len(self._names) + 2
        self.sums = torch.zeros(width, dtype=torch.float64, device=device)
        self.bad = torch.full((width,), -1.0, dtype=torch.float64, device=device)

    def add(self, step, loss, terms, logits, labels):
        n = labels.shape[0]
        values = torch.stack([loss.detach().float(), *(v.detach().float() for v in terms.values())]).double()
        if self.sums is None:
            self._allocate(terms, values.device)
        self.sums[:-1].add_(values, alpha=n)
        self.sums[-1:].add_(topk_correct(logits.detach(), labels)[0])
        first_bad = torch.logical_and(self.bad[0] < 0, values[0].isfinite().logical_not())
        self.bad = torch.where(first_bad, torch.cat([values.new_full((1,), step), values]), self.bad)
        self.count += n
        self.steps += 1
        if self._host_flag is not None:
            self._host_flag.copy_(self.bad[0], non_blocking=True)
            self._flag_event.record()

    def poll_finite(self, epoch, total=None):
        """Without waiting for the device: raise NonFiniteLoss if a bad step is already known."""
        if self.device.type == "cpu":
            return self.check_finite(epoch, total)
        if self._host_flag is not None and self._flag_event.query() and float(self._host_flag) >= 0:
            self.check_finite(epoch, total)

    def check_finite(self, epoch, total=None):
        """Host sync: raise NonFiniteLoss if any step so far had a non-finite loss."""
        if self.bad is None:
            return
        bad = self.bad.tolist()
        if bad[0] >= 0:
            raise NonFiniteLoss(epoch, int(bad[0]) + 1, dict(zip(self._names, bad[2:])), total)

    def running(self):
        """(mean loss, top-1 %) so far: one host read."""
        summary = self.summary()
        return summary["train_loss"], summary["train_acc"]

    def summary(self):
        count = max(self.count, 1)
        sums = self.sums.tolist() if self.sums is not None else [0.0, 0.0]
        out = {"train_loss": sums[0] / count, "train_acc": 100.0 * sums[-1] / count}
        out.update({f"loss_{k}": v / count for k, v in zip(self._names, sums[1:-1])})
        return out

    def state_dict(self):
        """The layout of earlier versions (checkpoints stay interchangeable)."""
        zero = torch.zeros((), dtype=torch.float64, device=self.device)
        sums = self.sums if self.sums is not None else torch.zeros(2, dtype=torch.float64, device=self.device)
        return {"loss": sums[0].clone(), "correct": sums[-1].clone(), "count": zero + self.count,
                "terms": {k: sums[1 + i].clone() for i, k in enumerate(self._names)}, "steps": self.steps}

    def sum_over_ranks(self):
        """Under torch.distributed: the epoch's sums and count over all ranks (once per epoch)."""
        if self.sums is not None:
            sum_over_ranks(self.sums)
        count = sum_over_ranks(torch.tensor([float(self.count)], dtype=torch.float64, device=self.device))
        self.count = int(round(float(count)))

    def load_state_dict(self, s):
        self.count, self.steps = int(round(float(s["count"]))), s["steps"]
        self.sums = self.bad = None
        self._names = []
        if s["terms"] or self.steps:
            self._allocate(s["terms"], self.device)
            parts = [s["loss"], *s["terms"].values(), s["correct"]]
            self.sums.copy_(torch.stack([p.to(self.device, torch.float64) for p in parts]))


def uses_cuda_graphs(opt):
    """True when the models are compiled with CUDA graphs (`--compile --compile_mode reduce-overhead`)."""
    return bool(getattr(opt, "compile", False)) and getattr(opt, "compile_mode", None) == "reduce-overhead"


def train_epoch(distiller, loader, optimizer, epoch, device, *, amp=False, forward_only=False, skip=0,
                stats=None, print_freq=100, should_stop=lambda: False, progress=None, cuda_graph_steps=False,
                step_module=None):
    """One pass over `loader`. Returns (stats, steps_done, stopped_early).

    Calls `distiller.set_epoch(epoch)` first (warm-ups, momentum schedules).
    forward_only: no gradient, no optimizer step (PACKD's first epoch fills its memory
    and the student's BatchNorm statistics). skip: steps already done (mid-epoch resume).
    step_module: the module whose call runs `distiller.forward_train(batch)` (the DDP wrapper under
    torchrun, so gradients are averaged over ranks); default the distiller itself.
    cuda_graph_steps: mark each step's start for CUDA graphs (`uses_cuda_graphs`), so the
    graphs' outputs of the previous step may be reused. The step calls several graphs
    (student forward, teacher forward, student backward) and keeps none of the previous
    step's outputs, so marking is always right; torch's own heuristic needs no mark either,
    but says that it can guess wrong.
    """
    distiller.train()
    distiller.set_epoch(epoch)
    stats = stats or EpochStats(device)
    total = len(loader)
    forward = step_module if step_module is not None else distiller.forward_train
    grad_context = torch.no_grad if forward_only else contextlib.nullcontext
    for step, batch in enumerate(loader.iterate(skip), start=skip):
        if cuda_graph_steps:
            torch.compiler.cudagraph_mark_step_begin()
        with grad_context(), autocast_context(device, amp):
            logits, terms = forward(batch)
            loss = sum(terms.values())
        if not forward_only:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        stats.add(step, loss.float(), terms, logits.float(), batch.labels)
        last = step + 1 == total
        if (step + 1) % print_freq == 0 or last:
            stats.check_finite(epoch, total)
            if progress is not None:
                progress.update_to(step + 1, stats)
        else:
            stats.poll_finite(epoch, total)
            if progress is not None:
                progress.step(step + 1)  # the count is known on the host: no read-back
        if should_stop() and not last:
            stats.check_finite(epoch, total)
            return stats, step + 1, True
    return stats, total, False


@torch.no_grad()
def evaluate(model, loader, device, amp=False):
    """Test loss, top-1 and top-5 (percent) over a loader of Batches; one host sync."""
    model.eval()
    loss = torch.zeros((), device=device, dtype=torch.float64)
    c1 = torch.zeros_like(loss)
    c5 = torch.zeros_like(loss)
    n = torch.zeros_like(loss)
    for batch in loader:
        with autocast_context(device, amp):
            logits = model(batch.images)
        logits = logits.float()
        loss += F.cross_entropy(logits, batch.labels, reduction="sum").double()
        a1, a5 = topk_correct(logits, batch.labels, (1, 5))
        c1 += a1
        c5 += a5
        n += batch.labels.shape[0]
    # sharded under torch.distributed: the sums of all ranks, i.e. one process's evaluation
    loss, c1, c5, n = sum_over_ranks(torch.stack([loss, c1, c5, n])).tolist()
    return {"test_loss": loss / n, "test_acc": 100.0 * c1 / n, "test_acc_top5": 100.0 * c5 / n}
