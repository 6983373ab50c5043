"""PACKD's ImageNet form (`--distill packd --dataset imagenet`): the queue memory, the loss
against the authors' per-row formula, the method's terms, defaults and refused settings."""
import argparse
import copy

import pytest
import torch
import torch.nn.functional as F

import train_student
from distiller_zoo.base import Batch
from distiller_zoo.PACKD import PACKDDistiller, add_packd_arguments, sinkhorn_plan
from packd.imagenet import NegativeQueue, PACKDImageNetLoss, _step_seed, default_queue_size
from tests.distiller_zoo.test_packd import TinyNet
from util.errors import UsageError

B, V, S_DIM, T_DIM, CLASSES = 4, 2, 6, 10, 5


# ---------------------------------------------------------------------------- the queue
def test_queue_is_a_ring_of_the_newest_rows_and_labels():
    q = NegativeQueue(5, 2)
    assert q.labels.tolist() == [-1] * 5
    q.push(torch.ones(3, 2), torch.tensor([0, 1, 2]))
    assert q.labels.tolist() == [0, 1, 2, -1, -1] and int(q.head) == 3
    q.push(torch.full((3, 2), 2.0), torch.tensor([3, 4, 0]))  # wraps: the oldest row is overwritten
    assert q.labels.tolist() == [0, 1, 2, 3, 4] and int(q.head) == 1
    assert q.rows[:, 0].tolist() == [2.0, 1.0, 1.0, 2.0, 2.0]
    q.push(torch.arange(14.0).view(7, 2), torch.arange(7))  # larger than the queue: the newest 5 stay
    assert sorted(q.labels.tolist()) == [2, 3, 4, 5, 6]


def test_draws_are_other_class_written_rows_without_replacement_when_enough():
    q = NegativeQueue(40, 3)
    labels = torch.arange(30) % 3
    q.push(torch.randn(30, 3), labels)  # 10 unwritten rows stay out
    g = torch.Generator().manual_seed(0)
    anchor = torch.tensor([0, 1, 2, 0])
    where, available = q.draw(anchor, 15, g)
    assert where.shape == (4, 15) and available.all()
    for row, cls in zip(where, anchor):
        assert (q.labels[row] != cls).all() and (q.labels[row] >= 0).all()
        assert row.unique().numel() == 15  # 20 candidates >= 15: no repeats
    # fewer candidates than asked: with replacement, every candidate may come, never another
    where, _ = q.draw(anchor, 50, g)
    for row, cls in zip(where, anchor):
        assert (q.labels[row] != cls).all() and row.unique().numel() <= 20
    # uniform over the pool: every candidate is drawn about equally often
    counts = torch.bincount(q.draw(torch.zeros(400, dtype=torch.long), 10, g)[0].flatten(), minlength=40)
    pool = counts[torch.nonzero(labels != 0).flatten()]
    assert counts[torch.nonzero(labels == 0).flatten()].sum() == 0 and counts[30:].sum() == 0
    assert pool.min() > 150 and pool.max() < 250  # 4000 draws over 20 rows: 200 each


def test_a_row_without_other_classes_has_no_negatives():
    q = NegativeQueue(8, 2)
    q.push(torch.randn(3, 2), torch.tensor([1, 1, 1]))
    _, available = q.draw(torch.tensor([1, 0]), 4, torch.Generator().manual_seed(0))
    assert available.tolist() == [False, True]


def test_default_queue_size_is_the_authors_deque():
    assert default_queue_size(256, 2) == 97 * 256   # 50000 // 512 batches of 256
    assert default_queue_size(128, 2) == 195 * 128  # their 8-GPU run, per GPU
    assert default_queue_size(64, 1000) == 64       # never less than one batch


# ---------------------------------------------------------------------------- the loss
def make_loss(queue=24, nce_k=6, seed=3):
    torch.manual_seed(0)
    return PACKDImageNetLoss(S_DIM, T_DIM, queue, nce_k=nce_k, seed=seed)


def inputs(step=0):
    g = torch.Generator().manual_seed(step)
    feat_s = torch.randn(B * V, S_DIM, generator=g).requires_grad_()
    feat_t = torch.randn(B * V, T_DIM, generator=g).abs()
    return feat_s, feat_t, torch.randint(0, CLASSES, (B,), generator=g)


def authors_formula(loss, feat_s, feat_t, labels, generator):
    """Their PACKDConLoss + DequeMemory step by step: append view 0, then per student row its
    gathered negatives, exp / sum / log, on a copy of the queue."""
    s = F.normalize(loss.embed_s.linear(feat_s), dim=1)
    t = F.normalize(feat_t, dim=1)
    q = copy.deepcopy(loss.queue)
    q.push(t.view(B, V, -1)[:, 0], labels)
    where, _ = q.draw(labels.repeat_interleave(V), loss.nce_k, generator)
    neg = torch.bmm(q.rows[where], s.unsqueeze(2)).reshape(B, -1)  # (B*V, K, d) x (B*V, d, 1)
    plan = sinkhorn_plan(s.view(B, V, -1).detach(), t.view(B, V, -1), 0.1, 0.1)
    pos = (torch.bmm(s.view(B, V, -1), t.view(B, V, -1).transpose(1, 2)) * plan).sum((1, 2)).view(B, 1)
    pos_e, neg_e = torch.exp(pos / 0.07), torch.exp(neg / 0.07)
    return -torch.log(pos_e / (pos_e + neg_e.sum(1, keepdim=True))).mean()


