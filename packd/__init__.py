"""PACKD's building blocks (Yu et al., ACM MM 2022), after the authors' `code/packd/`:
the Sinkhorn plan, the contrastive loss with its memory bank, and the teacher projection
head with its cache. The method itself (`--distill packd`) is `distiller_zoo/PACKD.py`.
"""
