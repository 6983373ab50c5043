"""KD (Hinton et al., 2015) and the loss layout every RepDistiller method shares.

RepDistiller trains every student on gamma * CE + alpha * KL_T(student, teacher)
+ beta * method loss. `KDDistiller` implements the first two terms and the common
step; the other methods subclass it and only add their own term (`method_loss`),
their extra modules and, for AB / FT / FSP, an init stage (`run_init_stage`).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from util.errors import UsageError, check_stage_loss

from .base import Distiller


class DistillKL(nn.Module):
    """KL(p_t || p_s) on temperature-softened logits, scaled by T^2, averaged over the batch."""

    def __init__(self, T):
        super().__init__()
        self.T = T

    def forward(self, y_s, y_t):
        log_p_s = F.log_softmax(y_s / self.T, dim=1)
        p_t = F.softmax(y_t / self.T, dim=1)
        # T^2 keeps the gradient scale independent of the temperature (Hinton et al.)
        return F.kl_div(log_p_s, p_t, reduction="sum") * (self.T ** 2) / y_s.shape[0]


class KDDistiller(Distiller):
    """gamma * CE + alpha * KL_T; subclasses add beta * `method_loss(feats_s, feats_t)`.

    The teacher and the intermediate features are only computed when a term with a
    non-zero weight needs them, so e.g. kd with alpha=0 costs one student forward.
    """
    name = "kd"
    display_name = "KD"
    table_order = 10
    # RepDistiller README: -r 0.1 -a 0.9 -b 0
    default_weights = {"gamma": 0.1, "alpha": 0.9, "beta": 0.0}
    # Whether the main stage has a feature term (AB and FSP only distil in their init stage).
    has_method_loss = False
    # Features taken before the block's final ReLU (AB only).
    preact = False

    def __init__(self, student, teacher, opt):
        if teacher is None:
            raise ValueError(f"method '{self.name}' distils from a teacher: pass one")
        if opt is None:
            raise ValueError(f"method '{self.name}' reads kd_T and its settings from opt: pass the options")
        super().__init__(student, teacher, opt)
        self.criterion_div = DistillKL(opt.kd_T)

    @classmethod
    def add_arguments(cls, parser):
        """RepDistiller's flags shared by every method built on this class."""
        g = parser.add_argument_group("KD and the RepDistiller methods")
        g.add_argument("--kd_T", type=float, default=4, help="KD temperature")
        g.add_argument("--init_epochs", type=int, default=30, help="pre-training epochs (abound, factor, fsp)")
        g.add_argument("--init_lr", type=float, default=None,
                       help="pre-training learning rate (abound, factor, fsp); default RepDistiller's: "
                            "0.01 for factor with the CIFAR ResNets/WRNs, else --learning_rate")

    @classmethod
    def finalize_options(cls, opt):
        super().finalize_options(opt)
        if opt.init_epochs < 0:
            raise UsageError(f"--init_epochs must be 0 or more, got {opt.init_epochs}")
        if opt.init_lr is not None and not opt.init_lr > 0:
            raise UsageError(f"--init_lr must be positive, got {opt.init_lr}")

    def loss_terms(self):
        terms = {"cls": f"{self.gamma:g}*CE"}
        if self.alpha != 0:
            terms["div"] = f"{self.alpha:g}*KL(T={self.criterion_div.T:g})"
        if self.has_method_loss and self.beta != 0:
            terms["kd"] = f"{self.beta:g}*{self.title()}"
        return terms

    def method_loss(self, feats_s, feats_t):
        """The method's own (unweighted) loss on student / teacher features."""
        raise NotImplementedError

    def forward_train(self, batch):
        images = batch.images
        use_features = self.has_method_loss and self.beta != 0
        feats_s = feats_t = logits_t = None
        if use_features:
            feats_s, logits_s = self.student(images, is_feat=True, preact=self.preact)
            feats_t, logits_t = self.teacher_forward(images, is_feat=True, preact=self.preact)
        else:
            logits_s = self.student(images)
            if self.alpha != 0:
                logits_t = self.teacher_forward(images)
        terms = {"cls": self.gamma * F.cross_entropy(logits_s, batch.labels)}
        if self.alpha != 0:
            terms["div"] = self.alpha * self.criterion_div(logits_s, logits_t)
        if use_features:
            terms["kd"] = self.beta * self.method_loss(feats_s, feats_t)
        return logits_s, terms

    def run_init_stage(self, modules, step_loss, loader, opt, device, log, lr=None):
        """RepDistiller's `helper/pretrain.init`: train `modules` alone on `step_loss(images)`.

        The student and teacher stay in eval mode except for the modules listed (which
        are switched to train mode), for `opt.init_epochs` epochs of SGD with the main
        run's momentum and weight decay, at `--init_lr` when given, else `lr` (the
        method's RepDistiller rate), else `opt.learning_rate`. Modules
        frozen for the main stage are unfrozen here and frozen again afterwards.
        The average loss is logged once per epoch (the only host sync).
        """
        was_training = self.training
        modules = nn.ModuleList(modules)
        params = list(modules.parameters())
        frozen = [p for p in params if not p.requires_grad]
        for p in frozen:
            p.requires_grad_(True)
        self.eval()
        modules.train()
        given = getattr(opt, "init_lr", None)
        lr = given if given is not None else (opt.learning_rate if lr is None else lr)
        optimizer = torch.optim.SGD(params, lr=lr, momentum=opt.momentum, weight_decay=opt.weight_decay)
        try:
            for epoch in range(1, opt.init_epochs + 1):
                loss_sum = torch.zeros((), device=device)
                seen = 0
                for batch in loader:
                    images = batch.images.to(device, non_blocking=True)
                    loss = step_loss(images)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    loss_sum += loss.detach() * images.shape[0]
                    seen += images.shape[0]
                average = loss_sum.item() / max(seen, 1)
                log(f"{self.name} init epoch [{epoch}/{opt.init_epochs}] loss {average:.4f}")
                check_stage_loss(average, f"the {self.name} pre-training stage (lr {lr:g})", epoch,
                                 hint="try a lower --init_lr")
        finally:
            optimizer.zero_grad(set_to_none=True)
            for p in frozen:
                p.requires_grad_(False)
            self.train(was_training)
