"""PACKD: Positive pair Aware Contrastive Knowledge Distillation (Yu et al., ACM MM 2022).

Faithful to the authors' code (smuelpeng/PACKD, folder `code/`): the loss, memory, Sinkhorn
plan and teacher head live in the `packd` package; this file is the method: the loss
weights, the views it asks for, the head training stage, the forward-only first epoch, the
memory-momentum schedule, and its flags (`train_student.py`, `scripts/run_distill.sh`).

Each sample comes with V views (view 0 the plain augmentation, the others mixed with
same-class partners, see `dataset/views.py`). The student's views and the teacher's
views of a sample form a set of positive pairs weighted by an entropic optimal
transport plan; the negatives are the teacher embeddings stored in a memory bank.

With `--dataset imagenet` the method takes the authors' ImageNet form
(`code/train_student_imagenet.py`, `packd/imagenet.py`): no teacher head and no head
training, no forward-only epoch, the teacher's pooled feature L2-normalised, a queue of
recent teacher embeddings as the memory, KL over all views, and their ImageNet views
(`dataset/imagenet.py`: one mixed view, lambda = 0.1 + 0.9 U(0, 1)).
"""
import argparse
import os
import weakref

import torch
import torch.nn.functional as F

from packd.head import (DEFAULT_HEAD_CACHE_DIR, PROJ_SCALE, TeacherProjection, head_cache_key,  # noqa: F401
                        head_cache_lock, head_cache_path, load_cached_head, save_cached_head)
from packd.imagenet import PACKDImageNetLoss, default_queue_size
from packd.loss import Embed, PACKDLoss, PACKDMemory  # noqa: F401
from packd.sinkhorn import SINKHORN_CHECKS, SINKHORN_MAX_ITER, sinkhorn_plan  # noqa: F401
from util import dist
from util.errors import UsageError, check_stage_loss
from util.fingerprint import state_fingerprint

from .base import CONTRAST_INDEX, INDEX, VIEWS, Distiller, feature_shapes
from .KD import DistillKL

# --kl_views: how the KL term covers the views (see `PACKDDistiller`).
KL_VIEWS = ("split", "joint")
IMAGENET = "imagenet"


def _opt(opt, name, default):
    value = getattr(opt, name, None) if opt is not None else None
    return default if value is None else value


# The authors' ImageNet script: its --mixup_num default 1 (not passed by train_student_imagenet.sh),
# lambda = 0.1 + 0.9 * U(0, 1) hard-coded in ImageNetPACKDDataset, KL over all B*V rows. Flags the
# user leaves out take these with --dataset imagenet; the argparse defaults are CIFAR-100's.
IMAGENET_DEFAULTS = {"mixup_num": 1, "mixup_ratio": 0.1, "kl_views": "joint"}
# id(namespace) -> the flags of IMAGENET_DEFAULTS given on its command line (see `_Given`)
_GIVEN = {}


