"""PACKD: Positive pair Aware Contrastive Knowledge Distillation (Yu et al., ACM MM 2022).

Faithful to the authors' code (smuelpeng/PACKD, folder `code/`): `packd/packd.py`
(PACKDConLoss, ContrastNCELoss), `packd/memory.py` (SimpleMemory), `packd/layers.py`
(SinkhornDistance), `models/wrapper.py` (teacher projection head) and
`train_student.py` (head training, loss weights, forward-only first epoch).

Each sample comes with V views (view 0 the plain augmentation, the others mixed with
same-class partners, see `dataset/views.py`). The student's views and the teacher's
views of a sample form a set of positive pairs weighted by an entropic optimal
transport plan; the negatives are the teacher embeddings stored in a memory bank.
"""
import argparse
import contextlib
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from helper.errors import check_stage_loss

from ._base import CONTRAST_INDEX, INDEX, VIEWS, Distiller, feature_shapes
from .KD import DistillKL

# The authors' projection multiplies the unit-norm teacher projection by 16 before the
# classifier (models/wrapper.py): a fixed logit scale for the cosine-style classifier.
PROJ_SCALE = 16.0
# The authors run at most 100 Sinkhorn iterations (SinkhornDistance(opt.ops_eps, 100)).
SINKHORN_MAX_ITER = 100
# Added to the uniform marginals before the log, as in the authors' SinkhornDistance.
MARGINAL_EPS = 1e-8
# Iteration counts after which the host reads the convergence flag, by default. On PACKD
# training the plan converged after 2 iterations in 159 of 160 steps (3 in the other), so a
# doubling schedule costs one read and no wasted iteration in the usual case, and at most
# 6 reads; a fixed period of 10 would run 8 frozen iterations (~50 kernels) every step.
SINKHORN_CHECKS = (2, 4, 8, 16, 32, 64)
DEFAULT_HEAD_CACHE_DIR = "save_packd_t"


# ----------------------------------------------------------------------------------
# Sinkhorn
# ----------------------------------------------------------------------------------
@torch.no_grad()
def sinkhorn_plan(x, y, eps, err_thres, max_iter=SINKHORN_MAX_ITER, check_every=None, return_iterations=False):
    """Entropic OT plan between point sets x (B, P, D) and y (B, Q, D), uniform marginals.

    Log-domain Sinkhorn on the squared-L2 cost, as the authors' SinkhornDistance. Their
    stopping rule is per *batch*: stop after the first iteration where the L1 change of
    u, summed over points and averaged over the B problems, is below `err_thres`. Here
    the iterations run on the device with a batch-level `done` flag that freezes (u, v)
    once reached, so the result is the same as breaking out of the loop; the host only
    looks at the flag after SINKHORN_CHECKS iterations (check_every=None), or every
    `check_every` iterations (0: never, always `max_iter`).
    """
    cost = (x.unsqueeze(-2) - y.unsqueeze(-3)).abs().pow(2).sum(-1)  # (B, P, Q)
    batch, p, q = cost.shape
    log_mu = torch.log(torch.full((1, p), 1.0 / p, dtype=cost.dtype, device=cost.device) + MARGINAL_EPS)
    log_nu = torch.log(torch.full((1, q), 1.0 / q, dtype=cost.dtype, device=cost.device) + MARGINAL_EPS)
    u = cost.new_zeros(batch, p)
    v = cost.new_zeros(batch, q)

    def kernel(u, v):  # M_ij = (-C_ij + u_i + v_j) / eps
        return (-cost + u.unsqueeze(-1) + v.unsqueeze(-2)) / eps

    if check_every is None:
        checks = frozenset(SINKHORN_CHECKS)
    else:
        checks = frozenset(range(check_every, max_iter, check_every)) if check_every else frozenset()
    done = torch.zeros((), dtype=torch.bool, device=cost.device)
    iterations = torch.zeros((), dtype=torch.long, device=cost.device)
    for it in range(max_iter):
        u_next = eps * (log_mu - torch.logsumexp(kernel(u, v), dim=-1)) + u
        v_next = eps * (log_nu - torch.logsumexp(kernel(u_next, v).transpose(-2, -1), dim=-1)) + v
        err = (u_next - u).abs().sum(-1).mean()
        iterations += (~done).long()
        u = torch.where(done, u, u_next)
        v = torch.where(done, v, v_next)
        done = done | (err < err_thres)
        if (it + 1) in checks and it + 1 < max_iter and bool(done):
            break
    plan = torch.exp(kernel(u, v))
    return (plan, iterations) if return_iterations else plan


