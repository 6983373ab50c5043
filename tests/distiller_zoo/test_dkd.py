"""DKD and logit standardization (LS): the reference numbers, the recipe per pair, the method.

Loss cases from tests/fixtures/newer_methods.json (made with the authors' code, see
tests/fixtures/README.md); per-pair settings as transcribed from mdistiller's
configs/cifar100/dkd/*.yaml and the LS authors' logs; the method through the real loop.
"""
import json
import os

import pytest
import torch
import torch.nn.functional as F

import train_student
from distiller_zoo import METHODS
from distiller_zoo.base import Distiller
from distiller_zoo.DKD import DKDDistiller, dkd_loss
from distiller_zoo.KD import DistillKL, KDDistiller, standardize_logits
from scripts.sweep import ALL_PAIRS
from tests.reference import assert_stats, load_fixture, sin_input
from tests.test_train_student import student_args, teacher_ckpt  # noqa: F401  (fixture)
from util.errors import UsageError

FIXTURE = load_fixture("newer_methods")
CASES = FIXTURE["cases"]


def fixture_inputs():
    inputs = FIXTURE["inputs"]
    y_s = sin_input((8, 100), 0.11, 0) * inputs["scale"]
    y_t = sin_input((8, 100), 0.13, 1) * inputs["scale"]
    target = torch.tensor([(37 * i + 5) % 100 for i in range(8)])
    assert target.tolist() == inputs["targets"]
    return y_s, y_t, target


# -- the reference numbers ------------------------------------------------------------
@pytest.mark.parametrize("key, T, logit_stand", [("dkd_a1_b8_T4", 4.0, False), ("dkd_ls_a1_b8_T2", 2.0, True)])
def test_dkd_loss_reproduces_the_authors(key, T, logit_stand):
    y_s, y_t, target = fixture_inputs()
    y_s.requires_grad_(True)
    loss = dkd_loss(y_s, y_t, target, 1.0, 8.0, T, logit_stand=logit_stand)
    loss.backward()
    ref = CASES[key]
    assert loss.item() == pytest.approx(ref["loss"], rel=1e-5)
    assert len(ref["grads"]) == 1
    assert_stats(y_s.grad, ref["grads"][0], what=f"{key} grad y_s")


def test_kd_with_logit_standardization_reproduces_the_authors():
    y_s, y_t, _ = fixture_inputs()
    y_s.requires_grad_(True)
    y_t.requires_grad_(True)
    loss = DistillKL(2.0, logit_stand=True)(y_s, y_t)
    loss.backward()
    ref = CASES["kd_ls_T2"]
    assert loss.item() == pytest.approx(ref["loss"], rel=1e-5)
    for grad, stats, what in zip((y_s.grad, y_t.grad), ref["grads"], ("y_s", "y_t")):
        assert_stats(grad, stats, what=f"kd_ls_T2 grad {what}")


def test_distill_kl_keeps_its_default_behaviour():
    y_s, y_t, _ = fixture_inputs()
    plain = DistillKL(4)(y_s, y_t)
    assert DistillKL(4).logit_stand is False
    assert torch.equal(plain, DistillKL(4, logit_stand=False)(y_s, y_t))
    assert not torch.allclose(plain, DistillKL(4, logit_stand=True)(y_s, y_t))


def test_standardize_logits_is_a_z_score_per_row():
    z = sin_input((4, 100), 0.3, 0.2) * 7 + 3
    s = standardize_logits(z)
    assert torch.allclose(s.mean(1), torch.zeros(4), atol=1e-6)
    assert torch.allclose(s.std(1), torch.ones(4), atol=1e-5)  # unbiased std, as the LS authors
    assert torch.allclose(standardize_logits(z * 5 - 2), s, atol=1e-5)  # scale and shift free


def authors_dkd(y_s, y_t, target, alpha, beta, T):
    """The authors' formulation: KL of the summed (target, rest) probabilities, -1000 mask."""
    gt = torch.zeros_like(y_s).scatter_(1, target.unsqueeze(1), 1).bool()
    p_s, p_t = F.softmax(y_s / T, 1), F.softmax(y_t / T, 1)
    b_s = torch.stack([(p_s * gt).sum(1), (p_s * ~gt).sum(1)], 1)
    b_t = torch.stack([(p_t * gt).sum(1), (p_t * ~gt).sum(1)], 1)
    tckd = F.kl_div(torch.log(b_s), b_t, reduction="sum") * T ** 2 / len(target)
    nckd = F.kl_div(F.log_softmax(y_s / T - 1000.0 * gt, 1), F.softmax(y_t / T - 1000.0 * gt, 1),
                    reduction="sum") * T ** 2 / len(target)
    return alpha * tckd + beta * nckd


