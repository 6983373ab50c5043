"""The LR rule, milestones parsing, train_epoch and evaluate on a tiny stand-in model (in-process)."""
import argparse
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dataset.loader import DeviceLoader
from distiller_zoo.base import Distiller
from util.errors import NonFiniteLoss, UsageError
from helper.loops import EpochStats, evaluate, train_epoch
from helper.options import parse_milestones
from helper.util import learning_rate_at

NUM_CLASSES = 10


class TinyNet(nn.Module):
    """Same call API as the zoo's models: model(x) and model(x, is_feat=True) -> (feats, logits)."""

    def __init__(self, num_classes=NUM_CLASSES):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x, is_feat=False, preact=False):
        h = F.relu(self.bn(self.conv(x)))
        pooled = F.adaptive_avg_pool2d(h, 1).flatten(1)
        logits = self.fc(pooled)
        return ([h, pooled], logits) if is_feat else logits


def tiny_data(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    return images, labels


def make(seed=0, batch_size=8):
    torch.manual_seed(seed)
    distiller = Distiller(TinyNet())
    images, labels = tiny_data()
    loader = DeviceLoader(images, labels, batch_size, train=True, seed=seed, device="cpu")
    optimizer = torch.optim.SGD(distiller.trainable_parameters(), lr=0.1, momentum=0.9)
    return distiller, loader, optimizer


def params(model):
    return [p.detach().clone() for p in model.parameters()]


# ---------------------------------------------------------------------------------- LR
def test_learning_rate_rule_matches_repdistiller():
    """RepDistiller: lr = base * rate ** (number of milestones strictly below the epoch)."""
    milestones = [150, 180, 210]
    assert learning_rate_at(1, 0.05, milestones, 0.1) == 0.05
    assert learning_rate_at(150, 0.05, milestones, 0.1) == 0.05
    assert math.isclose(learning_rate_at(151, 0.05, milestones, 0.1), 0.005)
    assert math.isclose(learning_rate_at(180, 0.05, milestones, 0.1), 0.005)
    assert math.isclose(learning_rate_at(181, 0.05, milestones, 0.1), 0.0005)
    assert math.isclose(learning_rate_at(211, 0.05, milestones, 0.1), 0.00005)
    assert math.isclose(learning_rate_at(240, 0.05, milestones, 0.1), 0.00005)
    assert learning_rate_at(240, 0.05, [], 0.1) == 0.05


def test_milestones_parsing():
    assert parse_milestones("150,180,210") == [150, 180, 210]
    assert parse_milestones(" 30, 45 ") == [30, 45]
    assert parse_milestones("") == []
    for bad, words in [("150,120", "increasing"), ("150,150", "increasing"), ("150,x", "epoch numbers"),
                       ("1.5", "epoch numbers"), ("0,10", "positive")]:
        with pytest.raises(UsageError, match=words):
            parse_milestones(bad)


# ---------------------------------------------------------------------------------- train_epoch
def test_train_epoch_trains_and_counts():
    distiller, loader, optimizer = make()
    before = params(distiller)
    stats, steps, stopped = train_epoch(distiller, loader, optimizer, 1, torch.device("cpu"), print_freq=2)
    assert (steps, stopped, stats.steps) == (len(loader), False, 3)
    assert float(stats.count) == 24
    summary = stats.summary()
    assert {"train_loss", "train_acc", "loss_cls"} <= set(summary)
    assert math.isfinite(summary["train_loss"]) and summary["train_loss"] == pytest.approx(summary["loss_cls"])
    assert any(not torch.equal(a, b) for a, b in zip(before, params(distiller)))


def test_train_epoch_resumed_mid_way_matches_one_pass():
    """skip=k replays the first k batches' random draws: the remaining steps see the same batches."""
    full, loader, optimizer = make()
    train_epoch(full, loader, optimizer, 1, torch.device("cpu"))

    part, loader2, optimizer2 = make()
    start = loader2.state_dict()
    stats, steps, stopped = train_epoch(part, loader2, optimizer2, 1, torch.device("cpu"),
                                        should_stop=lambda: True)
    assert (steps, stopped) == (1, True)
    loader2.load_state_dict(start)  # what a resume does: the generator as the epoch began
    stats2 = EpochStats(torch.device("cpu"))
    stats2.load_state_dict(stats.state_dict())
    stats2, steps, stopped = train_epoch(part, loader2, optimizer2, 1, torch.device("cpu"), skip=1, stats=stats2)
    assert (steps, stopped, float(stats2.count)) == (3, False, 24)
    for a, b in zip(params(full), params(part)):
        assert torch.equal(a, b)


def test_forward_only_epoch_changes_no_weight_but_batchnorm_statistics():
    distiller, loader, optimizer = make()
    before = params(distiller)
    mean_before = distiller.student.bn.running_mean.clone()
    train_epoch(distiller, loader, optimizer, 1, torch.device("cpu"), forward_only=True)
    assert all(torch.equal(a, b) for a, b in zip(before, params(distiller)))
    assert not torch.equal(mean_before, distiller.student.bn.running_mean)


def test_non_finite_loss_names_epoch_step_and_terms():
    distiller, loader, optimizer = make()
    original = distiller.forward_train
    calls = []

    def broken(batch):
        calls.append(1)
        logits, terms = original(batch)
        if len(calls) == 2:
            terms = {"cls": terms["cls"] * float("nan")}
        return logits, terms

    distiller.forward_train = broken
    with pytest.raises(NonFiniteLoss) as info:
        train_epoch(distiller, loader, optimizer, 7, torch.device("cpu"), print_freq=100)
    e = info.value
    assert (e.epoch, e.step, e.total) == (7, 2, 3)
    assert math.isnan(e.terms["cls"])
    assert "epoch 7, step 2/3" in str(e) and "cls=nan" in str(e)
    assert len(calls) == 2, "on the CPU the run stops at the bad step itself"


# ---------------------------------------------------------------------------------- evaluate
def test_evaluate_matches_a_direct_computation():
    torch.manual_seed(1)
    model = TinyNet().eval()
    images, labels = tiny_data(n=20, seed=3)
    loader = DeviceLoader(images, labels, 8, train=False, device="cpu")  # 8 + 8 + 4: a partial last batch
    out = evaluate(model, loader, torch.device("cpu"))
    from dataset.augment import normalize
    with torch.no_grad():
        logits = model(normalize(images))
    top5 = logits.topk(5, dim=1).indices
    assert out["test_loss"] == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)
    assert out["test_acc"] == pytest.approx(100.0 * (logits.argmax(1) == labels).float().mean().item())
    assert out["test_acc_top5"] == pytest.approx(100.0 * (top5 == labels[:, None]).any(1).float().mean().item())
    assert not model.training