# ----------------------------------------------------------------------------------
# Loss term
# ----------------------------------------------------------------------------------
class Embed(nn.Module):
    """Optional linear map then L2 normalisation (the authors' `Embed`, minus its unused `fc`)."""

    def __init__(self, dim_in, dim_out, use_linear=True):
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out) if use_linear else None

    def forward(self, x):
        x = x.flatten(1)
        if self.linear is not None:
            x = self.linear(x)
        return F.normalize(x, dim=1)


class PACKDMemory(nn.Module):
    """One L2-normalised teacher embedding per training sample (the authors' SimpleMemory)."""

    def __init__(self, n_data, feat_dim):
        super().__init__()
        # Uniform in [-stdv, stdv], stdv = 1/sqrt(feat_dim/3), rows then normalised.
        stdv = 1.0 / math.sqrt(feat_dim / 3)
        bank = torch.rand(n_data, feat_dim).mul_(2 * stdv).sub_(stdv)
        self.register_buffer("memory_bank", F.normalize(bank, dim=1))

    @torch.no_grad()
    def update(self, feats, idx, momentum):
        """m[idx] <- normalise(momentum * m[idx] + (1 - momentum) * feats)."""
        rows = self.memory_bank.index_select(0, idx)
        rows = rows * momentum + feats.to(rows.dtype) * (1 - momentum)
        self.memory_bank.index_copy_(0, idx, F.normalize(rows, dim=1))

    def scores(self, anchors, contrast_idx, mode="auto"):
        """<anchors[b, v], m[contrast_idx[b, k]]> as (B, V, K) for anchors (B, V, d).

        "bank": one matmul against the whole bank then a gather; "gather": one row
        gather per sample (B x K x d) shared by its V views, then bmm. "auto" picks the
        one that materialises fewer values (V * n_data vs K * d per sample); on CIFAR-100
        with 16384 negatives that is the matmul, which also moves far less memory.
        """
        batch, views, dim = anchors.shape
        width = contrast_idx.shape[1]
        bank = self.memory_bank.detach()
        if mode == "auto":
            mode = "bank" if views * bank.shape[0] <= width * dim else "gather"
        if mode == "bank":
            dots = (anchors.reshape(batch * views, dim) @ bank.t()).view(batch, views, -1)
            return dots.gather(2, contrast_idx.unsqueeze(1).expand(batch, views, width))
        if mode == "gather":
            rows = bank.index_select(0, contrast_idx.reshape(-1)).view(batch, width, dim)
            return torch.bmm(anchors, rows.transpose(1, 2))
        raise ValueError(f"score mode must be 'auto', 'bank' or 'gather', got {mode!r}")


