"""DIST (`--distill dist`): the criterion against the reference numbers of the authors' loss
(tests/fixtures/newer_methods.json), the method's recipe, terms and flags, and a run of
train_student.py end to end."""
import inspect
import json
import os
from types import SimpleNamespace

import pytest
import torch

import train_student
from dataset.batch import Batch
from distiller_zoo import METHODS, method_named
from distiller_zoo.DIST import DISTDistiller, DISTLoss, standardize_logits
from tests.reference import assert_stats, load_fixture, sin_input
from tests.test_train_student import student_args, teacher_ckpt  # noqa: F401  (fixture)
from util.errors import UsageError

RTOL = 1e-4
FIXTURE = load_fixture("newer_methods")
CASES = {"dist_b1_g1_tau1": dict(beta=1, gamma=1, tau=1), "dist_b2_g2_tau4": dict(beta=2, gamma=2, tau=4)}


def fixture_logits():
    inputs = FIXTURE["inputs"]
    shape = (inputs["batch"], inputs["classes"])
    y_s = sin_input(shape, inputs["freqs"][0], 0) * inputs["scale"]
    y_t = sin_input(shape, inputs["freqs"][1], 1) * inputs["scale"]
    return y_s, y_t


# -- the criterion --------------------------------------------------------------------------
@pytest.mark.parametrize("key", sorted(CASES))
def test_dist_loss_reproduces_the_authors_numbers(key):
    ref = FIXTURE["cases"][key]
    y_s, y_t = (t.requires_grad_(True) for t in fixture_logits())
    loss = DISTLoss(**CASES[key])(y_s, y_t)
    assert loss.dim() == 0
    want = torch.tensor(ref["loss"], dtype=torch.float64)
    assert torch.allclose(loss.detach().double(), want, rtol=RTOL, atol=1e-7), f"{key}: {loss.item()} != {ref['loss']}"
    grads = torch.autograd.grad(loss, (y_s, y_t))
    assert len(grads) == len(ref["grads"]) == 2
    for i, (g, g_ref) in enumerate(zip(grads, ref["grads"])):
        assert_stats(g, g_ref, rtol=RTOL, what=f"{key} grad {i}")


def test_dist_loss_public_constructor():
    params = inspect.signature(DISTLoss).parameters
    assert [(n, p.default) for n, p in params.items()] == [("beta", 1.0), ("gamma", 1.0), ("tau", 1.0)]
    loss = DISTLoss()
    assert (loss.beta, loss.gamma, loss.tau) == (1.0, 1.0, 1.0)
    assert not list(loss.parameters()) and not list(loss.buffers())


def test_dist_loss_parts_and_edge_cases():
    y_s, y_t = fixture_logits()
    both = DISTLoss(1, 1, 4)(y_s, y_t)
    inter, intra = DISTLoss(1, 0, 4)(y_s, y_t), DISTLoss(0, 1, 4)(y_s, y_t)
    assert torch.allclose(both, inter + intra)
    # identical predictions: perfect correlation, up to the authors' eps (1e-8 against small per-class variances)
    assert 0 <= DISTLoss(1, 1, 2)(y_t, y_t).item() < 1e-3
    assert DISTLoss(1, 0, 1)(y_t, y_t).abs().item() < 1e-6
    # one sample: no intra-class relation (constant tau^2 * gamma), everything finite
    one_s, one_t = y_s[:1].clone().requires_grad_(True), y_t[:1]
    loss = DISTLoss(1, 1, 4)(one_s, one_t)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(one_s.grad).all()
    assert torch.allclose(loss - 16 * 1.0, DISTLoss(1, 0, 4)(one_s, one_t))
    # bf16 logits (--amp / --teacher_bf16) are scored in float32
    low = DISTLoss(1, 1, 4)(y_s.bfloat16(), y_t.bfloat16())
    assert low.dtype == torch.float32 and torch.allclose(low, both, rtol=2e-2)


