"""Errors a user can fix: one line on stderr and a non-zero exit, no traceback.

UsageError (bad input) exits 2; NonFiniteLoss (training diverged) exits 3.
"""
import math


class UsageError(ValueError):
    """Bad input (flag, path, checkpoint, data); the message says what to do."""


class NonFiniteLoss(RuntimeError):
    """A step's loss was NaN or infinite. `step` counts from 1, as in the message."""

    def __init__(self, epoch, step, terms, total=None, stage=None):
        self.epoch, self.step, self.terms, self.total, self.stage = epoch, step, terms, total, stage
        shown = ", ".join(f"{k}={v:.4g}" for k, v in terms.items())
        if stage is not None:  # a pre-training stage, checked once per epoch
            super().__init__(f"non-finite loss in {stage}, epoch {epoch} (epoch average: {shown})")
            return
        of = f"/{total}" if total else ""
        super().__init__(f"non-finite loss at epoch {epoch}, step {step}{of} (loss terms: {shown})")


def check_stage_loss(average, stage, epoch, name="loss"):
    """Raise NonFiniteLoss when a pre-training stage's epoch-average loss is NaN or infinite."""
    if not math.isfinite(average):
        raise NonFiniteLoss(epoch, None, {name: average}, stage=stage)
