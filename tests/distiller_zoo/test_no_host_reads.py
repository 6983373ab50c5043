"""No method reads a value back to the host in a training step.

A read-back (`.item()`, a boolean mask, `.tolist()`, ...) makes the host wait for the GPU
every step. On CUDA `scripts/benchmark.py` counts them with torch's sync debug mode; here,
on the CPU, `tests/host_reads.py` records the operations that would wait. Each registered
method gets batches from its real loader (augmentation, negatives, views), a forward,
a backward and an optimizer step, in a regular epoch (after the warm-ups start and
PACKD's forward-only epoch), with resnet8 on both sides. The one designed read, PACKD's
Sinkhorn convergence flag, is checked to be the only one.
"""
import pytest
import torch

from distiller_zoo import METHODS
from packd.sinkhorn import SINKHORN_CHECKS
from scripts.bench.data import synthetic_cifar100
from scripts.bench.options import parse_args
from scripts.bench.steps import build_distiller
from tests.host_reads import host_reads

STEPS = 2


def test_the_probe_sees_host_reads():
    x = torch.arange(6.0)
    with host_reads() as found:
        x.sum().item()
        x[x > 2].sum()
        x.tolist()
        bool(x.max() > 0)
        torch.unique(x)
        x.repeat_interleave(torch.tensor([1, 2, 1, 1, 1, 1]))
    kinds = [line.split(":")[0] for line in found]
    assert kinds == ["_local_scalar_dense", "index with a boolean mask", "Tensor.tolist", "_local_scalar_dense",
                     "_unique2", "repeat_interleave without output_size"]
    assert all("test_no_host_reads.py" in line for line in found), found
    with host_reads() as found:
        y = torch.where(x > 2, x, 0.0).sum() * 2
        torch.randperm(6)[torch.tensor([1, 2])]
        x.repeat_interleave(torch.tensor([1, 2, 1, 1, 1, 1]), output_size=7)
    assert found == [] and y.shape == ()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_a_training_step_reads_nothing_back(name):
    from dataset import make_loaders
    args, opt = parse_args(["--distill", name, "--model_t", "resnet8", "--model_s", "resnet8", "--batch_size", "8",
                            "--nce_k", "16", "--n_data", "64", "--n_test", "8", "--device", "cpu"])
    torch.manual_seed(0)
    device = torch.device("cpu")
    method = METHODS[name]
    train_loader, _ = make_loaders(opt, synthetic_cifar100(args.n_data, args.n_test), device, method.needs)
    opt.n_data = train_loader.num_samples
    opt.steps_per_epoch = len(train_loader)
    distiller, optimizer = build_distiller(opt, device)
    distiller.train()
    distiller.set_epoch(2)
    batches = train_loader.iterate()

    def step():
        _, terms = distiller.forward_train(next(batches))
        optimizer.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        optimizer.step()
        return terms

    def reads_in_steps():
        with host_reads() as found:
            for _ in range(STEPS):
                terms = step()
        assert all(torch.isfinite(v).all() for v in terms.values())
        return found

    step()  # lazy set-up (first-call allocations) may look at values once
    found = reads_in_steps()
    sinkhorns = [m for m in distiller.modules() if hasattr(m, "sinkhorn_check_every")]
    if sinkhorns:
        # PACKD's Sinkhorn stops when the plan has converged, as the authors' loop: the host reads
        # the convergence flag after 2, 4, 8, ... iterations (one read when it converges at once),
        # and nothing else. Never checking (100 frozen iterations) reads nothing.
        assert found and all("sinkhorn.py" in line and "bool(done)" in line for line in found), found
        assert len(found) <= STEPS * len(SINKHORN_CHECKS)
        for module in sinkhorns:
            module.sinkhorn_check_every = 0
        found = reads_in_steps()
    assert found == [], f"{name} reads values back in a training step:\n" + "\n".join(found)