def test_standardize_logits_is_the_z_score_of_logit_standardization():
    z = fixture_logits()[0] * 1.7 + 0.3
    want = (z - z.mean(1, keepdim=True)) / (1e-7 + z.std(1, keepdim=True, unbiased=True))
    assert torch.allclose(standardize_logits(z), want)
    # so DIST on standardised logits ignores each row's scale and shift
    y_s, y_t = fixture_logits()
    crit = DISTLoss(1, 1, 4)
    a = crit(standardize_logits(y_s), standardize_logits(y_t))
    b = crit(standardize_logits(3 * y_s + 5), standardize_logits(0.5 * y_t - 2))
    assert torch.allclose(a, b, rtol=1e-4)


# -- the method -----------------------------------------------------------------------------
class Recorder(torch.nn.Module):
    """A linear 'network' on flattened images that counts its calls."""

    def __init__(self, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.fc = torch.nn.Linear(3 * 4 * 4, 100)
        self.calls = 0

    def forward(self, x, is_feat=False, preact=False):
        self.calls += 1
        logits = self.fc(x.flatten(1))
        return ([logits], logits) if is_feat else logits


def parse(*extra):
    return train_student.parse_args(["--path_t", "x.pth", "--distill", "dist", *extra])


def small_batch(n=8):
    g = torch.Generator().manual_seed(0)
    return Batch(images=torch.randn(n, 3, 4, 4, generator=g), labels=torch.arange(n) % 100)


def test_registered_with_the_authors_cifar_recipe():
    cls = METHODS["dist"]
    assert cls is DISTDistiller and method_named("dist") is cls
    assert cls.title() == "DIST" and cls.table_order == 160
    assert cls.default_weights == {"gamma": 1.0, "alpha": 0.0, "beta": 2.0}
    assert cls.needs == frozenset() and cls.sweep_args == ()
    opt = parse()
    assert (opt.dist_beta, opt.dist_gamma, opt.dist_tau) == (1.0, 1.0, 4.0)
    from distiller_zoo.base import resolve_weights
    assert resolve_weights(cls, opt) == {"gamma": 1.0, "alpha": 0.0, "beta": 2.0}
    # takes --logit_stand; DIST + LS is unpublished, so it is no sweep variant
    assert cls.logit_method and not getattr(cls, "sweep_variants", {})
    opt.alpha = 0.9  # a vanilla KD term on request, at RepDistiller's T=4 unless --kd_T says otherwise
    assert DISTDistiller(Recorder(0), Recorder(1), opt).criterion_div.T == 4


def test_terms_weights_and_description():
    opt = SimpleNamespace(gamma=None, alpha=None, beta=None, kd_T=4, dist_beta=1.0, dist_gamma=1.0, dist_tau=4.0)
    student, teacher = Recorder(0), Recorder(1)
    d = DISTDistiller(student, teacher, opt)
    assert d.describe_loss() == "cls=1*CE + kd=2*DIST(beta=1, gamma=1, tau=4)"
    batch = small_batch()
    logits, terms = d.forward_train(batch)
    assert list(terms) == list(d.loss_terms()) == ["cls", "kd"]
    with torch.no_grad():
        ls, lt = student(batch.images), teacher(batch.images)
    assert torch.allclose(terms["cls"], torch.nn.functional.cross_entropy(ls, batch.labels))
    assert torch.allclose(terms["kd"], 2 * DISTLoss(1, 1, 4)(ls, lt))
    assert d.extra_modules() == [d.criterion_dist, d.criterion_div]
    assert not [p for m in d.extra_modules() for p in m.parameters()]  # nothing trained besides the student


def test_vanilla_kd_term_when_alpha_is_given_and_no_teacher_when_unused():
    opt = SimpleNamespace(gamma=0.5, alpha=0.9, beta=3.0, kd_T=2, dist_beta=2.0, dist_gamma=0.0, dist_tau=1.0)
    d = DISTDistiller(Recorder(0), Recorder(1), opt)
    assert d.describe_loss() == "cls=0.5*CE + div=0.9*KL(T=2) + kd=3*DIST(beta=2, gamma=0, tau=1)"
    _, terms = d.forward_train(small_batch())
    assert list(terms) == ["cls", "div", "kd"]
    opt = SimpleNamespace(gamma=1.0, alpha=0.0, beta=0.0, kd_T=4, dist_beta=1.0, dist_gamma=1.0, dist_tau=4.0)
    teacher = Recorder(1)
    d = DISTDistiller(Recorder(0), teacher, opt)
    _, terms = d.forward_train(small_batch())
    assert list(terms) == ["cls"] == list(d.loss_terms()) and teacher.calls == 0


def test_logit_standardization_applies_to_both_rows():
    opt = SimpleNamespace(gamma=None, alpha=0.5, beta=None, kd_T=2, dist_beta=1.0, dist_gamma=1.0, dist_tau=4.0,
                          logit_stand=True)
    student, teacher = Recorder(0), Recorder(1)
    d = DISTDistiller(student, teacher, opt)
    assert d.describe_loss() == ("cls=1*CE + div=0.5*KL(T=2, logit-standardised) "
                                 "+ kd=2*DIST(beta=1, gamma=1, tau=4, logit-standardised)")
    batch = small_batch()
    _, terms = d.forward_train(batch)
    with torch.no_grad():
        zs, zt = standardize_logits(student(batch.images)), standardize_logits(teacher(batch.images))
    assert torch.allclose(terms["kd"], 2 * DISTLoss(1, 1, 4)(zs, zt))
    assert torch.allclose(terms["div"], 0.5 * d.criterion_div(zs, zt))


def test_folder_tags_name_the_ablations():
    assert DISTDistiller.folder_tags(parse()) == []
    tags = DISTDistiller.folder_tags(parse("--dist_tau", "1", "--dist_gamma", "0"))
    assert tags == ["tau:1.0", "intra:0.0"]
    assert DISTDistiller.folder_tags(SimpleNamespace(dist_beta=1.0, dist_gamma=1.0, dist_tau=4.0,
                                                     logit_stand=True)) == ["ls"]


@pytest.mark.parametrize("flags, match", [
    (("--dist_tau", "0"), "--dist_tau"), (("--dist_tau", "nan"), "--dist_tau"), (("--dist_beta", "-1"), "--dist_beta"),
    (("--dist_gamma", "-0.5"), "--dist_gamma"), (("--kd_T", "0"), "--kd_T")])
def test_bad_settings_are_usage_errors(flags, match):
    with pytest.raises(UsageError, match=match) as e:
        parse(*flags)
    assert "\n" not in str(e.value)


# -- end to end -----------------------------------------------------------------------------
def run_one_epoch(teacher, data, save, *extra):
    train_student.main(student_args(teacher, data, save, "dist", *extra))
    runs = os.listdir(save / "student_model")
    assert len(runs) == 1
    run = save / "student_model" / runs[0]
    rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
    assert rows and all(torch.isfinite(torch.tensor([r["train_loss"], r["test_loss"]])).all() for r in rows)
    return runs[0], rows, json.load(open(run / "run.json"))


@pytest.mark.slow
def test_dist_trains_end_to_end(teacher_ckpt, tiny_cifar, tmp_path, capsys):
    name, rows, info = run_one_epoch(teacher_ckpt, tiny_cifar, tmp_path)
    out = capsys.readouterr().out
    assert "with DIST: loss = cls=1*CE + kd=2*DIST(beta=1, gamma=1, tau=4)" in out
    assert name == "S:resnet8_T:resnet8_cifar100_dist_r:1.0_a:0.0_b:2.0_1"
    assert "loss_cls" in rows[-1] and "loss_kd" in rows[-1]
    settings = info["identity"]["settings"]
    assert (settings["dist_beta"], settings["dist_gamma"], settings["dist_tau"]) == (1.0, 1.0, 4.0)


@pytest.mark.slow
def test_dist_with_logit_standardization_end_to_end(teacher_ckpt, tiny_cifar, tmp_path, capsys):
    name, rows, info = run_one_epoch(teacher_ckpt, tiny_cifar, tmp_path, "--logit_stand")
    assert "logit-standardised" in capsys.readouterr().out
    assert name == "S:resnet8_T:resnet8_cifar100_dist_r:1.0_a:0.0_b:2.0_ls_1"
    assert info["identity"]["settings"]["logit_stand"] is True

