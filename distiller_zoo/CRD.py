"""CRD (Tian et al., "Contrastive Representation Distillation", ICLR 2020).

The student's and teacher's pooled embeddings (last entry of the feature list) are
projected to `feat_dim` and contrasted against memory banks of the whole training
set: the batch must carry its dataset positions (`index`) and the positive +
`nce_k` negative positions per sample (`contrast_index`, see `crd.NegativeSampler`).
"""
import math
from types import SimpleNamespace

import torch.nn.functional as F

from crd.criterion import CRDLoss
from util.errors import UsageError

from .base import CONTRAST_INDEX, INDEX, feature_shapes
from .KD import KDDistiller

# Settings CRDLoss reads from `opt` besides the embedding sizes derived from the models.
CRD_OPTIONS = ("feat_dim", "nce_k", "nce_t", "nce_m", "n_data")


class CRDDistiller(KDDistiller):
    """gamma * CE + alpha * KL_T + beta * CRD(pooled student, pooled teacher).

    `criterion_kd.embed_s` / `embed_t` train with the student (RepDistiller puts both in
    its trainable list); the memory banks and Z constants are buffers, so they move
    with `.to(device)` and are saved in the state_dict for resuming.
    """
    name = "crd"
    display_name = "CRD"
    table_order = 140
    needs = frozenset({INDEX, CONTRAST_INDEX})
    # RepDistiller README: -r 1 -a 0 -b 0.8
    default_weights = {"gamma": 1.0, "alpha": 0.0, "beta": 0.8}
    has_method_loss = True

    @classmethod
    def add_arguments(cls, parser):
        """CRD's flags (RepDistiller); CC and PACKD read feat_dim / nce_* too."""
        g = parser.add_argument_group("CRD (and the embedding/negatives of CC and PACKD)")
        g.add_argument("--feat_dim", type=int, default=128, help="embedding dim (CRD, CC, PACKD)")
        g.add_argument("--mode", type=str, default="exact", choices=["exact", "relax"], help="CRD positive")
        g.add_argument("--nce_k", type=int, default=16384, help="negatives per sample (CRD, PACKD)")
        g.add_argument("--nce_t", type=float, default=0.07, help="contrast temperature (CRD, PACKD)")
        g.add_argument("--nce_m", type=float, default=0.5, help="memory momentum (CRD, PACKD)")

    @classmethod
    def finalize_options(cls, opt):
        super().finalize_options(opt)
        if opt.nce_k <= 0:
            raise UsageError(f"--nce_k must be positive, got {opt.nce_k}")

    def __init__(self, student, teacher, opt):
        super().__init__(student, teacher, opt)
        missing = [key for key in CRD_OPTIONS if getattr(opt, key, None) is None]
        if missing:
            raise ValueError(f"crd needs opt.{', opt.'.join(missing)} (n_data = training-set size)")
        device = next(student.parameters()).device
        s_shape = feature_shapes(student)[-1]
        t_shape = feature_shapes(teacher)[-1]
        crd_opt = SimpleNamespace(s_dim=math.prod(s_shape[1:]), t_dim=math.prod(t_shape[1:]),
                                  **{key: getattr(opt, key) for key in CRD_OPTIONS})
        self.criterion_kd = CRDLoss(crd_opt).to(device)

    def forward_train(self, batch):
        if self.beta == 0:
            return super().forward_train(batch)  # plain CE (+ KD): no features needed
        if batch.index is None:
            raise ValueError("crd needs batch.index (dataset positions): build batches with the method's `needs`")
        feats_s, logits_s = self.student(batch.images, is_feat=True, preact=False)
        feats_t, logits_t = self.teacher_forward(batch.images, is_feat=True, preact=False)
        terms = {"cls": self.gamma * F.cross_entropy(logits_s, batch.labels)}
        if self.alpha != 0:
            terms["div"] = self.alpha * self.criterion_div(logits_s, logits_t)
        terms["kd"] = self.beta * self.criterion_kd(feats_s[-1], feats_t[-1], batch.index, batch.contrast_index)
        return logits_s, terms