def test_loss_is_the_authors_formula_and_writes_view0():
    loss = make_loss()
    feat_s, feat_t, labels = inputs()
    generator = torch.Generator().manual_seed(_step_seed(3, 0))  # the first step's draws
    want = authors_formula(loss, feat_s, feat_t, labels, generator)
    got = loss(feat_s, feat_t, labels)
    assert torch.allclose(got, want, rtol=1e-5)
    (grad,) = torch.autograd.grad(got, feat_s)
    (grad_want,) = torch.autograd.grad(authors_formula(make_loss(), feat_s, feat_t, labels, torch.Generator()
                                                       .manual_seed(_step_seed(3, 0))), feat_s)
    assert torch.allclose(grad, grad_want, rtol=1e-4, atol=1e-7)
    written = loss.queue.labels >= 0
    assert written.sum() == B and torch.equal(loss.queue.labels[:B], labels)
    assert torch.allclose(loss.queue.rows[:B], F.normalize(feat_t.view(B, V, -1)[:, 0], dim=1))
    assert int(loss.draws) == 1


def test_state_dict_resumes_the_same_draws():
    a = make_loss()
    a(*inputs(0))
    b = make_loss(seed=3)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    assert set(a.state_dict()) == {"embed_s.linear.weight", "embed_s.linear.bias", "queue.rows", "queue.labels",
                                   "queue.head", "draws"}
    for step in (1, 2):
        la, lb = a(*inputs(step)), b(*inputs(step))
        assert torch.equal(la, lb)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    other_seed = make_loss(seed=4)
    other_seed.load_state_dict(copy.deepcopy(make_loss().state_dict()))
    fresh = make_loss()
    assert not torch.equal(other_seed(*inputs(0)), fresh(*inputs(0)))  # the seed decides the draws


def test_first_step_with_one_class_only_is_finite():
    loss = make_loss()
    feat_s, feat_t, _ = inputs()
    out = loss(feat_s, feat_t, torch.zeros(B, dtype=torch.long))  # no other class in the queue yet
    assert float(out.detach()) == pytest.approx(0.0, abs=1e-6)
    out.backward()
    assert torch.isfinite(feat_s.grad).all()


# ---------------------------------------------------------------------------- the method
def make_opt(**kw):
    parser = argparse.ArgumentParser()
    add_packd_arguments(parser)
    opt = parser.parse_args([])
    base = dict(model_s="tiny", model_t="tinyT", distill="packd", dataset="imagenet", gamma=None, alpha=None,
                beta=None, kd_T=3, feat_dim=128, nce_k=6, nce_t=0.07, nce_m=0.5, batch_size=B, n_data=40,
                num_classes=CLASSES, seed=0, packd_queue=16, mixup_num=1, mixup_ratio=0.1, kl_views="joint")
    base.update(kw)
    for k, v in base.items():
        setattr(opt, k, v)
    return opt


def make_distiller(**kw):
    torch.manual_seed(0)
    return PACKDDistiller(TinyNet(6, CLASSES), TinyNet(10, CLASSES), make_opt(**kw))


def make_batch(step=0, views=V):
    g = torch.Generator().manual_seed(100 + step)
    labels = torch.randint(0, CLASSES, (B,), generator=g)
    return Batch(images=None, labels=labels, views=torch.randn(B, views, 3, 8, 8, generator=g))


def test_imagenet_form_terms_modules_and_schedule(tmp_path):
    d = make_distiller()
    assert d.imagenet and not d.forward_only_first_epoch and not hasattr(d, "teacher_head")
    assert d.kl_views == "joint" and d.criterion_div.T == 3 and d.queue_size == 16
    assert list(d.loss_terms()) == ["cls", "div", "kd"] and "all views" in d.loss_terms()["div"]
    assert "queue of 16" in d.loss_terms()["kd"]
    assert d.pretrain(None, make_opt(), torch.device("cpu"), print) is None  # no head to train
    trainable = {id(p) for p in d.trainable_parameters()}
    assert trainable == {id(p) for p in [*d.student.parameters(), *d.criterion.embed_s.parameters()]}
    assert d.criterion.embed_s.linear.in_features == 6 and d.criterion.embed_s.linear.out_features == 10
    d.train()
    batch = make_batch()
    logits, terms = d.forward_train(batch)
    assert list(terms) == ["cls", "div", "kd"] and all(torch.isfinite(t) for t in terms.values())
    flat = batch.views.reshape(B * V, 3, 8, 8)
    with torch.no_grad():
        s_logits, (t_feats, t_logits) = d.student(flat), d.teacher(flat, is_feat=True)
    assert torch.allclose(logits, s_logits.view(B, V, -1)[:, 0], atol=1e-6)
    assert torch.allclose(terms["cls"], F.cross_entropy(s_logits, batch.labels.repeat_interleave(V)), atol=1e-6)
    assert torch.allclose(terms["div"], d.criterion_div(s_logits, t_logits), atol=1e-6)  # alpha 1, all B*V rows
    # the queue holds the teacher's pooled view-0 features, L2-normalised: no head in between
    want = F.normalize(t_feats[-1].view(B, V, -1)[:, 0], dim=1)
    assert torch.allclose(d.criterion.queue.rows[:B], want, atol=1e-6)
    sum(terms.values()).backward()
    assert d.criterion.embed_s.linear.weight.grad is not None and all(p.grad is None for p in d.teacher.parameters())


