"""Contrastive Representation Distillation: criterion and memory bank.

Its negatives are drawn by the data path (`dataset.negatives.NegativeSampler`), which
fills a batch's `contrast_index` for every method that needs one (CRD, PACKD).
"""
from .criterion import CRDLoss, ContrastLoss, Embed
from .memory import ContrastMemory

__all__ = ["CRDLoss", "ContrastLoss", "Embed", "ContrastMemory"]
