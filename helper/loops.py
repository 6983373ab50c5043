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

from helper.errors import NonFiniteLoss
from helper.util import topk_correct


class EpochStats:
    """Running sums of one epoch, on the device."""

    def __init__(self, device, term_names=()):
        z = lambda: torch.zeros((), device=device, dtype=torch.float64)
        self.loss, self.correct, self.count = z(), z(), z()
        self.terms = {}
        self.bad_step = torch.full((), -1, device=device, dtype=torch.int64)
        self.bad_terms = None
        self._names = []
        self.steps = 0
        self._host_flag = self._flag_event = None
        if torch.device(device).type == "cuda":
            self._host_flag = torch.full((), -1, dtype=torch.int64, pin_memory=True)
            self._flag_event = torch.cuda.Event()

    def add(self, step, loss, terms, logits, labels):
        n = labels.shape[0]
        loss = loss.detach()
        self.loss += loss.double() * n
        self.correct += topk_correct(logits.detach(), labels)[0]
        self.count += n
        for k, v in terms.items():
            if k not in self.terms:
                self.terms[k] = torch.zeros_like(self.loss)
            self.terms[k] += v.detach().double() * n
        values = torch.stack([v.detach().float() for v in terms.values()])
        if self.bad_terms is None:
            self.bad_terms = torch.zeros_like(values)
        first_bad = (self.bad_step < 0) & ~torch.isfinite(loss)
        self.bad_step = torch.where(first_bad, torch.full_like(self.bad_step, step), self.bad_step)
        self.bad_terms = torch.where(first_bad, values, self.bad_terms)
        self._names = list(terms)
        self.steps += 1
        if self._host_flag is not None:
            self._host_flag.copy_(self.bad_step, non_blocking=True)
            self._flag_event.record()

    def poll_finite(self, epoch, total=None):
        """Without waiting for the device: raise NonFiniteLoss if a bad step is already known."""
        if self.bad_step.device.type == "cpu":
            return self.check_finite(epoch, total)
        if self._host_flag is not None and self._flag_event.query() and int(self._host_flag) >= 0:
            self.check_finite(epoch, total)

    def check_finite(self, epoch, total=None):
        """Host sync: raise NonFiniteLoss if any step so far had a non-finite loss."""
        step = int(self.bad_step)
        if step >= 0:
            raise NonFiniteLoss(epoch, step + 1, dict(zip(self._names, self.bad_terms.tolist())), total)

    def summary(self):
        count = max(float(self.count), 1.0)
        out = {"train_loss": float(self.loss) / count, "train_acc": 100.0 * float(self.correct) / count}
        out.update({f"loss_{k}": float(v) / count for k, v in self.terms.items()})
        return out

    def state_dict(self):
        return {"loss": self.loss, "correct": self.correct, "count": self.count, "terms": dict(self.terms),
                "steps": self.steps}

    def load_state_dict(self, s):
        dev = self.loss.device
        self.loss, self.correct, self.count = s["loss"].to(dev), s["correct"].to(dev), s["count"].to(dev)
        self.terms = {k: v.to(dev) for k, v in s["terms"].items()}
        self.steps = s["steps"]


def autocast_context(device, amp):
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def train_epoch(distiller, loader, optimizer, epoch, device, *, amp=False, forward_only=False, skip=0,
                stats=None, print_freq=100, should_stop=lambda: False, progress=None):
    """One pass over `loader`. Returns (stats, steps_done, stopped_early).

    forward_only: no gradient, no optimizer step (PACKD's first epoch fills its memory
    and the student's BatchNorm statistics). skip: steps already done (mid-epoch resume).
    """
    distiller.train()
    stats = stats or EpochStats(device)
    total = len(loader)
    step = skip
    grad_context = torch.no_grad if forward_only else contextlib.nullcontext
    for step, batch in enumerate(loader.iterate(skip), start=skip):
        with grad_context(), autocast_context(device, amp):
            logits, terms = distiller.forward_train(batch)
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
    n = 0
    for batch in loader:
        with autocast_context(device, amp):
            logits = model(batch.images)
        logits = logits.float()
        loss += F.cross_entropy(logits, batch.labels, reduction="sum").double()
        a1, a5 = topk_correct(logits, batch.labels, (1, 5))
        c1 += a1
        c5 += a5
        n += batch.labels.shape[0]
    vals = torch.stack([loss, c1, c5]).tolist()
    return {"test_loss": vals[0] / n, "test_acc": 100.0 * vals[1] / n, "test_acc_top5": 100.0 * vals[2] / n}
