"""PACKD (distiller_zoo/PACKD.py): the loss against the reference fixture, the Sinkhorn
stopping rule, the teacher-head cache and the distiller's step."""
import argparse
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from distiller_zoo.base import Batch
from distiller_zoo.PACKD import (SINKHORN_CHECKS, PACKDDistiller, PACKDLoss, add_packd_arguments,
                                 head_cache_path, save_cached_head, sinkhorn_plan)
from tests.reference import apply_fill, assert_stats, contrast_index, load_fixture, sin_input

FIXTURE = load_fixture("losses")["packd"]
SETUP = FIXTURE["setup"]


# ---------------------------------------------------------------------------- loss
def fixture_loss(**kw):
    loss = PACKDLoss(SETUP["s_dim"], SETUP["t_dim"], SETUP["feat_dim"], n_data=SETUP["n_data"],
                     nce_k=SETUP["nce_k"], nce_m=SETUP["nce_m"], ops_eps=SETUP["ops_eps"],
                     ops_err_thres=SETUP["ops_err_thres"], temperature=SETUP["temperature"], **kw)
    apply_fill(loss, only={"embed_s.linear.weight", "embed_s.linear.bias", "memory_t.memory_bank"})
    with torch.no_grad():
        loss.memory_t.memory_bank.copy_(F.normalize(loss.memory_t.memory_bank, dim=1))
    return loss


def fixture_inputs():
    b, v = SETUP["B"], SETUP["views"]
    feat_s = sin_input((b * v, SETUP["s_dim"]), 0.21, 0.0).requires_grad_()
    feat_t = (sin_input((b * v, SETUP["t_dim"]), 0.17, 0.5) * 3.0).requires_grad_()
    idx = torch.tensor(SETUP["idx"])
    return feat_s, feat_t, idx, contrast_index(idx, SETUP["n_data"], SETUP["nce_k"])


def test_state_dict_keys():
    keys = set(fixture_loss().state_dict())
    assert {"embed_s.linear.weight", "embed_s.linear.bias", "memory_t.memory_bank"} <= keys
    assert not any(k.startswith("embed_t.") for k in keys)  # t_dim == feat_dim: no teacher linear


@pytest.mark.parametrize("score_mode", ["auto", "bank", "gather"])
@pytest.mark.parametrize("case, momentum", [("first_epoch", 0.0), ("later_epoch", None)])
def test_fixture(case, momentum, score_mode):
    loss_fn = fixture_loss(score_mode=score_mode)
    feat_s, feat_t, idx, cidx = fixture_inputs()
    loss = loss_fn(feat_s, feat_t, idx, cidx, momentum)
    loss.backward()
    ref = FIXTURE[case]
    assert torch.allclose(loss.detach().double(), torch.tensor(ref["loss"], dtype=torch.float64), rtol=1e-4)
    assert_stats(feat_s.grad, ref["grads"][0], what="grad feat_s")
    assert_stats(feat_t.grad, ref["grads"][1], what="grad feat_t")
    assert_stats(loss_fn.memory_t.memory_bank[idx], ref["memory_rows_after"], what="memory rows")


def test_momentum_as_device_tensor_matches_float():
    a, b = fixture_loss(), fixture_loss()
    la = a(*fixture_inputs(), momentum=0.5)
    lb = b(*fixture_inputs(), momentum=torch.tensor(0.5))
    assert torch.equal(la, lb) and torch.equal(a.memory_t.memory_bank, b.memory_t.memory_bank)


def naive_packd(loss_fn, feat_s, feat_t, idx, cidx, exclude_anchor):
    """The authors' formula step by step (per-view row gather, exp, sum), memory already updated."""
    b = idx.shape[0]
    v = feat_s.shape[0] // b
    s = F.normalize(loss_fn.embed_s.linear(feat_s), dim=1)
    t = F.normalize(feat_t, dim=1)
    cols = cidx[:, 1:] if exclude_anchor else cidx
    rows = loss_fn.memory_t.memory_bank[cols.repeat_interleave(v, 0)]  # (B*V, K', d)
    neg = torch.bmm(rows, s.unsqueeze(2)).reshape(b, -1)
    plan = sinkhorn_plan(s.view(b, v, -1).detach(), t.view(b, v, -1).detach(), 0.1, 0.1)
    pos = (torch.bmm(s.view(b, v, -1), t.view(b, v, -1).transpose(1, 2)) * plan).sum((1, 2)).view(b, 1)
    pos_e, neg_e = torch.exp(pos / 0.07), torch.exp(neg / 0.07)
    return -torch.log(pos_e / (pos_e + neg_e.sum(1, keepdim=True))).mean()