def test_dkd_loss_equals_the_authors_formulation_and_stays_finite_when_saturated():
    g = torch.Generator().manual_seed(0)
    y_s, y_t = torch.randn(16, 100, generator=g) * 4, torch.randn(16, 100, generator=g) * 4
    target = torch.randint(0, 100, (16,), generator=g)
    for alpha, beta, T in [(1.0, 8.0, 4.0), (2.0, 0.5, 1.0), (0.0, 1.0, 3.0)]:
        assert torch.allclose(dkd_loss(y_s, y_t, target, alpha, beta, T), authors_dkd(y_s, y_t, target, alpha, beta, T),
                              rtol=1e-5, atol=1e-6)
    # a student that puts all its mass on the target: the authors' log(0) is -inf there
    sat = torch.zeros(2, 100)
    sat[:, 3] = 500.0
    target = torch.tensor([3, 3])
    assert not torch.isfinite(authors_dkd(sat, y_t[:2], target, 1.0, 8.0, 1.0))
    assert torch.isfinite(dkd_loss(sat, y_t[:2], target, 1.0, 8.0, 1.0))


def test_dkd_loss_of_bf16_logits_is_computed_in_float32():
    y_s, y_t, target = fixture_inputs()
    loss = dkd_loss(y_s.bfloat16(), y_t.bfloat16(), target, 1.0, 8.0, 4.0)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(CASES["dkd_a1_b8_T4"]["loss"], rel=2e-2)


def test_logit_standardization_of_bf16_logits_is_computed_in_float32():
    y_s, y_t, _ = fixture_inputs()
    assert standardize_logits(y_s.bfloat16()).dtype == torch.float32
    loss = DistillKL(2.0, logit_stand=True)(y_s.bfloat16(), y_t.bfloat16())
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(CASES["kd_ls_T2"]["loss"], rel=5e-2)


# -- recipe per pair ------------------------------------------------------------------
# (dkd_beta) from mdistiller configs/cifar100/dkd/*.yaml (no BETA line: cfg.py's 8; ResNet50->vgg8
# has no file); LS: (T, weight, BETA) from logs/DKD/dkd,<T>,<S>,<temp>,<weight>[,<beta>].txt and
# (T, weight) from logs/KD/kd,<T>,<S>,<temp>,<weight>.txt; pairs without a log: 2, 9.
DKD_BETA = {"wrn_40_2:wrn_16_2": 6, "wrn_40_2:wrn_40_1": 6, "resnet56:resnet20": 2, "resnet110:resnet32": 2,
            "resnet32x4:resnet8x4": 8, "vgg13:vgg8": 6, "vgg13:MobileNetV2": 6, "ResNet50:MobileNetV2": 8,
            "ResNet50:vgg8": 8, "resnet32x4:ShuffleV1": 8, "resnet32x4:ShuffleV2": 8, "wrn_40_2:ShuffleV1": 8}
LS_DKD = {"wrn_40_2:wrn_16_2": (2, 12, 2), "wrn_40_2:wrn_40_1": (2, 12, 2), "resnet56:resnet20": (3, 12, 2),
          "resnet110:resnet32": (2, 15, 2), "resnet32x4:resnet8x4": (2, 9, 8), "vgg13:vgg8": (2, 15, 2),
          "vgg13:MobileNetV2": (3, 9, 2), "ResNet50:MobileNetV2": (2, 15, 2), "ResNet50:vgg8": (2, 9, 8),
          "resnet32x4:ShuffleV1": (2, 9, 8), "resnet32x4:ShuffleV2": (2, 9, 8), "wrn_40_2:ShuffleV1": (2, 9, 8)}
LS_KD = {"wrn_40_2:wrn_16_2": (2, 9), "wrn_40_2:wrn_40_1": (2, 9), "resnet56:resnet20": (2, 9),
         "resnet110:resnet32": (2, 9), "resnet32x4:resnet8x4": (2, 9), "vgg13:vgg8": (3, 9),
         "vgg13:MobileNetV2": (3, 9), "ResNet50:MobileNetV2": (3, 1), "ResNet50:vgg8": (2, 9),
         "resnet32x4:ShuffleV1": (2, 9), "resnet32x4:ShuffleV2": (2, 9), "wrn_40_2:ShuffleV1": (2, 9)}