class PACKDLoss(nn.Module):
    """The PACKD contrastive term (the authors' PACKDConLoss + ContrastNCELoss).

    forward(feat_s (B*V, s_dim), feat_t (B*V, t_dim), idx (B,), contrast_idx (B, 1+K),
    momentum=None) -> scalar. Rows are sample-major: row b*V + v is view v of sample b.

    1. Student features -> Linear(s_dim, feat_dim) + L2 norm; teacher projections -> L2
       norm (a linear only when t_dim > feat_dim; the authors shrink feat_dim to t_dim
       when t_dim <= feat_dim, and never train that teacher linear: it stays frozen).
    2. The memory rows at idx are updated with the view-0 teacher embeddings
       (momentum None -> nce_m; 0 replaces the rows) *before* scoring.
    3. Every student view is scored against the memory rows at the sample's contrast
       indices, column 0 included (the anchor's own, freshly updated row stays among
       the negatives, as in the authors' code; `exclude_anchor=True` drops column 0,
       as their earlier, commented-out `narrow(1, 1, nce_k)` did).
    4. Positive: pos_b = sum_ij pi_ij <s_i, t_j> with pi the Sinkhorn plan between the
       sample's student and teacher views (not differentiated).
    5. loss = -mean_b log(e^{pos/T} / (e^{pos/T} + sum over the sample's V x (1+K)
       scores of e^{neg/T})), computed with logsumexp.
    """

    def __init__(self, s_dim, t_dim, feat_dim=128, n_data=None, nce_k=16384, nce_m=0.5, ops_eps=0.1,
                 ops_err_thres=0.1, temperature=0.07, exclude_anchor=False, sinkhorn_check_every=None,
                 score_mode="auto"):
        super().__init__()
        if n_data is None or n_data <= 0:
            raise ValueError(f"PACKDLoss needs n_data, the training-set size (> 0), got {n_data}")
        if nce_k <= 0 or feat_dim <= 0 or temperature <= 0 or ops_eps <= 0:
            raise ValueError("PACKDLoss needs positive nce_k, feat_dim, temperature and ops_eps")
        if score_mode not in ("auto", "bank", "gather"):
            raise ValueError(f"score_mode must be 'auto', 'bank' or 'gather', got {score_mode!r}")
        use_teacher_linear = t_dim > feat_dim
        self.feat_dim = feat_dim if use_teacher_linear else t_dim
        self.n_data, self.nce_k, self.nce_m = int(n_data), int(nce_k), float(nce_m)
        self.ops_eps, self.ops_err_thres = float(ops_eps), float(ops_err_thres)
        self.temperature = float(temperature)
        self.exclude_anchor = bool(exclude_anchor)
        self.sinkhorn_check_every = None if sinkhorn_check_every is None else int(sinkhorn_check_every)
        self.score_mode = score_mode
        self.embed_s = Embed(s_dim, self.feat_dim)
        self.embed_t = Embed(t_dim, self.feat_dim, use_linear=use_teacher_linear)
        self.embed_t.requires_grad_(False)
        self.memory_t = PACKDMemory(self.n_data, self.feat_dim)

    def forward(self, feat_s, feat_t, idx, contrast_idx, momentum=None):
        batch = idx.shape[0]
        rows = feat_s.shape[0]
        if batch == 0 or rows % batch or feat_t.shape[0] != rows:
            raise ValueError(f"PACKDLoss needs B*V rows in feat_s and feat_t for B={batch} indices, got "
                             f"{rows} and {feat_t.shape[0]}")
        if contrast_idx.dim() != 2 or contrast_idx.shape != (batch, self.nce_k + 1):
            raise ValueError(f"contrast_idx must be (B, 1 + nce_k) = ({batch}, {self.nce_k + 1}), got "
                             f"{tuple(contrast_idx.shape)}")
        views = rows // batch
        momentum = self.nce_m if momentum is None else momentum
        # Sinkhorn and exp/log in float32 even under autocast.
        with torch.autocast(device_type=feat_s.device.type, enabled=False):
            embed_s = self.embed_s(feat_s.float()).view(batch, views, -1)
            embed_t = self.embed_t(feat_t.float()).view(batch, views, -1)
            self.memory_t.update(embed_t[:, 0].detach(), idx, momentum)
            negatives = contrast_idx[:, 1:] if self.exclude_anchor else contrast_idx
            neg = self.memory_t.scores(embed_s, negatives, self.score_mode)  # (B, V, K')
            plan = sinkhorn_plan(embed_s.detach(), embed_t.detach(), self.ops_eps, self.ops_err_thres,
                                 check_every=self.sinkhorn_check_every)
            pos = (torch.bmm(embed_s, embed_t.transpose(1, 2)) * plan).sum(dim=(1, 2))  # (B,)
            logits = torch.cat([pos.unsqueeze(1), neg.reshape(batch, -1)], dim=1) / self.temperature
            return (torch.logsumexp(logits, dim=1) - pos / self.temperature).mean()


# ----------------------------------------------------------------------------------
# Teacher projection head
# ----------------------------------------------------------------------------------
class TeacherProjection(nn.Module):
    """The head the authors put on the frozen teacher (models/wrapper.py).

    pooled (N, d) -> proj_head: Linear(d, feat_dim) -> ReLU -> Linear(feat_dim, feat_dim),
    L2-normalised and scaled by 16 -> classifier Linear(feat_dim, num_classes).
    Returns (scaled projection, classifier logits); PACKD distils from the projection.
    """

    def __init__(self, in_dim, feat_dim=128, num_classes=100):
        super().__init__()
        self.proj_head = nn.Sequential(nn.Linear(in_dim, feat_dim), nn.ReLU(inplace=True),
                                       nn.Linear(feat_dim, feat_dim))
        self.classifier = nn.Linear(feat_dim, num_classes)

    def forward(self, pooled):
        proj = F.normalize(self.proj_head(pooled.flatten(1)), dim=1) * PROJ_SCALE
        return proj, self.classifier(proj)


def head_cache_path(cache_dir, teacher_name):
    """Where the trained head is cached: `<cache_dir>/<teacher>_embed.pth` (authors' name)."""
    return os.path.join(cache_dir, f"{teacher_name}_embed.pth")


