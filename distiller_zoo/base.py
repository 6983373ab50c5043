"""The contract every distillation method follows (and the plain training of teachers).

A method is one file in `distiller_zoo/` holding a `Distiller` subclass with a `name`.
It is found by the registry (`distiller_zoo.METHODS`) without editing any list, and then
works everywhere: `train_student.py --distill`, the sweep (its `default_weights` and
`sweep_args`), `scripts/summarize.py` (`display_name`, `table_order`),
`scripts/benchmark.py` and the start-up message (`loss_terms`).

The class owns its extra trainable modules and criterion, declares which batch fields it
`needs` (see `dataset.batch`), owns its flags (`add_arguments`) and schedule
(`set_epoch`), and returns the student logits plus its loss terms by name, already
weighted. The training loop sums the terms and steps; it never knows which method it runs.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from dataset.batch import CONTRAST_INDEX, INDEX, VIEWS, Batch  # noqa: F401  (the fields a method may need)
from util.errors import UsageError
from util.precision import autocast_context

WEIGHT_NAMES = ("gamma", "alpha", "beta")


class Distiller(nn.Module):
    """Base class: plain cross-entropy training of `student` (also used for teachers).

    Subclasses set `name` and `needs`, add modules in `__init__` (anything assigned as an
    attribute other than `student`/`teacher` is trained with the student when it has
    parameters) and override `forward_train`.
    """
    # --distill name; the base class (plain training) is not a distillation method.
    name = "vanilla"
    # Row name in tables (default: `name`), and where the row goes (papers' order first).
    display_name = None
    table_order = 1000
    # Other --distill spellings accepted (e.g. the PACKD authors' loss class name).
    aliases = ()
    # Batch fields beyond images and labels (dataset.batch: INDEX, CONTRAST_INDEX, VIEWS).
    needs = frozenset()
    # Loss weights used when the user gives none: gamma (CE), alpha (KD), beta (method).
    default_weights = {"gamma": 1.0, "alpha": 0.0, "beta": 0.0}
    # CLI words the benchmark sweep passes besides -r/-a/-b (the published recipe).
    sweep_args = ()
    # Published variants the sweep also runs, as METHODS="<name>+<key>": {key: extra CLI words}.
    sweep_variants = {}
    # Flags of the authors' scripts accepted but without effect: {dest: reason}.
    no_effect_flags = {}
    # Flags of this method that change only speed or logs, never what is trained.
    speed_flags = ()
    # A forward-only pass over the data before training (PACKD: memory + BN statistics).
    forward_only_first_epoch = False

    def __init__(self, student, teacher=None, opt=None):
        super().__init__()
        if teacher is not None:
            refusal = type(self).pair_refusal(student, teacher)
            if refusal:
                raise UsageError(refusal)
        self.student = student
        self.teacher = teacher
        if teacher is not None:
            for p in teacher.parameters():
                p.requires_grad_(False)
        w = resolve_weights(type(self), opt)
        self.gamma, self.alpha, self.beta = w["gamma"], w["alpha"], w["beta"]
        self.teacher_bf16 = bool(getattr(opt, "teacher_bf16", False))
        self.epoch = 1

    # -- class-level description ------------------------------------------------------
    @classmethod
    def add_arguments(cls, parser):
        """Add the method's own flags to `parser` (an argparse parser). Called once per
        class that defines it, so methods sharing a flag define it in one file."""

    @classmethod
    def finalize_options(cls, opt):
        """Check the method's flags and fill the defaults that depend on the method, before
        anything is written; raise `UsageError` with what to do. Subclasses call super()."""

    @classmethod
    def resolve_pair_settings(cls, opt):
        """Fill the defaults that the authors set per teacher/student pair (flags left at None),
        once `opt.model_s` and `opt.model_t` are known and before the run's identity is taken.
        Per-pair weights go to opt.gamma/alpha/beta only when the user gave none."""

    @classmethod
    def pair_refusal(cls, student, teacher):
        """Why this method cannot distil `teacher` into `student`, in one line, else None.

        Decided from the built models' shapes alone (they may live on the meta device), so the
        sweep can list a pair as not applicable instead of running it; the constructor raises
        it as a UsageError."""
        return None

    @classmethod
    def needs_for(cls, opt):
        """The batch fields this run needs: `needs`, unless the method's form depends on the
        options (PACKD on ImageNet uses neither dataset positions nor contrast indices)."""
        return cls.needs

    @classmethod
    def folder_tags(cls, opt):
        """Run-folder name parts beyond RepDistiller's (`["ag:1.0"]`): the settings that tell
        this method's published ablations apart, so two of them never share a folder."""
        return []

    @classmethod
    def title(cls):
        return cls.display_name or cls.name

    def loss_terms(self):
        """{term name: what it is, with its weight}, in the order the terms are returned.

        The names are those of `forward_train`'s dict (logged as `loss_<name>`)."""
        terms = {"cls": f"{self.gamma:g}*CE"}
        if type(self).forward_train is not Distiller.forward_train and self.beta:
            terms["(method)"] = f"{self.beta:g}*{self.title()}"
        return terms

    def describe_loss(self):
        """One line for the start-up message: every term with its weight."""
        return " + ".join(f"{name}={text}" for name, text in self.loss_terms().items())

    # -- modules -------------------------------------------------------------------
    def train(self, mode=True):
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # the teacher is frozen, BatchNorm statistics included
        return self

    def extra_modules(self):
        """Modules, other than the student, whose parameters are trained with it."""
        return [m for name, m in self.named_children() if name not in ("student", "teacher")]

    def trainable_parameters(self):
        params = list(self.student.parameters())
        for m in self.extra_modules():
            params += [p for p in m.parameters() if p.requires_grad]
        return params

    # -- schedule ------------------------------------------------------------------
    def set_epoch(self, epoch):
        """Called by the loop before each epoch (1-based, forward-only epochs included).

        Warm-ups and momentum schedules read `self.epoch`; it is a Python number, so a
        schedule costs no host sync, and a resumed run gets the right value for free."""
        self.epoch = int(epoch)

    # -- steps ---------------------------------------------------------------------
    @torch.no_grad()
    def teacher_forward(self, images, is_feat=False, preact=False):
        """Teacher output without autograd (frozen, eval mode).

        With `--teacher_bf16` the teacher runs under bf16 autocast and its outputs come back
        as float32: the teacher is the larger network and needs no gradient, so it gains the
        most from low precision while the student keeps training in float32.
        """
        with self.teacher_precision(images.device):
            out = self.teacher(images, is_feat=True, preact=preact) if is_feat else self.teacher(images)
        if is_feat:
            feats, logits = out
            return [self._teacher_output(f) for f in feats], self._teacher_output(logits)
        return self._teacher_output(out)

    def teacher_precision(self, device):
        """bf16 autocast for the teacher with --teacher_bf16; otherwise whatever is active (e.g. --amp)."""
        return autocast_context(device, self.teacher_bf16)

    def _teacher_output(self, t):
        t = t.detach()
        return t.float() if self.teacher_bf16 else t

    def forward_train(self, batch):
        """-> (student logits for batch.images, {term name: weighted loss})."""
        logits, _, terms = self.logits_and_ce(batch, teacher_needed=False)
        return logits, terms

    def logits_and_ce(self, batch, teacher_needed):
        """(student logits, teacher logits or None, {"cls": CE term}): the teacher runs only when
        `teacher_needed`, so a logit method with zero weights costs one student forward."""
        logits_s = self.student(batch.images)
        logits_t = self.teacher_forward(batch.images) if teacher_needed else None
        return logits_s, logits_t, {"cls": self.gamma * F.cross_entropy(logits_s, batch.labels)}

    def forward(self, x):
        """Evaluation: the student's logits."""
        return self.student(x)

    def pretrain(self, loader, opt, device, log=print):
        """Optional stage before the main loop (AB, FT, FSP, PACKD's teacher head)."""
        return None