def resolved(pair, method, *extra):
    """Options as train_student.py has them once the teacher is known (before the weights)."""
    model_t, model_s = pair.split(":")
    opt = train_student.parse_args(["--path_t", "x.pth", "--distill", method, "--model_s", model_s, *extra])
    opt.model_t = model_t
    METHODS[method].resolve_pair_settings(opt)
    return opt


def test_the_tables_cover_the_twelve_benchmark_pairs():
    assert set(DKD_BETA) == set(LS_DKD) == set(LS_KD) == set(ALL_PAIRS)


@pytest.mark.parametrize("pair", ALL_PAIRS)
def test_dkd_settings_per_pair(pair):
    opt = resolved(pair, "dkd")
    assert (opt.dkd_alpha, opt.dkd_beta, opt.dkd_T, opt.dkd_warmup) == (1.0, DKD_BETA[pair], 4.0, 20)
    assert opt.gamma is None and opt.alpha is None and opt.beta in (None, 1.0)  # the class's default_weights
    assert opt.kd_T == 4


@pytest.mark.parametrize("pair", ALL_PAIRS)
def test_dkd_with_logit_standardization_settings_per_pair(pair):
    T, weight, beta = LS_DKD[pair]
    opt = resolved(pair, "dkd", "--logit_stand")
    assert (opt.dkd_alpha, opt.dkd_beta, opt.dkd_T) == (1.0, beta, T)
    assert opt.beta == weight  # -b multiplies ALPHA and BETA, as the LS authors' --kd-weight
    assert opt.gamma is None and opt.alpha is None


@pytest.mark.parametrize("pair", ALL_PAIRS)
def test_kd_with_logit_standardization_settings_per_pair(pair):
    T, weight = LS_KD[pair]
    opt = resolved(pair, "kd", "--logit_stand")
    assert (opt.kd_T, opt.alpha) == (T, weight)
    assert opt.gamma is None and opt.beta is None  # kd's 0.1 CE weight stays (LS cfg.py: CE_WEIGHT 0.1)
    assert resolved(pair, "kd").kd_T == 4 and resolved(pair, "kd").alpha is None


def test_values_given_by_the_user_are_kept():
    opt = resolved("resnet56:resnet20", "dkd", "--logit_stand", "--dkd_T", "5", "--dkd_beta", "1", "-b", "3",
                   "--dkd_alpha", "0.5")
    assert (opt.dkd_alpha, opt.dkd_beta, opt.dkd_T, opt.beta) == (0.5, 1.0, 5.0, 3.0)
    opt = resolved("vgg13:vgg8", "kd", "--logit_stand", "--kd_T", "4", "-a", "0.9")
    assert (opt.kd_T, opt.alpha) == (4.0, 0.9)


def test_other_pairs_take_the_documented_fallback():
    opt = resolved("resnet8:resnet8", "dkd")
    assert (opt.dkd_alpha, opt.dkd_beta, opt.dkd_T) == (1.0, 8.0, 4.0)
    opt = resolved("resnet8:resnet8", "dkd", "--logit_stand")
    assert (opt.dkd_alpha, opt.dkd_beta, opt.dkd_T, opt.beta) == (1.0, 8.0, 2.0, 9.0)
    opt = resolved("resnet8:resnet8", "kd", "--logit_stand")
    assert (opt.kd_T, opt.alpha) == (2.0, 9.0)


def test_kd_T_is_4_unless_logit_standardization_makes_it_a_per_pair_setting():
    parse = train_student.parse_args
    assert parse(["--path_t", "x", "--distill", "kd"]).kd_T == 4
    assert parse(["--path_t", "x", "--distill", "crd"]).kd_T == 4
    assert parse(["--path_t", "x", "--distill", "dkd"]).kd_T == 4
    # with --logit_stand it is set once the pair is known (dkd: 4, for its optional -a term)
    assert parse(["--path_t", "x", "--distill", "kd", "--logit_stand"]).kd_T is None
    assert parse(["--path_t", "x", "--distill", "dkd", "--logit_stand"]).kd_T is None
    assert resolved("resnet56:resnet20", "dkd", "--logit_stand").kd_T == 4
    assert parse(["--path_t", "x", "--distill", "kd", "--logit_stand", "--kd_T", "3"]).kd_T == 3.0