@pytest.mark.parametrize("exclude_anchor", [False, True])
def test_exclude_anchor_variant(exclude_anchor):
    loss_fn = fixture_loss(exclude_anchor=exclude_anchor)
    feat_s, feat_t, idx, cidx = fixture_inputs()
    loss = loss_fn(feat_s, feat_t, idx, cidx, 0.0)
    want = naive_packd(loss_fn, feat_s, feat_t, idx, cidx, exclude_anchor)
    assert torch.allclose(loss, want, rtol=1e-5)
    if exclude_anchor:  # fewer terms in the denominator: strictly smaller than the fixture's loss
        assert loss.item() < FIXTURE["first_epoch"]["loss"]


def test_memory_first_epoch_replaces_rows_with_view0_teacher():
    loss_fn = fixture_loss()
    feat_s, feat_t, idx, cidx = fixture_inputs()
    loss_fn(feat_s, feat_t, idx, cidx, 0.0)
    view0 = F.normalize(feat_t.detach().view(SETUP["B"], SETUP["views"], -1)[:, 0], dim=1)
    assert torch.allclose(loss_fn.memory_t.memory_bank[idx], view0, atol=1e-6)


def test_bad_inputs():
    loss_fn = fixture_loss()
    feat_s, feat_t, idx, cidx = fixture_inputs()
    with pytest.raises(ValueError, match="B\\*V"):
        loss_fn(feat_s[:-1], feat_t[:-1], idx, cidx)
    with pytest.raises(ValueError, match="contrast_idx"):
        loss_fn(feat_s, feat_t, idx, cidx[:, :-1])
    with pytest.raises(ValueError, match="n_data"):
        PACKDLoss(64, 128)


# ---------------------------------------------------------------------------- Sinkhorn
def reference_sinkhorn(x, y, eps, thresh, max_iter=100):
    """The authors' loop: stop when mean over the batch of sum_i |u - u_prev| < thresh."""
    c = ((x.unsqueeze(-2) - y.unsqueeze(-3)).abs() ** 2).sum(-1)
    mu = torch.full(c.shape[:2], 1.0 / c.shape[1])
    nu = torch.full((c.shape[0], c.shape[2]), 1.0 / c.shape[2])
    u, v = torch.zeros_like(mu), torch.zeros_like(nu)
    m = lambda u, v: (-c + u.unsqueeze(-1) + v.unsqueeze(-2)) / eps
    nits = 0
    for _ in range(max_iter):
        u1 = u
        u = eps * (torch.log(mu + 1e-8) - torch.logsumexp(m(u, v), dim=-1)) + u
        v = eps * (torch.log(nu + 1e-8) - torch.logsumexp(m(u, v).transpose(-2, -1), dim=-1)) + v
        err = (u - u1).abs().sum(-1).mean()
        nits += 1
        if err.item() < thresh:
            break
    return torch.exp(m(u, v)), nits


@pytest.mark.parametrize("check_every", [None, 0, 1, 3, 10, 100])
@pytest.mark.parametrize("eps, thresh", [(0.1, 0.1), (0.05, 1e-3), (0.02, 1e-6)])
def test_sinkhorn_matches_reference_stopping_rule(check_every, eps, thresh):
    g = torch.Generator().manual_seed(0)
    x = F.normalize(torch.randn(6, 4, 16, generator=g), dim=-1)
    y = F.normalize(torch.randn(6, 4, 16, generator=g), dim=-1)
    want, nits = reference_sinkhorn(x, y, eps, thresh)
    got, iterations = sinkhorn_plan(x, y, eps, thresh, check_every=check_every, return_iterations=True)
    assert int(iterations) == nits
    assert torch.equal(got, want)


def test_sinkhorn_stops_per_batch_not_per_sample():
    """One slow problem keeps every problem iterating (the reference averages the error)."""
    g = torch.Generator().manual_seed(1)
    x = F.normalize(torch.randn(8, 4, 16, generator=g), dim=-1)
    y = x.clone()
    y[0] = F.normalize(torch.randn(4, 16, generator=g), dim=-1)
    want, nits = reference_sinkhorn(x, y, 0.02, 1e-4)
    got, iterations = sinkhorn_plan(x, y, 0.02, 1e-4, return_iterations=True)
    assert int(iterations) == nits > 1 and torch.equal(got, want)