def test_split_kl_still_available_on_imagenet():
    d = make_distiller(kl_views="split")
    _, terms = d.forward_train(make_batch())
    assert list(terms) == ["cls", "div", "div_aug", "kd"]


def imagenet_args(*extra):
    return ["--path_t", "x.pth", "--dataset", "imagenet", "--data_folder", "d", "--distill", "packd", *extra]


def test_dataset_defaults_and_folder_tags():
    opt = train_student.parse_args(imagenet_args())
    assert (opt.mixup_num, opt.mixup_ratio, opt.mixup_rotate, opt.kl_views, opt.kd_T) == (1, 0.1, 3, "joint", 3)
    assert (opt.gamma, opt.alpha, opt.beta, opt.nce_k, opt.nce_t) == (None, None, None, 16384, 0.07)
    assert type(opt.mixup_num) is int and type(opt.mixup_ratio) is float
    assert PACKDDistiller.folder_tags(opt) == ["mix:1"]
    given = train_student.parse_args(imagenet_args("--mixup_num", "3", "--mixup_ratio", "0", "--kl_views", "split",
                                                   "--packd_queue", "4096"))
    assert (given.mixup_num, given.mixup_ratio, given.kl_views) == (3, 0.0, "split")
    assert PACKDDistiller.folder_tags(given) == ["mix:3", "kl:split", "ag:1.0", "q:4096"]
    assert train_student.parse_args(imagenet_args()).mixup_num == 1  # what was given is per command line
    cifar = train_student.parse_args(["--path_t", "x.pth", "--distill", "packd"])
    assert (cifar.mixup_num, cifar.mixup_ratio, cifar.kl_views, cifar.kd_T) == (3, 0.0, "split", 4)
    assert type(cifar.mixup_num) is int and type(cifar.mixup_ratio) is float
    assert PACKDDistiller.folder_tags(cifar) == ["ag:1.0", "mix:3"]


@pytest.mark.parametrize("extra, words", [
    (["--mixup_num", "-1"], "--mixup_num must be 0 or more"),
    (["--few-ratio", "0.5"], "--few-ratio is for CIFAR-100"),
    (["--packd_exclude_anchor"], "--packd_exclude_anchor has no effect"),
    (["--packd_skip_warmup"], "--packd_skip_warmup has no effect"),
    (["--packd_queue", "0"], "--packd_queue must be a positive"),
])
def test_settings_without_a_place_in_the_imagenet_form_are_one_line(extra, words):
    with pytest.raises(UsageError) as e:
        train_student.parse_args(imagenet_args(*extra))
    assert words in str(e.value) and "\n" not in str(e.value)


def test_the_queue_flag_is_refused_on_cifar():
    with pytest.raises(UsageError, match="--packd_queue sizes PACKD's ImageNet queue"):
        train_student.parse_args(["--path_t", "x.pth", "--distill", "packd", "--packd_queue", "100"])


def test_the_imagenet_form_asks_the_loader_for_views_only(tmp_path):
    """Its queue needs neither dataset positions nor CRD's contrast indices: the loader draws
    no negatives for it (on CIFAR-100 PACKD still needs all three)."""
    import train_student
    from dataset import load_data, make_loaders
    from dataset.batch import CONTRAST_INDEX, INDEX, VIEWS
    from dataset.imagenet import write_generated_imagenet
    from distiller_zoo.PACKD import PACKDDistiller
    write_generated_imagenet(str(tmp_path), classes=2, per_class=2, val_per_class=1, size=(40, 40))
    opt = train_student.parse_args(imagenet_args("--data_folder", str(tmp_path), "--batch_size", "4", "--loader",
                                                  "torch", "--num_workers", "0", "--device", "cpu"))
    assert PACKDDistiller.needs_for(opt) == {VIEWS}
    train, _ = make_loaders(opt, load_data(opt), torch.device("cpu"), PACKDDistiller.needs_for(opt))
    batch = next(iter(train.iterate()))
    assert train.negatives is None and batch.contrast_index is None and batch.index is None
    assert batch.views.shape[:2] == (4, 2)
    cifar = train_student.parse_args(["--path_t", "x.pth", "--distill", "packd"])
    assert PACKDDistiller.needs_for(cifar) == PACKDDistiller.needs == {INDEX, CONTRAST_INDEX, VIEWS}