@pytest.mark.parametrize("flags, message", [
    (["--dkd_T", "0"], "--dkd_T"), (["--dkd_beta", "-1"], "--dkd_beta"), (["--dkd_alpha", "nan"], "--dkd_alpha"),
    (["--dkd_warmup", "-1"], "--dkd_warmup"), (["--kd_T", "-2"], "--kd_T")])
def test_bad_dkd_settings_are_usage_errors(flags, message):
    with pytest.raises(UsageError, match=message):
        train_student.parse_args(["--path_t", "x", "--distill", "dkd", *flags])


# -- --logit_stand on methods that are not logit methods ------------------------------------
NOT_LOGIT = sorted(n for n, c in METHODS.items() if issubclass(c, KDDistiller) and n not in ("kd", "dkd"))


@pytest.mark.parametrize("name", NOT_LOGIT)
def test_logit_stand_is_refused_by_the_feature_methods(name):
    with pytest.raises(UsageError, match=f"--logit_stand .*; {name} is not one: drop --logit_stand"):
        train_student.parse_args(["--path_t", "x", "--distill", name, "--logit_stand"])


def test_logit_stand_refusal_is_one_line_naming_the_logit_methods():
    with pytest.raises(UsageError) as e:
        train_student.parse_args(["--path_t", "x", "--distill", "crd", "--logit_stand"])
    text = str(e.value)
    assert "\n" not in text and "kd" in text and "dkd" in text and "crd is not one" in text


def test_only_logit_methods_have_the_ls_sweep_variant():
    assert Distiller.sweep_variants == {}
    for name in ("kd", "dkd"):
        assert METHODS[name].logit_method and METHODS[name].sweep_variants == {"ls": ("--logit_stand",)}
    for name in NOT_LOGIT:
        assert not METHODS[name].logit_method and METHODS[name].sweep_variants == {}


# -- the method -----------------------------------------------------------------------------
def build(*extra, model_s="resnet8", model_t="resnet8", method="dkd"):
    from models import model_dict
    opt = train_student.parse_args(["--path_t", "x", "--distill", method, "--model_s", model_s, *extra])
    opt.model_t = model_t
    torch.manual_seed(0)
    student = model_dict[model_s](num_classes=100)
    teacher = model_dict[model_t](num_classes=100)
    return METHODS[method](student, teacher, opt)


def batch_of(n=4):
    from dataset.batch import Batch
    g = torch.Generator().manual_seed(1)
    return Batch(images=torch.randn(n, 3, 32, 32, generator=g), labels=torch.arange(n))


def test_dkd_class_description():
    assert DKDDistiller.name == "dkd" and DKDDistiller.title() == "DKD"
    assert METHODS["crd"].table_order < DKDDistiller.table_order < METHODS["packd"].table_order
    assert DKDDistiller.default_weights == {"gamma": 1.0, "alpha": 0.0, "beta": 1.0}


def test_dkd_terms_and_their_description():
    d = build()  # resnet8 -> resnet8: the fallback recipe
    assert d.describe_loss() == "cls=1*CE + kd=1*min(epoch/20,1)*DKD(alpha=1*TCKD + beta=8*NCKD, T=4)"
    d = build("--logit_stand")
    assert d.describe_loss() == ("cls=1*CE + kd=9*min(epoch/20,1)*DKD(alpha=1*TCKD + beta=8*NCKD, T=2, "
                                 "logit-standardised)")
    d = build("-a", "0.5", "--dkd_warmup", "0")
    assert d.describe_loss() == "cls=1*CE + div=0.5*KL(T=4) + kd=1*DKD(alpha=1*TCKD + beta=8*NCKD, T=4)"
    d.train()
    d.set_epoch(1)
    logits, terms = d.forward_train(batch_of())
    assert list(terms) == ["cls", "div", "kd"] and logits.shape == (4, 100)
    with torch.no_grad():
        t = d.teacher(batch_of().images)
        assert torch.allclose(terms["div"], 0.5 * DistillKL(4)(logits, t))
        assert torch.allclose(terms["kd"], dkd_loss(logits, t, batch_of().labels, 1.0, 8.0, 4.0))
    assert list(build("-b", "0").forward_train(batch_of())[1]) == ["cls"]