# ---------------------------------------------------------------------------- distiller
class TinyNet(nn.Module):
    """Stand-in with the models API: (feats list ending with the pooled embedding, logits)."""

    def __init__(self, width=8, num_classes=5):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x, is_feat=False, preact=False):
        f0 = F.relu(self.bn(self.conv(x)))
        pooled = F.adaptive_avg_pool2d(f0, 1).flatten(1)
        logits = self.fc(pooled)
        return ([f0, pooled], logits) if is_feat else logits


N_DATA, N_CLASSES, NCE_K, B, V = 40, 5, 7, 4, 3


def make_opt(tmp_path, **kw):
    parser = argparse.ArgumentParser()
    add_packd_arguments(parser)
    opt = parser.parse_args([])
    base = dict(model_s="tiny", model_t="tinyT", distill="packd", gamma=None, alpha=None, beta=None, kd_T=4,
                feat_dim=16, nce_k=NCE_K, nce_t=0.07, nce_m=0.5, batch_size=B, n_data=N_DATA, steps_per_epoch=3,
                num_classes=N_CLASSES, t_epoch=2, head_cache_dir=str(tmp_path / "heads"))
    base.update(kw)
    for k, v in base.items():
        setattr(opt, k, v)
    return opt


def make_distiller(tmp_path, seed=0, **kw):
    torch.manual_seed(seed)
    student, teacher = TinyNet(6, N_CLASSES), TinyNet(10, N_CLASSES)
    return PACKDDistiller(student, teacher, make_opt(tmp_path, **kw))


def make_batch(step=0, views=V):
    g = torch.Generator().manual_seed(100 + step)
    index = torch.randperm(N_DATA, generator=g)[:B]
    return Batch(images=None, labels=index % N_CLASSES, index=index,
                 contrast_index=torch.cat([index.unsqueeze(1), torch.randint(0, N_DATA, (B, NCE_K), generator=g)], 1),
                 views=torch.randn(B, views, 3, 8, 8, generator=g))


def test_defaults_and_flags(tmp_path):
    parser = argparse.ArgumentParser()
    add_packd_arguments(parser)
    opt = parser.parse_args([])
    assert (opt.mixup_num, opt.mixup_ratio, opt.mixup_rotate, opt.alpha_aug) == (3, 0.0, 3, None)
    assert (opt.ops_eps, opt.ops_err_thres, opt.t_epoch, opt.t_lr, opt.t_momentum, opt.t_weight_decay) == \
        (0.1, 0.1, 60, 0.05, 0.9, 5e-4)
    assert (opt.few_ratio, opt.packd_exclude_anchor, opt.packd_skip_warmup, opt.head_cache_dir) == \
        (1.0, False, False, "save_packd_t")
    dashed = parser.parse_args(["--t-epoch", "5", "--t-lr", "0.1", "--t_weight-decay", "1e-4", "--few-ratio", "0.5"])
    under = parser.parse_args(["--t_epoch", "5", "--t_lr", "0.1", "--t_weight_decay", "1e-4", "--few_ratio", "0.5"])
    assert vars(dashed) == vars(under)
    assert (dashed.t_epoch, dashed.t_lr, dashed.t_weight_decay, dashed.few_ratio) == (5, 0.1, 1e-4, 0.5)
    d = make_distiller(tmp_path)
    assert d.name == "packd" and (d.gamma, d.alpha, d.beta, d.alpha_aug) == (1.0, 1.0, 0.8, 1.0)
    assert d.forward_only_first_epoch is True
    assert make_distiller(tmp_path, packd_skip_warmup=True).forward_only_first_epoch is False


