"""PACKD's ImageNet form: the authors' `code/train_student_imagenet.py` with `PACKDConLoss`
at `--dataset imagenet`, whose memory is their `DequeMemory` (`code/packd/memory.py`).

What differs from the CIFAR form (`packd.loss.PACKDLoss`):
- no teacher head: the teacher's pooled feature is only L2-normalised (their script sets
  feat_dim to the student's width and asserts it equals the teacher's, so their `Embed` for
  the teacher skips its linear); the student's goes through Linear(s_dim, t_dim) + L2;
- the memory is a queue of the most recent teacher embeddings (view 0) with their labels,
  not one row per training sample: each step appends the batch, then scores;
- the negatives of every student row (every view of every sample) are `nce_k` queue entries
  of other classes, drawn uniformly without replacement (with replacement while fewer than
  `nce_k` are available), separately for each row, as their per-row `np.random.choice`.

The queue is one ring buffer on the device, written with the view-0 embeddings and labels of
the whole global batch (`util.dist.gather_rows`), so every rank holds the same queue; each
rank draws its rows' negatives from a generator seeded per step (run seed, rank, step count),
so a resumed run draws the same numbers.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from packd.loss import Embed
from packd.sinkhorn import sinkhorn_plan
from util.dist import gather_rows

# The authors' `--n_data` default ("memory size"); their ImageNet script never changes it.
AUTHORS_MEMORY = 50_000
_MASK64 = (1 << 64) - 1


def default_queue_size(batch_size, views, memory=AUTHORS_MEMORY):
    """Rows the authors' DequeMemory scores against once full, for one process of `batch_size`
    samples with `views` views each: it keeps `memory // (batch_size * views)` batches (it divides
    by the rows of the student's features, B x V, when it pops), i.e. 97 x 256 = 24,832 rows at
    batch 256 with 2 views (their 8 x 128 run: 195 x 128 = 24,960 rows on each GPU)."""
    batch_size, views = int(batch_size), max(int(views), 1)
    return max(memory // (batch_size * views), 1) * batch_size


def _step_seed(seed, step):
    """splitmix64 of (seed, step): a generator seed for one step's draws."""
    z = (int(seed) + 0x9E3779B97F4A7C15 * (int(step) + 1)) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) & ((1 << 63) - 1)


