"""The PACKD contrastive term and its memory bank (the authors' `packd/packd.py`,
`packd/memory.py`)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from packd.sinkhorn import sinkhorn_plan
from util.dist import gather_rows


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
            # every rank writes the rows of the whole global batch: one bank on every rank
            self.memory_t.update(*gather_rows(embed_t[:, 0].detach(), idx), momentum)
            negatives = contrast_idx[:, 1:] if self.exclude_anchor else contrast_idx
            neg = self.memory_t.scores(embed_s, negatives, self.score_mode)  # (B, V, K')
            plan = sinkhorn_plan(embed_s.detach(), embed_t.detach(), self.ops_eps, self.ops_err_thres,
                                 check_every=self.sinkhorn_check_every)
            pos = (torch.bmm(embed_s, embed_t.transpose(1, 2)) * plan).sum(dim=(1, 2))  # (B,)
            logits = torch.cat([pos.unsqueeze(1), neg.reshape(batch, -1)], dim=1) / self.temperature
            return (torch.logsumexp(logits, dim=1) - pos / self.temperature).mean()