def _atomic_save(obj, path):
    from helper.checkpoint import atomic_save
    atomic_save(obj, path)


@contextlib.contextmanager
def head_cache_lock(path, log=print):
    """Hold an exclusive lock on `<path>.lock` while the head is looked up or trained.

    Concurrent runs with the same teacher (a sweep with several jobs per GPU) then train
    the head once: the others wait, find the cache, and load it. The lock dies with its
    process. Without POSIX `flock` (Windows) there is no lock: each run may train the
    head, and the atomic write still keeps the cache whole.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"packd: another run is training the teacher head for {path}; waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ----------------------------------------------------------------------------------
# Method
# ----------------------------------------------------------------------------------
def _opt(opt, name, default):
    value = getattr(opt, name, None) if opt is not None else None
    return default if value is None else value


class PACKDDistiller(Distiller):
    """gamma * CE(all views) + alpha * KL_T(view 0) + alpha_aug * KL_T(mixed views) + beta * PACKD.

    As in the authors' train_student.py: CE over the student logits of all B*V views
    (label repeated per view); KL (RepDistiller's DistillKL: sum / rows) between student
    and teacher logits on view 0, and separately on the mixed views; the PACKD term on
    the student's pooled feature and the teacher head's projection. The memory update
    uses momentum 0 during the first `steps_per_epoch` calls (the authors hard-code 782
    = ceil(50000 / 64)), counted by the `step_count` buffer so a resumed run continues.
    Terms: "cls", "div", "div_aug", "kd". Returns the student logits of view 0.
    """
    name = "packd"
    needs = frozenset({INDEX, CONTRAST_INDEX, VIEWS})
    # run_distill.sh: -a 1 --alpha_aug 1 -b 0.8 (no CE weight in their code: gamma 1)
    default_weights = {"gamma": 1.0, "alpha": 1.0, "beta": 0.8}
    default_alpha_aug = 1.0
    forward_only_first_epoch = True

    def __init__(self, student, teacher, opt):
        if teacher is None or opt is None:
            raise ValueError("method 'packd' needs a teacher and the options (opt)")
        super().__init__(student, teacher, opt)
        device = next(student.parameters()).device
        s_dim = feature_shapes(student)[-1][1]
        t_dim = feature_shapes(teacher)[-1][1]
        feat_dim = int(_opt(opt, "feat_dim", 128))
        n_data = _opt(opt, "n_data", None)
        if n_data is None:
            raise ValueError("method 'packd' needs opt.n_data, the training-set size")
        batch_size = int(_opt(opt, "batch_size", 64))
        self.steps_per_epoch = int(_opt(opt, "steps_per_epoch", math.ceil(n_data / batch_size)))
        self.alpha_aug = float(_opt(opt, "alpha_aug", self.default_alpha_aug))
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
        self.register_buffer("step_count", torch.zeros((), dtype=torch.long, device=device))

    def memory_momentum(self):
        """0 while the memory is filled for the first time (first epoch), then nce_m; on the device."""
        zero = torch.zeros((), device=self.step_count.device)
        return torch.where(self.step_count < self.steps_per_epoch, zero, zero + self.criterion.nce_m)

    @torch.no_grad()
    def teacher_outputs(self, images):
        """(teacher logits, head projection) for the flattened views, frozen."""
        feats, logits = self.teacher_forward(images, is_feat=True)
        proj, _ = self.teacher_head(feats[-1])
        return logits, proj.detach()

    def extra_weights(self):
        return {"KD(mixed views)": self.alpha_aug}

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
        terms["div"] = self.alpha * self.criterion_div(per_view_s[:, 0], per_view_t[:, 0]) if self.alpha > 0 else zero
        if self.alpha_aug > 0 and v > 1:
            classes = per_view_s.shape[-1]
            terms["div_aug"] = self.alpha_aug * self.criterion_div(
                per_view_s[:, 1:].reshape(-1, classes), per_view_t[:, 1:].reshape(-1, classes))
        else:
            terms["div_aug"] = zero  # no mixed views (mixup_num 0 / -1): the authors' KL would be 0/0
        if self.beta != 0:
            loss = self.criterion(feats_s[-1], proj_t, batch.index, batch.contrast_index, self.memory_momentum())
            terms["kd"] = self.beta * loss
            self.step_count += 1
        else:
            terms["kd"] = zero
        return per_view_s[:, 0], terms

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
            raise ValueError(f"PACKD head cache '{path}' lacks {sorted(missing)[:3]}; delete it to retrain the head")
        backbone = {k[len("backbone."):]: t for k, t in state.items() if k.startswith("backbone.")}
        mine = self.teacher.state_dict()
        if set(backbone) != set(mine) or any(not torch.equal(t.cpu(), backbone[k]) for k, t in mine.items()):
            raise ValueError(f"PACKD head cache '{path}' was trained on another teacher; delete it or pass "
                             f"another --head_cache_dir")
        self.teacher_head.load_state_dict({k: state[k] for k in head_keys})

    def pretrain(self, loader, opt, device, log=print):
        """Train the teacher projection head (or load it from the cache), before distilling.

        As the authors: t_epoch epochs of SGD (t_lr, t_momentum, t_weight_decay) on the
        cross-entropy of the head's classifier over every view of the multi-view batches,
        the teacher backbone in eval mode without gradients. Their MultiStepLR (milestones
        30, 45) is created but never stepped, so the rate stays t_lr: kept constant here.
        The result is written atomically to `<head_cache_dir>/<model_t>_embed.pth` as
        {"model": backbone.* + proj_head.* + classifier.*, "epoch": t_epoch} and reused;
        runs sharing the cache take turns (`head_cache_lock`), so the head is trained once.
        """
        cache_dir = str(_opt(opt, "head_cache_dir", self.head_cache_dir))
        path = head_cache_path(cache_dir, str(_opt(opt, "model_t", self.teacher_name)))
        with head_cache_lock(path, log):
            return self._load_or_train_head(path, loader, opt, device, log)

    def _load_or_train_head(self, path, loader, opt, device, log):
        if os.path.isfile(path):
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.load_head_state(state.get("model", state), path)
            log(f"packd: loaded the teacher projection head from {path}")
            cached_bf16 = state.get("teacher_bf16")  # absent in the authors' files and older caches
            if cached_bf16 is not None and bool(cached_bf16) != self.teacher_bf16:
                log(f"packd: note: that head was trained on {'bf16' if cached_bf16 else 'float32'} teacher features, "
                    f"this run uses {'bf16' if self.teacher_bf16 else 'float32'} ones (delete the file to retrain)")
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
                check_stage_loss(stats[0], "packd's teacher-head training (nothing cached)", epoch)
        finally:
            optimizer.zero_grad(set_to_none=True)
            head.requires_grad_(False)
            self.train(was_training)
        _atomic_save({"model": self.head_state(), "epoch": t_epoch, "teacher_bf16": self.teacher_bf16}, path)
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
    g.add_argument("--mixup_num", type=int, default=3,
                   help="mixed positive views per sample (0: plain view only, -1: one mixed view only)")
    g.add_argument("--mixup_ratio", type=float, default=0.0, help="lambda = ratio + (1 - ratio) * U(0, 1)")
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
    g.add_argument("--packd_skip_warmup", action="store_true",
                   help="variant: no forward-only first epoch (momentum is still 0 for one epoch)")
    g.add_argument("--head_cache_dir", type=str, default=DEFAULT_HEAD_CACHE_DIR,
                   help="folder of the cached teacher projection heads (<model_t>_embed.pth)")
    g = parser.add_argument_group("PACKD authors' flags accepted without effect (as in their code)")
    # run_distill.sh passes `--pos_k ${pos_k}` with pos_k never set: a bare --pos_k is accepted
    g.add_argument("--pos_k", type=int, nargs="?", const=-1, default=None, help=NO_EFFECT_FLAGS["pos_k"])
    g.add_argument("--ncls", type=_hundred_classes, default=None, help="class count: 100 (CIFAR-100) only")
    g.add_argument("--loader_type", type=str, default=None, help=NO_EFFECT_FLAGS["loader_type"])
    g.add_argument("--pr_w", type=float, default=None, help=NO_EFFECT_FLAGS["pr_w"])
    g.add_argument("--loss_margin", type=float, default=None, help=NO_EFFECT_FLAGS["loss_margin"])
    g.add_argument("--t_gamma", type=float, default=None, help=NO_EFFECT_FLAGS["t_gamma"])
    g.add_argument("--t-milestones", "--t_milestones", dest="t_milestones", type=int, nargs="+", default=None,
                   help=NO_EFFECT_FLAGS["t_milestones"])
    g.add_argument("--t_save_folder", type=str, default=None, help=NO_EFFECT_FLAGS["t_save_folder"])
    return parser


# Flags of the authors' train_student.py that change nothing there either; accepted so their
# commands run unchanged, and named in a start-up note when given.
NO_EFFECT_FLAGS = {
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