class NegativeQueue(nn.Module):
    """A ring buffer of `size` embeddings (`dim` wide) and their labels (-1: never written).

    `push` writes a batch at the head (no host sync: the head is a device scalar), `draw` picks
    each row's negatives among the written entries of other classes."""

    def __init__(self, size, dim):
        super().__init__()
        if int(size) <= 0:
            raise ValueError(f"the negative queue needs a positive size, got {size}")
        self.size = int(size)
        self.register_buffer("rows", torch.zeros(self.size, int(dim)))
        self.register_buffer("labels", torch.full((self.size,), -1, dtype=torch.long))
        self.register_buffer("head", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def push(self, feats, labels):
        """Append (n, dim) rows and their (n,) labels, the oldest entries overwritten."""
        if feats.shape[0] > self.size:  # only the newest `size` survive a batch larger than the queue
            feats, labels = feats[-self.size:], labels[-self.size:]
        n = feats.shape[0]
        where = (self.head + torch.arange(n, device=self.head.device)) % self.size
        self.rows.index_copy_(0, where, feats.to(self.rows.dtype))
        self.labels.index_copy_(0, where, labels.to(self.labels.device, torch.long))
        self.head.copy_((self.head + n) % self.size)

    @torch.no_grad()
    def draw(self, labels, k, generator=None):
        """labels (R,) -> (positions (R, k), available (R,) bool): for each row, k uniform draws
        among the written entries whose label differs, without replacement when there are at
        least k of them, else with replacement; `available` is False for a row with none (its
        positions are then meaningless). Every row keys every entry with a uniform number,
        pushes the entries it may not take to the end and keeps the smallest keys: a uniform
        random subset, its first `count` columns a random order of the whole pool."""
        rows = labels.shape[0]
        device = self.rows.device
        allowed = (self.labels >= 0).unsqueeze(0) & (self.labels.unsqueeze(0) != labels.to(device).unsqueeze(1))
        keys = torch.rand((rows, self.size), generator=generator, device=device).masked_fill_(~allowed, 2.0)
        width = min(int(k), self.size)
        order = keys.topk(width, dim=1, largest=False, sorted=True).indices  # (R, width)
        count = allowed.sum(1, keepdim=True)  # (R, 1)
        pick = (torch.rand((rows, int(k)), generator=generator, device=device) * count).long()
        pick = torch.minimum(pick, (count - 1).clamp(min=0)).clamp(max=width - 1)
        with_replacement = order.gather(1, pick)
        if width == int(k):
            positions = torch.where(count >= k, order, with_replacement)
        else:  # fewer entries than k: always with replacement
            positions = with_replacement
        return positions, count.squeeze(1) > 0


class PACKDImageNetLoss(nn.Module):
    """The PACKD term at ImageNet (the authors' PACKDConLoss with DequeMemory).

    forward(feat_s (B*V, s_dim), feat_t (B*V, t_dim), labels (B,)) -> scalar; rows are
    sample-major (row b*V + v is view v of sample b).

    1. Student features -> Linear(s_dim, t_dim) + L2 norm; teacher pooled features -> L2 norm.
    2. The queue gets the view-0 teacher embeddings and labels of the whole global batch,
       *before* scoring (the batch's own rows of other classes are among the negatives).
    3. Every student row is scored against `nce_k` queue entries of other classes, drawn for
       that row; a row whose queue holds no other class yet has no negatives (their code
       would fail there).
    4. Positive: sum_ij pi_ij <s_i, t_j> with pi the Sinkhorn plan between the sample's
       student and teacher views (not differentiated), as on CIFAR.
    5. loss = -mean_b log(e^{pos/T} / (e^{pos/T} + sum of the sample's V x nce_k e^{neg/T})).
    """

    def __init__(self, s_dim, t_dim, queue_size, nce_k=16384, ops_eps=0.1, ops_err_thres=0.1, temperature=0.07,
                 seed=0, sinkhorn_check_every=None):
        super().__init__()
        if nce_k <= 0 or temperature <= 0 or ops_eps <= 0:
            raise ValueError("PACKDImageNetLoss needs positive nce_k, temperature and ops_eps")
        self.nce_k, self.temperature = int(nce_k), float(temperature)
        self.ops_eps, self.ops_err_thres = float(ops_eps), float(ops_err_thres)
        self.sinkhorn_check_every = None if sinkhorn_check_every is None else int(sinkhorn_check_every)
        self.embed_s = Embed(s_dim, t_dim)
        self.queue = NegativeQueue(queue_size, t_dim)
        # steps drawn so far: seeds the next step's generator (Python int, mirrored in a buffer
        # so that a checkpoint resumes the same draws; read back only when a state is loaded)
        self.register_buffer("draws", torch.zeros((), dtype=torch.long))
        self.seed, self._draws, self._generator = int(seed), 0, None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if prefix + "draws" in state_dict:
            self._draws = int(state_dict[prefix + "draws"])

    def step_generator(self, device):
        """The generator of this step's negative draws, re-seeded from (seed, step count)."""
        if self._generator is None or self._generator.device != torch.device(device):
            self._generator = torch.Generator(device=device)
        self._generator.manual_seed(_step_seed(self.seed, self._draws))
        self._draws += 1
        self.draws.fill_(self._draws)
        return self._generator

    def forward(self, feat_s, feat_t, labels):
        batch = labels.shape[0]
        rows = feat_s.shape[0]
        if batch == 0 or rows % batch or feat_t.shape[0] != rows:
            raise ValueError(f"PACKDImageNetLoss needs B*V rows in feat_s and feat_t for B={batch} labels, got "
                             f"{rows} and {feat_t.shape[0]}")
        views = rows // batch
        with torch.autocast(device_type=feat_s.device.type, enabled=False):
            embed_s = self.embed_s(feat_s.float())  # (B*V, d)
            embed_t = F.normalize(feat_t.float().flatten(1), dim=1).view(batch, views, -1)
            self.queue.push(*gather_rows(embed_t[:, 0].detach(), labels))
            where, available = self.queue.draw(labels.repeat_interleave(views), self.nce_k,
                                               self.step_generator(feat_s.device))
            neg = (embed_s @ self.queue.rows.detach().t()).gather(1, where)  # (B*V, K)
            neg = neg.masked_fill(~available.unsqueeze(1), float("-inf"))
            embed_s = embed_s.view(batch, views, -1)
            plan = sinkhorn_plan(embed_s.detach(), embed_t.detach(), self.ops_eps, self.ops_err_thres,
                                 check_every=self.sinkhorn_check_every)
            pos = (torch.bmm(embed_s, embed_t.transpose(1, 2)) * plan).sum(dim=(1, 2))  # (B,)
            logits = torch.cat([pos.unsqueeze(1), neg.view(batch, -1)], dim=1) / self.temperature
            return (torch.logsumexp(logits, dim=1) - pos / self.temperature).mean()
