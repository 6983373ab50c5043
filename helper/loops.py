"""The one training loop, shared by train_teacher.py and train_student.py.

A step: distiller(batch) -> (logits, weighted loss terms) -> sum -> backward -> step.
Metrics stay on the device and are read back once per print interval, so a step never
waits for the host. A non-finite loss is remembered on the device (first bad step and
its terms) and reported at the next read-back.
"""
import contextlib

import torch
import torch.nn.functional as F

from helper.util import topk_correct


class NonFiniteLoss(RuntimeError):
    def __init__(self, epoch, step, terms):
        self.epoch, self.step, self.terms = epoch, step, terms
        shown = ", ".join(f"{k}={v:.4g}" for k, v in terms.items())
        super().__init__(f"non-finite loss at epoch {epoch}, step {step}: {shown}")


class EpochStats:
    """Running sums of one epoch, on the device."""

    def __init__(self, device, term_names=()):
        z = lambda: torch.zeros((), device=device, dtype=torch.float64)
        self.loss, self.correct, self.count = z(), z(), z()
        self.terms = {}
        self.bad_step = torch.full((), -1, device=device, dtype=torch.int64)
        self.bad_terms = None
        self.steps = 0

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

    def check_finite(self, epoch):
        """Host sync: raise NonFiniteLoss if any step so far had a non-finite loss."""
        step = int(self.bad_step)
        if step >= 0:
            raise NonFiniteLoss(epoch, step, dict(zip(self._names, self.bad_terms.tolist())))

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
            stats.check_finite(epoch)
            if progress is not None:
                progress.update_to(step + 1, stats)
        if should_stop() and not last:
            stats.check_finite(epoch)
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
