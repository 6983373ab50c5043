"""The CRD memory bank: one L2-normalised embedding per training sample and view.

`memory_v1` holds student embeddings and `memory_v2` teacher embeddings. Each
anchor (a student or teacher embedding) is scored against the other view's memory
rows at `contrast_idx` (column 0 the positive), which turns the NCE problem of CRD
(Tian et al., ICLR 2020) into a cheap lookup instead of a forward pass per negative.
"""
import math

import torch
import torch.nn as nn

from util.dist import gather_rows, mean_over_ranks

# Slot layout of the `params` buffer, kept as in RepDistiller so checkpoints match.
_K, _T, _Z_V1, _Z_V2, _MOMENTUM = range(5)
_Z_UNSET = -1.0  # a normalisation constant below zero means "set me on the next call"


class ContrastMemory(nn.Module):
    """Memory bank of `n_data` x `feat_dim` for each view, with NCE scores.

    The normalisation constants Z_v1, Z_v2 live in the `params` buffer so a resumed
    run keeps the values estimated on its very first batch.
    """

    def __init__(self, feat_dim, n_data, nce_k, nce_t=0.07, nce_m=0.5):
        super().__init__()
        if nce_k <= 0 or n_data <= 0 or feat_dim <= 0:
            raise ValueError(f"feat_dim, n_data and nce_k must be positive, got {feat_dim}, {n_data}, {nce_k}")
        self.feat_dim, self.n_data, self.nce_k = int(feat_dim), int(n_data), int(nce_k)
        self.temperature, self.momentum = float(nce_t), float(nce_m)
        # "auto" picks per batch (see `_scores`); "dense" / "gather" force one path.
        self.scoring = "auto"
        self.register_buffer("params", torch.tensor([nce_k, nce_t, _Z_UNSET, _Z_UNSET, nce_m], dtype=torch.float32))
        # Uniform in [-stdv, stdv] with stdv = 1/sqrt(feat_dim/3): unit expected row norm.
        stdv = 1.0 / math.sqrt(feat_dim / 3)
        self.register_buffer("memory_v1", torch.rand(n_data, feat_dim).mul_(2 * stdv).sub_(stdv))
        self.register_buffer("memory_v2", torch.rand(n_data, feat_dim).mul_(2 * stdv).sub_(stdv))

    @property
    def normalization(self):
        """(Z_v1, Z_v2) as a tensor; negative until the first forward call."""
        return self.params[_Z_V1:_Z_V2 + 1]

    def _scores(self, memory, anchors, contrast_idx):
        """exp(<memory[contrast_idx[i, j]], anchors[i]> / T), shape (B, K+1).

        When a batch touches more rows than the bank holds (CIFAR: 64 x 16385 > 50,000)
        scoring every row with one matmul and picking the columns moves far less memory
        than gathering B x (K+1) x feat_dim rows; otherwise gather and use bmm.
        """
        batch, width = contrast_idx.shape
        dense = batch * width >= memory.shape[0] if self.scoring == "auto" else self.scoring == "dense"
        if dense:
            # The clone keeps autograd's saved copy safe from the in-place memory update.
            dots = (anchors @ memory.clone().t()).gather(1, contrast_idx)
        else:
            rows = memory.index_select(0, contrast_idx.reshape(-1)).view(batch, width, -1)
            dots = torch.bmm(rows, anchors.unsqueeze(2)).squeeze(2)
        return torch.exp(dots / self.temperature)

    def forward(self, v1, v2, y, contrast_idx=None):
        """-> (out_v1, out_v2): normalised scores of the student (v1) and teacher (v2)
        anchors, each (B, K+1), column 0 the positive. Updates the memory rows at `y`.
        """
        batch = v1.shape[0]
        y = y.to(device=v1.device, dtype=torch.long).reshape(-1)
        if contrast_idx is None:
            # The reference draws from a uniform alias table over the whole bank.
            contrast_idx = torch.randint(self.n_data, (batch, self.nce_k + 1), device=v1.device)
            contrast_idx[:, 0] = y
        contrast_idx = contrast_idx.to(device=v1.device, dtype=torch.long)

        # Scores are exponentials of dot/T (up to e^(1/0.07)): keep them in float32.
        with torch.autocast(device_type=v1.device.type, enabled=False):
            v1 = v1.to(self.memory_v1.dtype)
            v2 = v2.to(self.memory_v2.dtype)
            out_v2 = self._scores(self.memory_v1, v2, contrast_idx)  # teacher anchor, student memory
            out_v1 = self._scores(self.memory_v2, v1, contrast_idx)  # student anchor, teacher memory

            with torch.no_grad():
                # Z = mean score * n_data, fixed on the first call (no host sync needed).
                current = mean_over_ranks(torch.stack([out_v1.mean(), out_v2.mean()]) * self.n_data)
                z = torch.where(self.normalization < 0, current, self.normalization)
                self.normalization.copy_(z)
            out_v1 = out_v1 / z[0]
            out_v2 = out_v2 / z[1]

            with torch.no_grad():
                # Under torch.distributed every rank writes the rows of the whole global batch,
                # so the banks stay identical (one bank, as with one process).
                all_v1, all_v2, all_y = gather_rows(v1.detach(), v2.detach(), y)
                self._update(self.memory_v1, all_v1, all_y)
                self._update(self.memory_v2, all_v2, all_y)
        return out_v1, out_v2

    def _update(self, memory, embeddings, y):
        """memory[y] <- normalise(m * memory[y] + (1 - m) * embeddings)."""
        mixed = memory.index_select(0, y).mul_(self.momentum).add_(embeddings.detach(), alpha=1 - self.momentum)
        mixed = mixed.div_(mixed.pow(2).sum(1, keepdim=True).sqrt())
        memory.index_copy_(0, y, mixed)