def test_forward_train_terms_and_gradients(tmp_path):
    d = make_distiller(tmp_path)
    d.train()
    batch = make_batch()
    logits, terms = d.forward_train(batch)
    assert logits.shape == (B, N_CLASSES)
    assert set(terms) == {"cls", "div", "div_aug", "kd"}
    assert all(t.dim() == 0 and torch.isfinite(t) for t in terms.values())
    assert all(float(t.detach()) != 0 for t in terms.values())
    sum(terms.values()).backward()
    assert d.student.conv.weight.grad is not None and d.criterion.embed_s.linear.weight.grad is not None
    assert all(p.grad is None for p in d.teacher.parameters())
    assert all(p.grad is None for p in d.teacher_head.parameters())
    trainable = {id(p) for p in d.trainable_parameters()}
    assert id(d.criterion.embed_s.linear.weight) in trainable
    assert not any(id(p) in trainable for p in d.teacher_head.parameters())
    # view-0 student logits; CE over every view
    with torch.no_grad():
        flat = batch.views.reshape(B * V, 3, 8, 8)
        all_logits = d.student(flat)
    assert torch.allclose(logits, all_logits.view(B, V, -1)[:, 0], atol=1e-5)


def test_weights_and_single_view(tmp_path):
    d = make_distiller(tmp_path, alpha=0.0, alpha_aug=0.0, beta=0.0)
    _, terms = d.forward_train(make_batch())
    assert float(terms["div"]) == float(terms["div_aug"]) == float(terms["kd"]) == 0.0
    fresh = make_distiller(tmp_path, alpha=0.0, alpha_aug=0.0, beta=0.0)
    assert torch.equal(d.criterion.memory_t.memory_bank, fresh.criterion.memory_t.memory_bank)  # not touched
    d = make_distiller(tmp_path)
    _, terms = d.forward_train(make_batch(views=1))  # mixup_num 0 or -1: no mixed view
    assert float(terms["div_aug"]) == 0.0 and torch.isfinite(terms["kd"])


def test_momentum_zero_during_first_epoch_then_nce_m(tmp_path, monkeypatch):
    """The schedule reads the epoch the loop sets, so a resumed run needs no counter."""
    d = make_distiller(tmp_path)
    seen = []
    original = d.criterion.forward

    def spy(feat_s, feat_t, idx, cidx, momentum=None):
        seen.append(float(momentum))
        return original(feat_s, feat_t, idx, cidx, momentum)

    monkeypatch.setattr(d.criterion, "forward", spy)
    d.train()
    for epoch, steps in ((1, 2), (2, 2), (3, 1)):
        d.set_epoch(epoch)
        for step in range(steps):
            d.forward_train(make_batch(step))
    assert seen == [0.0, 0.0, 0.5, 0.5, 0.5]


def test_checkpoints_with_the_old_step_counter_still_load(tmp_path):
    d = make_distiller(tmp_path)
    state = {**d.state_dict(), "step_count": torch.tensor(7)}
    missing, unexpected = make_distiller(tmp_path).load_state_dict(state, strict=False)
    assert not unexpected and not missing


def test_joint_kl_weighs_all_views_together(tmp_path):
    """--kl_views joint: alpha * KL over the B*V rows (the authors' root / ImageNet scripts), no div_aug."""
    split, joint = make_distiller(tmp_path), make_distiller(tmp_path, kl_views="joint")
    batch = make_batch()
    _, t_split = split.forward_train(batch)
    _, t_joint = joint.forward_train(batch)
    assert "div_aug" not in t_joint and "div_aug" in t_split
    flat = batch.views.reshape(B * V, 3, 8, 8)
    with torch.no_grad():
        s_logits, t_logits = joint.student(flat), joint.teacher_outputs(flat)[0]
    want = joint.alpha * joint.criterion_div(s_logits, t_logits)
    assert torch.allclose(t_joint["div"], want, atol=1e-6)
    # view 0 weighs 1/V of it and the mixed views (V-1)/V: the split terms, reweighted
    view0, mixed = float(t_split["div"].detach()), float(t_split["div_aug"].detach())
    assert abs(float(t_joint["div"].detach()) - (view0 + (V - 1) * mixed) / V) < 1e-5
    assert set(joint.loss_terms()) == {"cls", "div", "kd"} and "all views" in joint.loss_terms()["div"]


def test_first_epoch_memory_rows_are_teacher_view0(tmp_path):
    d = make_distiller(tmp_path)
    d.train()
    batch = make_batch()
    with torch.no_grad():
        d.forward_train(batch)
        flat = batch.views.reshape(B * V, 3, 8, 8)
        _, proj = d.teacher_outputs(flat)
    want = F.normalize(proj.view(B, V, -1)[:, 0], dim=1)
    assert torch.allclose(d.criterion.memory_t.memory_bank[batch.index], want, atol=1e-6)