def resolve_weights(cls, opt):
    """gamma/alpha/beta from `opt` where given (not None), else the method's defaults."""
    out = {key: float(cls.default_weights.get(key, 0.0)) for key in WEIGHT_NAMES}
    for key in WEIGHT_NAMES:
        v = getattr(opt, key, None) if opt is not None else None
        if v is not None:
            out[key] = float(v)
    return out


def width_refusal(method, s_shapes, t_shapes):
    """For methods that compare feature maps channel by channel (FSP, KDSVD): a one-line refusal
    when the student's and the teacher's features differ in number or in channels, else None."""
    if len(s_shapes) != len(t_shapes):
        return (f"{method}: {len(s_shapes)} student vs {len(t_shapes)} teacher features; "
                "use models with the same number of stages")
    s_c = [int(s[1]) for s in s_shapes]
    t_c = [int(t[1]) for t in t_shapes]
    if s_c != t_c:
        return f"{method} needs equal channel numbers (student {s_c}, teacher {t_c}); pick a teacher of the student's width"
    return None


def feature_shapes(model, preact=False):
    """Shapes of `model(x, is_feat=True)` features on one dummy CIFAR batch of 2.

    Runs on the model's own device, in eval mode without gradients, so BatchNorm
    statistics are untouched.
    """
    was_training = model.training
    model.eval()
    with torch.no_grad():
        x = torch.zeros(2, 3, 32, 32, device=next(model.parameters()).device)
        feats, _ = model(x, is_feat=True, preact=preact)
    model.train(was_training)
    return [f.shape for f in feats]
