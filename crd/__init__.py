"""Contrastive Representation Distillation: criterion, memory bank, negative sampler."""
from .criterion import CRDLoss, ContrastLoss, Embed
from .memory import ContrastMemory
from .sampling import NegativeSampler

__all__ = ["CRDLoss", "ContrastLoss", "Embed", "ContrastMemory", "NegativeSampler"]
