"""Errors a user can fix: one line on stderr and a non-zero exit, no traceback.

UsageError (bad input) exits 2; NonFiniteLoss (training diverged) exits 3.
"""
import math


class UsageError(ValueError):
    """Bad input (flag, path, checkpoint, data); the message says what to do."""


class NonFiniteLoss(RuntimeError):
    """A step's loss was NaN or infinite. `step` counts from 1, as in the message."""

    # What to try: the main loop's knobs; a pre-training stage names its own.
    DEFAULT_HINT = "try a lower --learning_rate or loss weights"

    def __init__(self, epoch, step, terms, total=None, stage=None, hint=None):
        self.epoch, self.step, self.terms, self.total, self.stage = epoch, step, terms, total, stage
        self.hint = hint or self.DEFAULT_HINT
        shown = ", ".join(f"{k}={v:.4g}" for k, v in terms.items())
        if stage is not None:  # a pre-training stage, checked once per epoch
            super().__init__(f"non-finite loss in {stage}, epoch {epoch} (epoch average: {shown})")
            return
        of = f"/{total}" if total else ""
        super().__init__(f"non-finite loss at epoch {epoch}, step {step}{of} (loss terms: {shown})")


def check_stage_loss(average, stage, epoch, name="loss", hint=None):
    """Raise NonFiniteLoss when a pre-training stage's epoch-average loss is NaN or infinite;
    `hint` names the flag that controls that stage (e.g. its learning rate)."""
    if not math.isfinite(average):
        raise NonFiniteLoss(epoch, None, {name: average}, stage=stage, hint=hint)