def test_exclude_anchor_flag_changes_the_loss(tmp_path):
    a = make_distiller(tmp_path)
    b = make_distiller(tmp_path, packd_exclude_anchor=True)
    ka = a.forward_train(make_batch())[1]["kd"]
    kb = b.forward_train(make_batch())[1]["kd"]
    assert not torch.allclose(ka, kb)


# ---------------------------------------------------------------------------- head cache
class ListLoader:
    def __init__(self, batches):
        self.batches, self.iterations = batches, 0

    def __iter__(self):
        self.iterations += 1
        return iter(self.batches)


def test_head_cache_written_reused_and_checked(tmp_path):
    d = make_distiller(tmp_path)
    opt = make_opt(tmp_path)
    loader = ListLoader([make_batch(s) for s in range(2)])
    before = {k: v.clone() for k, v in d.teacher_head.state_dict().items()}
    teacher_before = {k: v.clone() for k, v in d.teacher.state_dict().items()}
    logs = []
    path = d.pretrain(loader, opt, torch.device("cpu"), logs.append)
    assert path == head_cache_path(opt.head_cache_dir, "tinyT", d.head_key) and os.path.isfile(path)
    assert os.path.basename(path).startswith("tinyT_") and path.endswith("_embed.pth")
    assert loader.iterations == opt.t_epoch
    assert any(not torch.equal(before[k], v) for k, v in d.teacher_head.state_dict().items())
    assert all(torch.equal(teacher_before[k], v) for k, v in d.teacher.state_dict().items())
    assert all(not p.requires_grad for p in d.teacher_head.parameters())
    assert not [f for f in os.listdir(opt.head_cache_dir) if f.startswith(".tmp")]
    saved = torch.load(path, map_location="cpu", weights_only=True)["model"]
    prefixes = {k.split(".")[0] for k in saved}
    assert prefixes == {"backbone", "proj_head", "classifier"}
    assert {"proj_head.0.weight", "proj_head.2.bias", "classifier.weight"} <= set(saved)

    # a second run with the same teacher loads the head instead of training it
    again = make_distiller(tmp_path)
    loader2 = ListLoader([make_batch(0)])
    again.pretrain(loader2, opt, torch.device("cpu"), logs.append)
    assert loader2.iterations == 0
    for k, v in d.teacher_head.state_dict().items():
        assert torch.equal(again.teacher_head.state_dict()[k], v)

    # another teacher under the same name trains and caches a head of its own
    other = make_distiller(tmp_path, seed=1)
    loader3 = ListLoader([make_batch(0)])
    other_path = other.pretrain(loader3, opt, torch.device("cpu"), logs.append)
    assert other_path != path and loader3.iterations == opt.t_epoch and os.path.isfile(path)


@pytest.mark.parametrize("change", [{"t_epoch": 1}, {"t_lr": 0.01}, {"mixup_num": 1}, {"few_ratio": 0.5},
                                    {"teacher_bf16": True}, {"feat_dim": 8}, {"batch_size": 2}])
def test_head_cache_is_keyed_by_what_shapes_the_head(tmp_path, change):
    """A head trained under other settings (a smoke test's --t-epoch 1, ...) is never reused."""
    base, changed = make_distiller(tmp_path), make_distiller(tmp_path, **change)
    assert base.head_cache_file() != changed.head_cache_file()
    assert make_distiller(tmp_path, seed=0).head_cache_file() == base.head_cache_file()  # same settings: shared
    assert make_distiller(tmp_path, seed=0, trial="7").head_cache_file() == base.head_cache_file()


def test_a_head_file_recording_other_settings_is_refused(tmp_path):
    from util.errors import UsageError
    d = make_distiller(tmp_path)
    path = d.head_cache_file()
    os.makedirs(os.path.dirname(path))
    save_cached_head(d.head_state(), 1, {**d.head_key, "t_epoch": 1}, path)  # e.g. renamed by hand
    with pytest.raises(UsageError, match="other settings \\(t_epoch\\)"):
        d.pretrain(ListLoader([make_batch(0)]), make_opt(tmp_path), torch.device("cpu"), lambda *_: None)


def test_head_is_linear_relu_linear_scaled_and_classifier(tmp_path):
    d = make_distiller(tmp_path)
    head = d.teacher_head
    assert [type(m) for m in head.proj_head] == [nn.Linear, nn.ReLU, nn.Linear]
    assert head.proj_head[0].in_features == 10 and head.proj_head[2].out_features == 16
    proj, logits = head(torch.randn(3, 10))
    assert torch.allclose(proj.norm(dim=1), torch.full((3,), 16.0))
    assert torch.allclose(logits, head.classifier(proj))