class _Given(argparse.Action):
    """argparse's "store", remembering that the flag was given, so that a default that depends
    on --dataset is filled in `finalize_options` while the namespace holds only plain values (it
    is recorded in run.json, the run's identity and checkpoints loaded with weights_only)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        key = id(namespace)
        if key not in _GIVEN:
            _GIVEN[key] = set()
            try:  # forget it with the namespace (ids are reused)
                weakref.finalize(namespace, _GIVEN.pop, key, None)
            except TypeError:  # a namespace without weak references: kept (a few bytes)
                pass
        _GIVEN[key].add(self.dest)


def flag_given(opt, name):
    """Whether `--name` was on the command line that made `opt` (argparse's namespace)."""
    return name in _GIVEN.get(id(opt), ())


def is_imagenet(opt):
    return getattr(opt, "dataset", None) == IMAGENET


def resolve_dataset_defaults(opt):
    """In place, with --dataset imagenet: each of --mixup_num, --mixup_ratio, --kl_views that was
    not given takes the authors' ImageNet value (1, 0.1, joint) instead of CIFAR-100's (3, 0.0,
    split). Returns `opt`."""
    if is_imagenet(opt):
        for name, value in IMAGENET_DEFAULTS.items():
            if not flag_given(opt, name):
                setattr(opt, name, value)
    return opt


class PACKDDistiller(Distiller):
    """gamma * CE(all views) + alpha * KL_T(view 0) + alpha_aug * KL_T(mixed views) + beta * PACKD.

    As in the authors' `code/train_student.py`: CE over the student logits of all B*V
    views (label repeated per view); KL (RepDistiller's DistillKL: sum / rows) between
    student and teacher logits on view 0, and separately on the mixed views; the PACKD
    term on the student's pooled feature and the teacher head's projection.
    `--kl_views joint` instead takes alpha * KL over all views together (the authors' root
    script with -r > 10 and their ImageNet script: view 0 weighs 1/V, the mixed views
    (V-1)/V); nothing in their repository says which one produced the paper's table.
    The memory update uses momentum 0 during the first epoch (the memory is filled once;
    the authors hard-code 782 = ceil(50000 / 64) steps), then nce_m: a schedule on
    `self.epoch`, so a resumed run gets it right without a counter.
    Terms: "cls", "div", "div_aug" (split only), "kd". Returns the student logits of view 0.

    With `--dataset imagenet`, the authors' ImageNet form (`code/train_student_imagenet.py`):
    gamma * CE(all views) + alpha * KL_T(all views) + beta * PACKD, where PACKD is
    `packd.imagenet.PACKDImageNetLoss` on the student's and the teacher's pooled features
    (no teacher head, so no head training; no forward-only epoch; a queue as the memory).
    Terms "cls", "div", "kd" (and "div_aug" with --kl_views split).
    """
    name = "packd"
    display_name = "PACKD"
    table_order = 200
    aliases = ("PACKDCONLoss",)
    needs = frozenset({INDEX, CONTRAST_INDEX, VIEWS})
    # run_distill.sh: -a 1 --alpha_aug 1 -b 0.8 (no CE weight in their code: gamma 1)
    default_weights = {"gamma": 1.0, "alpha": 1.0, "beta": 0.8}
    default_alpha_aug = 1.0
    sweep_args = ("--alpha_aug", "1", "--mixup_num", "3")
    forward_only_first_epoch = True
    speed_flags = ("head_cache_dir",)

    def __init__(self, student, teacher, opt):
        if teacher is None or opt is None:
            raise ValueError("method 'packd' needs a teacher and the options (opt)")
        super().__init__(student, teacher, opt)
        device = next(student.parameters()).device
        s_dim = feature_shapes(student)[-1][1]
        t_dim = feature_shapes(teacher)[-1][1]
        self.imagenet = is_imagenet(opt)
        if self.imagenet:
            self._init_imagenet(s_dim, t_dim, opt, device)
            return
        feat_dim = int(_opt(opt, "feat_dim", 128))
        n_data = _opt(opt, "n_data", None)
        if n_data is None:
            raise ValueError("method 'packd' needs opt.n_data, the training-set size")
        self.alpha_aug = float(_opt(opt, "alpha_aug", self.default_alpha_aug))
        self.kl_views = str(_opt(opt, "kl_views", "split"))
        self.teacher_name = str(_opt(opt, "model_t", "teacher"))
        self.head_cache_dir = str(_opt(opt, "head_cache_dir", DEFAULT_HEAD_CACHE_DIR))
        if _opt(opt, "packd_skip_warmup", False):
            self.forward_only_first_epoch = False
        self.teacher_head = TeacherProjection(t_dim, feat_dim, int(_opt(opt, "num_classes", 100))).to(device)
        self.teacher_head.requires_grad_(False)  # trained in `pretrain`, frozen while distilling
        self.criterion = PACKDLoss(
            s_dim, feat_dim, feat_dim, n_data=n_data, nce_k=int(_opt(opt, "nce_k", 16384)),
            nce_m=float(_opt(opt, "nce_m", 0.5)), ops_eps=float(_opt(opt, "ops_eps", 0.1)),
            ops_err_thres=float(_opt(opt, "ops_err_thres", 0.1)), temperature=float(_opt(opt, "nce_t", 0.07)),
            exclude_anchor=bool(_opt(opt, "packd_exclude_anchor", False))).to(device)
        self.criterion_div = DistillKL(float(_opt(opt, "kd_T", 4)))
        self.head_key = head_cache_key(_opt(opt, "teacher_weights", None) or state_fingerprint(teacher), opt,
                                       self.teacher_bf16)

    @classmethod
    def needs_for(cls, opt):
        """On ImageNet the queue memory needs no dataset positions and draws its own negatives."""
        return frozenset({VIEWS}) if is_imagenet(opt) else cls.needs

    def _init_imagenet(self, s_dim, t_dim, opt, device):
        """The authors' ImageNet form: no head, no forward-only epoch, the queue memory."""
        self.forward_only_first_epoch = False
        self.alpha_aug = float(_opt(opt, "alpha_aug", self.default_alpha_aug))
        self.kl_views = str(opt.kl_views)
        self.num_views = 1 + int(opt.mixup_num)
        batch_size = int(_opt(opt, "batch_size", 256))
        self.queue_size = int(_opt(opt, "packd_queue", default_queue_size(batch_size, self.num_views)))
        seed = int(_opt(opt, "seed", 0))
        if dist.world_size() > 1:  # each rank draws its own rows' negatives
            from dataset.loader import rank_seed
            seed = rank_seed(seed, dist.rank())
        self.criterion = PACKDImageNetLoss(
            s_dim, t_dim, self.queue_size, nce_k=int(_opt(opt, "nce_k", 16384)),
            ops_eps=float(_opt(opt, "ops_eps", 0.1)), ops_err_thres=float(_opt(opt, "ops_err_thres", 0.1)),
            temperature=float(_opt(opt, "nce_t", 0.07)), seed=seed).to(device)
        self.criterion_div = DistillKL(float(_opt(opt, "kd_T", 3)))

    # -- description ------------------------------------------------------------------
    @classmethod
    def add_arguments(cls, parser):
        add_packd_arguments(parser)

    @classmethod
    def finalize_options(cls, opt):
        super().finalize_options(opt)
        from .KD import default_temperature, fill_unset
        if getattr(opt, "logit_stand", False):
            raise UsageError("--logit_stand standardises the logits of a logit method (kd, dkd, dist); packd is "
                             "not one: drop --logit_stand")
        fill_unset(opt, {"kd_T": default_temperature(opt)})
        resolve_dataset_defaults(opt)
        if opt.mixup_num < -1:
            raise UsageError(f"--mixup_num must be -1 or more, got {opt.mixup_num}")
        if opt.nce_k <= 0:
            raise UsageError(f"--nce_k must be positive, got {opt.nce_k}")
        if opt.alpha_aug is None:
            opt.alpha_aug = cls.default_alpha_aug
        if is_imagenet(opt):
            cls._check_imagenet_options(opt)
        elif getattr(opt, "packd_queue", None) is not None:
            raise UsageError("--packd_queue sizes PACKD's ImageNet queue; on CIFAR-100 the memory holds one row per "
                             "training sample: drop it")

    @staticmethod
    def _check_imagenet_options(opt):
        """The settings the authors' ImageNet form has no place for: one line each."""
        if opt.mixup_num < 0:
            raise UsageError(f"--mixup_num must be 0 or more with --dataset imagenet (the authors' ImageNet views "
                             f"always keep the plain view first), got {opt.mixup_num}")
        if opt.few_ratio != 1.0:
            raise UsageError("--few-ratio is for CIFAR-100 (the authors' few-shot runs); the ImageNet data path "
                             "keeps every image: drop it")
        if opt.packd_exclude_anchor:
            raise UsageError("--packd_exclude_anchor has no effect with --dataset imagenet: the negatives are queue "
                             "entries of other classes, never the anchor: drop it")
        if opt.packd_skip_warmup:
            raise UsageError("--packd_skip_warmup has no effect with --dataset imagenet: the authors' ImageNet form "
                             "has no forward-only epoch: drop it")
        if opt.packd_queue is not None and opt.packd_queue <= 0:
            raise UsageError(f"--packd_queue must be a positive number of rows, got {opt.packd_queue}")

    @classmethod
    def folder_tags(cls, opt):
        """The authors' `ag:` (alpha_aug), the number of mixed views, and each variant that is on.

        ImageNet (the folder names the data set): `mix:`, then `kl:split ag:` when the KL is split
        over the views, `q:<rows>` when --packd_queue is given."""
        if is_imagenet(opt):
            tags = [f"mix:{opt.mixup_num}"]
            if opt.kl_views != IMAGENET_DEFAULTS["kl_views"]:
                tags += [f"kl:{opt.kl_views}", f"ag:{opt.alpha_aug}"]
            if getattr(opt, "packd_queue", None) is not None:
                tags.append(f"q:{opt.packd_queue}")
            return tags
        tags = [f"ag:{opt.alpha_aug}", f"mix:{opt.mixup_num}"]
        if opt.few_ratio != 1.0:
            tags.append(f"fr:{opt.few_ratio}")
        if opt.kl_views != "split":
            tags.append(f"kl:{opt.kl_views}")
        if opt.packd_exclude_anchor:
            tags.append("xa")
        if opt.packd_skip_warmup:
            tags.append("nowarm")
        return tags

    def loss_terms(self):
        t = f"T={self.criterion_div.T:g}"
        terms = {"cls": f"{self.gamma:g}*CE(all views)"}
        if self.kl_views == "joint":
            terms["div"] = f"{self.alpha:g}*KL({t}, all views)"
        else:
            terms["div"] = f"{self.alpha:g}*KL({t}, view 0)"
            terms["div_aug"] = f"{self.alpha_aug:g}*KL({t}, mixed views)"
        if self.imagenet:
            terms["kd"] = (f"{self.beta:g}*PACKD(queue of {self.queue_size} teacher embeddings, "
                           f"{self.criterion.nce_k} other-class negatives per view)")
        else:
            terms["kd"] = f"{self.beta:g}*PACKD"
        return terms

    # -- schedule and steps ---------------------------------------------------------------
    def memory_momentum(self):
        """0 while the memory is filled for the first time (epoch 1), then nce_m."""
        return 0.0 if self.epoch <= 1 else self.criterion.nce_m

    @torch.no_grad()
    def teacher_outputs(self, images):
        """(teacher logits, head projection) for the flattened views, frozen; at ImageNet the
        teacher's pooled feature in place of the projection (there is no head)."""
        feats, logits = self.teacher_forward(images, is_feat=True)
        if self.imagenet:
            return logits, feats[-1].detach()
        proj, _ = self.teacher_head(feats[-1])
        return logits, proj.detach()

    def forward_train(self, batch):
        views = batch.views
        if views is None or views.dim() != 5:
            raise ValueError("method 'packd' needs batch.views (B, V, 3, H, W); build batches with a MultiViewBuilder")
        b, v = views.shape[:2]
        images = views.reshape(b * v, *views.shape[2:])
        feats_s, logits_s = self.student(images, is_feat=True)
        logits_t, proj_t = self.teacher_outputs(images)
        zero = logits_s.new_zeros(())
        labels = batch.labels.repeat_interleave(v)
        terms = {"cls": self.gamma * F.cross_entropy(logits_s, labels)}
        per_view_s = logits_s.view(b, v, -1)
        per_view_t = logits_t.view(b, v, -1)
        if self.kl_views == "joint":
            terms["div"] = self.alpha * self.criterion_div(logits_s, logits_t) if self.alpha > 0 else zero
        else:
            terms["div"] = (self.alpha * self.criterion_div(per_view_s[:, 0], per_view_t[:, 0])
                            if self.alpha > 0 else zero)
            if self.alpha_aug > 0 and v > 1:
                classes = per_view_s.shape[-1]
                terms["div_aug"] = self.alpha_aug * self.criterion_div(
                    per_view_s[:, 1:].reshape(-1, classes), per_view_t[:, 1:].reshape(-1, classes))
            else:
                terms["div_aug"] = zero  # no mixed views (mixup_num 0 / -1): the authors' KL would be 0/0
        if self.beta != 0 and self.imagenet:
            terms["kd"] = self.beta * self.criterion(feats_s[-1], proj_t, batch.labels)
        elif self.beta != 0:
            loss = self.criterion(feats_s[-1], proj_t, batch.index, batch.contrast_index, self.memory_momentum())
            terms["kd"] = self.beta * loss
        else:
            terms["kd"] = zero
        return per_view_s[:, 0], terms

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints before the epoch schedule counted memory updates in a buffer.
        state_dict.pop(prefix + "step_count", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- teacher head --------------------------------------------------------------
    def head_state(self):
        """The cache layout of the authors' wrapper: backbone.*, proj_head.*, classifier.*."""
        state = {f"backbone.{k}": t for k, t in self.teacher.state_dict().items()}
        state.update(self.teacher_head.state_dict())
        return {k: t.detach().cpu() for k, t in state.items()}

    def load_head_state(self, state, path):
        head_keys = set(self.teacher_head.state_dict())
        missing = head_keys - set(state)
        if missing:
            raise UsageError(f"PACKD head cache '{path}' lacks {sorted(missing)[:3]}; delete it to retrain the head")
        backbone = {k[len("backbone."):]: t for k, t in state.items() if k.startswith("backbone.")}
        mine = self.teacher.state_dict()
        if set(backbone) != set(mine) or any(not torch.equal(t.cpu(), backbone[k]) for k, t in mine.items()):
            raise UsageError(f"PACKD head cache '{path}' was trained on another teacher; delete it or pass "
                             f"another --head_cache_dir")
        self.teacher_head.load_state_dict({k: state[k] for k in head_keys})

    def head_cache_file(self, cache_dir=None):
        return head_cache_path(cache_dir or self.head_cache_dir, self.teacher_name, self.head_key)

    def pretrain(self, loader, opt, device, log=print):
        """Train the teacher projection head (or load it from the cache), before distilling.

        As the authors: t_epoch epochs of SGD (t_lr, t_momentum, t_weight_decay) on the
        cross-entropy of the head's classifier over every view of the multi-view batches,
        the teacher backbone in eval mode without gradients. Their MultiStepLR (milestones
        30, 45) is created but never stepped, so the rate stays t_lr: kept constant here.
        The cache file is keyed by everything that shapes the head (`head_cache_key`), so
        another setting trains and caches its own head; runs sharing one take turns
        (`head_cache_lock`), so it is trained once.
        """
        if self.imagenet:
            return None  # the authors' ImageNet form has no teacher head to train
        path = self.head_cache_file(_opt(opt, "head_cache_dir", None))
        with head_cache_lock(path, log):
            return self._load_or_train_head(path, loader, opt, device, log)

    def _load_or_train_head(self, path, loader, opt, device, log):
        if os.path.isfile(path):
            self.load_head_state(load_cached_head(path, self.head_key), path)
            log(f"packd: loaded the teacher projection head from {path}")
            return path
        t_epoch = int(_opt(opt, "t_epoch", 60))
        head = self.teacher_head
        head.requires_grad_(True)
        optimizer = torch.optim.SGD(head.parameters(), lr=float(_opt(opt, "t_lr", 0.05)),
                                    momentum=float(_opt(opt, "t_momentum", 0.9)),
                                    weight_decay=float(_opt(opt, "t_weight_decay", 5e-4)))
        was_training = self.training
        self.eval()
        try:
            for epoch in range(1, t_epoch + 1):
                loss_sum = torch.zeros((), device=device)
                correct = torch.zeros((), device=device)
                seen = 0
                for batch in loader:
                    batch = batch.to(device, non_blocking=True)
                    views = batch.views if batch.views is not None else batch.images.unsqueeze(1)
                    b, v = views.shape[:2]
                    feats, _ = self.teacher_forward(views.reshape(b * v, *views.shape[2:]), is_feat=True)
                    _, logits = head(feats[-1])
                    labels = batch.labels.repeat_interleave(v)
                    loss = F.cross_entropy(logits, labels)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    loss_sum += loss.detach() * labels.shape[0]
                    correct += (logits.detach().argmax(1) == labels).sum()
                    seen += labels.shape[0]
                stats = (torch.stack([loss_sum, correct]) / max(seen, 1)).tolist()
                log(f"packd head epoch [{epoch}/{t_epoch}] loss {stats[0]:.4f} acc {100 * stats[1]:.2f}")
                check_stage_loss(stats[0], "packd's teacher-head training (nothing cached)", epoch,
                                 hint="try a lower --t-lr")
        finally:
            optimizer.zero_grad(set_to_none=True)
            head.requires_grad_(False)
            self.train(was_training)
        save_cached_head(self.head_state(), t_epoch, self.head_key, path)
        log(f"packd: saved the teacher projection head to {path}")
        return path


# ----------------------------------------------------------------------------------
# Flags
# ----------------------------------------------------------------------------------
def add_packd_arguments(parser):
    """PACKD's flags, defaults from the authors' train_student.py / run_distill.sh.

    Where the authors used dashes (--t-epoch, --t-lr, --t_weight-decay, --few-ratio)
    both spellings are accepted.
    """
    g = parser.add_argument_group("PACKD")
    # argparse default 0; every run script (run_distill.sh, run_few_shot.sh) passes 3
    g.add_argument("--mixup_num", type=int, default=3, action=_Given,
                   help="mixed positive views per sample (0: plain view only, -1: one mixed view only); "
                        "default 3, 1 with --dataset imagenet (the authors' ImageNet script)")
    g.add_argument("--mixup_ratio", type=float, default=0.0, action=_Given,
                   help="lambda = ratio + (1 - ratio) * U(0, 1); default 0, 0.1 with --dataset imagenet")
    g.add_argument("--mixup_rotate", type=int, default=3,
                   help=">0: rotate partners by k*90 degrees, k ~ U{0..3}; < -1: lambda = 0 (partner only)")
    # argparse default 0; the run scripts pass 1 (None -> the method default, 1)
    g.add_argument("--alpha_aug", type=float, default=None, help="weight of KL on the mixed views (default 1)")
    g.add_argument("--ops_eps", type=float, default=0.1, help="Sinkhorn entropic regularisation")
    g.add_argument("--ops_err_thres", type=float, default=0.1, help="Sinkhorn stopping threshold")
    g.add_argument("--t-epoch", "--t_epoch", dest="t_epoch", type=int, default=60,
                   help="epochs to train the teacher projection head")
    g.add_argument("--t-lr", "--t_lr", dest="t_lr", type=float, default=0.05, help="head learning rate (constant)")
    g.add_argument("--t_momentum", type=float, default=0.9, help="head SGD momentum")
    g.add_argument("--t_weight-decay", "--t_weight_decay", dest="t_weight_decay", type=float, default=5e-4,
                   help="head SGD weight decay")
    g.add_argument("--few-ratio", "--few_ratio", dest="few_ratio", type=_few_ratio, default=1.0,
                   help="fraction of the training set kept per class (few-shot runs)")
    g.add_argument("--packd_exclude_anchor", action="store_true",
                   help="variant: drop the anchor's own memory row (column 0) from the negatives")
    g.add_argument("--kl_views", choices=KL_VIEWS, default="split", action=_Given,
                   help="split (default on CIFAR-100): alpha*KL(view 0) + alpha_aug*KL(mixed views), as the authors' "
                        "code/train_student.py; joint (default with --dataset imagenet): alpha*KL over all views "
                        "together, as their root script with -r > 10 and their ImageNet script")
    g.add_argument("--packd_queue", type=int, default=None,
                   help="--dataset imagenet: rows of the queue of teacher embeddings the negatives come from "
                        "(default as the authors: 50000 // (batch * views) batches)")
    g.add_argument("--packd_skip_warmup", action="store_true",
                   help="variant: no forward-only first epoch (momentum is still 0 for one epoch)")
    g.add_argument("--head_cache_dir", type=str, default=DEFAULT_HEAD_CACHE_DIR,
                   help="folder of the cached teacher projection heads (<model_t>_embed.pth)")
    g = parser.add_argument_group("PACKD authors' flags accepted without effect (as in their code)")
    # run_distill.sh passes `--pos_k ${pos_k}` with pos_k never set: a bare --pos_k is accepted
    g.add_argument("--pos_k", type=int, nargs="?", const=-1, default=None, help=PACKDDistiller.no_effect_flags["pos_k"])
    g.add_argument("--ncls", type=_hundred_classes, default=None, help="class count: 100 (CIFAR-100) only")
    g.add_argument("--loader_type", type=str, default=None, help=PACKDDistiller.no_effect_flags["loader_type"])
    g.add_argument("--pr_w", type=float, default=None, help=PACKDDistiller.no_effect_flags["pr_w"])
    g.add_argument("--loss_margin", type=float, default=None, help=PACKDDistiller.no_effect_flags["loss_margin"])
    g.add_argument("--t_gamma", type=float, default=None, help=PACKDDistiller.no_effect_flags["t_gamma"])
    g.add_argument("--t-milestones", "--t_milestones", dest="t_milestones", type=int, nargs="+", default=None,
                   help=PACKDDistiller.no_effect_flags["t_milestones"])
    g.add_argument("--t_save_folder", type=str, default=None, help=PACKDDistiller.no_effect_flags["t_save_folder"])
    return parser


# Flags of the authors' train_student.py that change nothing there either; accepted so their
# commands run unchanged, and named in a start-up note when given.
PACKDDistiller.no_effect_flags = {
    "pos_k": "their loader draws pos_k same-class samples that their loss never reads",
    "loader_type": "packd always builds its multi-view batches",
    "pr_w": "unused by their loss",
    "loss_margin": "unused by their loss",
    "t_gamma": "their head's MultiStepLR is never stepped: the head rate stays --t-lr",
    "t_milestones": "their head's MultiStepLR is never stepped: the head rate stays --t-lr",
    "t_save_folder": "unused by their code (the head cache is --head_cache_dir here)",
}


def _hundred_classes(text):
    value = int(text)
    if value != 100:
        raise argparse.ArgumentTypeError(f"only CIFAR-100 is supported (100 classes), got --ncls {text}")
    return value


def _few_ratio(text):
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"--few-ratio must lie in (0, 1], got {text}")
    return value