def test_epoch_stats_state_round_trip():
    stats = EpochStats(torch.device("cpu"))
    logits = torch.randn(4, NUM_CLASSES)
    labels = torch.tensor([0, 1, 2, 3])
    stats.add(0, torch.tensor(2.0), {"cls": torch.tensor(1.5), "div": torch.tensor(0.5)}, logits, labels)
    copy = EpochStats(torch.device("cpu"))
    copy.load_state_dict(stats.state_dict())
    assert copy.summary() == stats.summary() and copy.steps == 1
    copy.check_finite(1)  # finite: nothing raised


def test_epoch_stats_resumed_mid_epoch_sums_like_one_pass():
    """Stats saved after step 1 and loaded into a fresh object continue exactly like the original."""
    g = torch.Generator().manual_seed(0)
    steps = [(torch.rand((), generator=g), {"cls": torch.rand((), generator=g), "kd": torch.rand((), generator=g)},
              torch.randn(8, NUM_CLASSES, generator=g), torch.randint(0, NUM_CLASSES, (8,), generator=g))
             for _ in range(3)]
    whole = EpochStats(torch.device("cpu"))
    for i, s in enumerate(steps):
        whole.add(i, *s)
    first = EpochStats(torch.device("cpu"))
    first.add(0, *steps[0])
    resumed = EpochStats(torch.device("cpu"))
    resumed.load_state_dict(first.state_dict())
    for i, s in enumerate(steps[1:], start=1):
        resumed.add(i, *s)
    assert resumed.summary() == whole.summary() and resumed.steps == whole.steps == 3
    assert resumed.count == 24 and resumed.running() == (whole.summary()["train_loss"], whole.summary()["train_acc"])
    empty = EpochStats(torch.device("cpu"))
    empty.load_state_dict(EpochStats(torch.device("cpu")).state_dict())  # saved before any step
    assert empty.summary() == {"train_loss": 0.0, "train_acc": 0.0} and empty.running() == (0.0, 0.0)


def test_cuda_graph_steps_are_marked_once_per_step(monkeypatch):
    """With --compile --compile_mode reduce-overhead every step starts a new CUDA-graph iteration."""
    from helper.loops import uses_cuda_graphs
    marks = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    model = Distiller(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, NUM_CLASSES)))
    loader = DeviceLoader(torch.zeros(10, 3, 32, 32, dtype=torch.uint8), torch.arange(10) % NUM_CLASSES, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train_epoch(model, loader, optimizer, 1, torch.device("cpu"), cuda_graph_steps=True)
    assert len(marks) == len(loader) == 3
    train_epoch(model, loader, optimizer, 1, torch.device("cpu"))
    assert len(marks) == 3
    opt = argparse.Namespace(compile=True, compile_mode="reduce-overhead")
    assert uses_cuda_graphs(opt)
    opt.compile_mode = "default"
    assert not uses_cuda_graphs(opt)
    assert not uses_cuda_graphs(argparse.Namespace(compile=False, compile_mode="reduce-overhead"))


# ---------------------------------------------------------------------------------- progress bar
def test_progress_bar_moves_every_step_and_reads_back_only_at_print_intervals(monkeypatch, capsys):
    """The count is known on the host and moves each step; the loss/top-1 shown need a read of
    the device's sums, done only every print_freq steps and at the epoch's end."""
    from helper.run_log import Progress
    distiller, loader, optimizer = make(batch_size=4)  # 24 images: 6 steps
    reads = []
    original_running = EpochStats.running
    monkeypatch.setattr(EpochStats, "running", lambda self: reads.append(self.steps) or original_running(self))
    progress = Progress(len(loader), "epoch 1")
    seen = []  # the bar's count when each batch is asked for: the steps done so far

    class Watched:
        def __len__(self):
            return len(loader)

        def iterate(self, skip=0):
            for batch in loader.iterate(skip):
                seen.append(progress.bar.n)
                yield batch

    train_epoch(distiller, Watched(), optimizer, 1, torch.device("cpu"), print_freq=4, progress=progress)
    assert seen == [0, 1, 2, 3, 4, 5] and progress.bar.n == 6
    assert reads == [4, 6]  # after step 4 (print_freq) and the last step
    assert "loss=" in progress.bar.postfix and "acc=" in progress.bar.postfix
    progress.close()
    assert "epoch 1" in capsys.readouterr().err