def test_dkd_uses_the_pair_recipe_without_resolve_pair_settings():
    """The benchmark and tests build methods from parsed options alone: same settings as a run."""
    d = build("--logit_stand", model_s="resnet20", model_t="resnet56")
    assert (d.dkd_alpha, d.dkd_beta, d.temperature, d.beta, d.logit_stand) == (1.0, 2.0, 3.0, 12.0, True)
    k = build("--logit_stand", model_s="resnet20", model_t="resnet56", method="kd")
    assert (k.criterion_div.T, k.alpha, k.gamma, k.criterion_div.logit_stand) == (2.0, 9.0, 0.1, True)
    assert k.describe_loss() == "cls=0.1*CE + div=9*KL(T=2, logit-standardised)"


def test_warmup_is_linear_over_the_first_epochs_from_epoch_one():
    d = build()
    factors = {}
    for epoch in (1, 2, 10, 19, 20, 21, 240):
        d.set_epoch(epoch)
        factors[epoch] = d.warmup_factor()
    assert factors == {1: 0.05, 2: 0.1, 10: 0.5, 19: 0.95, 20: 1.0, 21: 1.0, 240: 1.0}
    d = build("--dkd_warmup", "5")
    d.set_epoch(2)
    assert d.warmup_factor() == pytest.approx(0.4)
    d = build("--dkd_warmup", "0")
    d.set_epoch(1)
    assert d.warmup_factor() == 1.0


def test_warmup_scales_the_returned_term():
    d = build()
    d.eval()  # the same logits at every call
    batch = batch_of()
    kd = {}
    for epoch in (1, 10, 20, 30):
        d.set_epoch(epoch)
        kd[epoch] = d.forward_train(batch)[1]["kd"]
    assert torch.allclose(kd[1] * 20, kd[20]) and torch.allclose(kd[10] * 2, kd[20])
    assert torch.equal(kd[20], kd[30])


def test_folder_tags():
    def tags(pair, *extra):
        return DKDDistiller.folder_tags(resolved(pair, "dkd", *extra))
    assert tags("resnet56:resnet20") == []
    assert tags("resnet56:resnet20", "--logit_stand") == ["ls"]
    assert tags("resnet56:resnet20", "--dkd_beta", "2") == []  # the recipe's value
    assert tags("resnet56:resnet20", "--dkd_beta", "8", "--dkd_T", "2", "--dkd_warmup", "10") == [
        "nckd:8.0", "temp:2.0", "warmup:10"]
    assert tags("resnet56:resnet20", "--logit_stand", "--dkd_T", "4") == ["temp:4.0", "ls"]
    assert KDDistiller.folder_tags(resolved("resnet56:resnet20", "kd", "--logit_stand")) == ["ls"]
    assert KDDistiller.folder_tags(resolved("resnet56:resnet20", "kd")) == []


# -- end to end -----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("method, extra, folder, settings, line", [
    ("dkd", (), "dkd_r:1.0_a:0.0_b:1.0_1", {"dkd_alpha": 1.0, "dkd_beta": 8.0, "dkd_T": 4.0, "logit_stand": False},
     "loss = cls=1*CE + kd=1*min(epoch/20,1)*DKD(alpha=1*TCKD + beta=8*NCKD, T=4)"),
    ("dkd", ("--logit_stand",), "dkd_r:1.0_a:0.0_b:9.0_ls_1",
     {"dkd_alpha": 1.0, "dkd_beta": 8.0, "dkd_T": 2.0, "logit_stand": True},
     "kd=9*min(epoch/20,1)*DKD(alpha=1*TCKD + beta=8*NCKD, T=2, logit-standardised)"),
    ("kd", ("--logit_stand",), "kd_r:0.1_a:9.0_b:0.0_ls_1", {"kd_T": 2.0, "logit_stand": True},
     "loss = cls=0.1*CE + div=9*KL(T=2, logit-standardised)"),
])
def test_runs_end_to_end(method, extra, folder, settings, line, teacher_ckpt, tiny_cifar, tmp_path,  # noqa: F811
                         capsys):
    train_student.main(student_args(teacher_ckpt, tiny_cifar, tmp_path, method, *extra))
    out = capsys.readouterr().out
    assert line in out
    runs = os.listdir(tmp_path / "student_model")
    assert runs == [f"S:resnet8_T:resnet8_cifar100_{folder}"]
    run = tmp_path / "student_model" / runs[0]
    info = json.load(open(run / "run.json"))
    assert {k: info["identity"]["settings"][k] for k in settings} == settings
    rows = [json.loads(row) for row in open(run / "metrics.jsonl")]
    assert rows and all(torch.isfinite(torch.tensor(r["train_loss"])) for r in rows)
    assert os.path.isfile(run / "summary.json")