def test_real_models_when_available(tmp_path):
    models = pytest.importorskip("models")
    if "resnet8" not in getattr(models, "model_dict", {}):
        pytest.skip("models.model_dict not ready")
    torch.manual_seed(0)
    student, teacher = models.model_dict["resnet8"](num_classes=N_CLASSES), models.model_dict["resnet8"](num_classes=N_CLASSES)
    d = PACKDDistiller(student, teacher, make_opt(tmp_path))
    g = torch.Generator().manual_seed(0)
    batch = make_batch()
    batch.views = torch.randn(B, V, 3, 32, 32, generator=g)
    d.train()
    logits, terms = d.forward_train(batch)
    sum(terms.values()).backward()
    assert logits.shape == (B, N_CLASSES) and torch.isfinite(sum(terms.values()))


def test_head_training_stops_on_a_non_finite_loss_and_caches_nothing(tmp_path):
    from util.errors import NonFiniteLoss
    d = make_distiller(tmp_path)
    opt = make_opt(tmp_path)
    bad = make_batch(0)
    bad.views = torch.full_like(bad.views, float("nan"))
    with pytest.raises(NonFiniteLoss, match="teacher-head training .*epoch 1"):
        d.pretrain(ListLoader([bad]), opt, torch.device("cpu"), lambda *_: None)
    assert not os.path.exists(d.head_cache_file())
    assert all(not p.requires_grad for p in d.teacher_head.parameters())


def test_a_run_waits_for_a_concurrent_head_training_then_loads_its_head(tmp_path):
    import fcntl
    import threading
    opt = make_opt(tmp_path)
    waiting = make_distiller(tmp_path)
    path = waiting.head_cache_file()
    os.makedirs(opt.head_cache_dir)
    loader, logs, errors = ListLoader([make_batch(0)]), [], []

    def pretrain():
        try:
            waiting.pretrain(loader, opt, torch.device("cpu"), logs.append)
        except Exception as e:  # surfaced by the assertions below
            errors.append(e)

    with open(path + ".lock", "a") as held:  # another run holds the lock: it is training the head
        fcntl.flock(held, fcntl.LOCK_EX)
        worker = threading.Thread(target=pretrain)
        worker.start()
        worker.join(0.5)
        assert worker.is_alive(), "the second run did not wait for the first"
        assert any("waiting" in m for m in logs)
        trained = make_distiller(tmp_path)  # same teacher weights (same seed)
        for p in trained.teacher_head.parameters():
            torch.nn.init.constant_(p, 0.25)
        save_cached_head(trained.head_state(), opt.t_epoch, trained.head_key, path)
        fcntl.flock(held, fcntl.LOCK_UN)
    worker.join(10)
    assert not worker.is_alive() and not errors
    assert loader.iterations == 0, "the waiting run trained the head again instead of loading it"
    assert all(torch.equal(p, torch.full_like(p, 0.25)) for p in waiting.teacher_head.parameters())


def test_sinkhorn_default_schedule_runs_no_frozen_iterations_when_it_converges_early(monkeypatch):
    """PACKD's plans converge in 2-3 iterations: the default host-check schedule (2, 4, 8, ...)
    stops at the next check, where a fixed period of 10 runs up to 8 more (frozen, same result)."""
    g = torch.Generator().manual_seed(0)
    x = F.normalize(torch.randn(6, 4, 16, generator=g), dim=-1)
    y = F.normalize(torch.randn(6, 4, 16, generator=g), dim=-1)
    calls = []
    real = torch.logsumexp
    monkeypatch.setattr(torch, "logsumexp", lambda *a, **k: calls.append(1) or real(*a, **k))
    plan, iterations = sinkhorn_plan(x, y, 0.1, 0.1, return_iterations=True)
    ran = min(c for c in SINKHORN_CHECKS if c >= int(iterations))  # the first check after convergence
    assert int(iterations) <= 4 and len(calls) == 2 * ran < 2 * 10  # two logsumexp per iteration
    calls.clear()
    fixed, _ = sinkhorn_plan(x, y, 0.1, 0.1, check_every=10, return_iterations=True)
    assert len(calls) == 2 * 10 and torch.equal(plan, fixed)
