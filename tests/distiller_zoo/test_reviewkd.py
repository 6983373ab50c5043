"""ReviewKD (`--distill reviewkd`): reference numbers, the authors' layouts for the 12 benchmark
pairs, per-pair weights and the warm-up (one training step per pair through train_student.py:
tests/test_benchmark_pairs.py)."""
import math

import pytest
import torch

import train_student
from dataset.batch import Batch
from distiller_zoo import METHODS
from distiller_zoo.ReviewKD import ABF, PAIR_BETA, ReviewKDDistiller, hcl_loss
from models import model_dict
from tests.reference import apply_fill, assert_stats, load_fixture, sin_input
from util.errors import UsageError

CASES = load_fixture("newer_methods")["cases"]

# --- reference numbers (tests/fixtures/README.md, newer_methods.json) --------------------------


def test_hcl_matches_the_reference():
    ref = CASES["reviewkd_hcl"]
    f_s = [sin_input((2, 16, 8, 8), 0.03, 0.1), sin_input((2, 32, 4, 4), 0.05, 0.2),
           sin_input((2, 64, 1, 1), 0.07, 0.3)]
    f_t = [sin_input((2, 16, 8, 8), 0.031, 0.4), sin_input((2, 32, 4, 4), 0.051, 0.5),
           sin_input((2, 64, 1, 1), 0.071, 0.6)]
    inputs = [t.requires_grad_() for t in f_s + f_t]
    loss = hcl_loss(f_s, f_t)
    loss.backward()
    assert math.isclose(loss.item(), ref["loss"], rel_tol=1e-5)
    assert len(ref["grads"]) == len(inputs)
    for i, (t, g) in enumerate(zip(inputs, ref["grads"])):
        assert_stats(t.grad, g, what=f"grad {i}")


# case: (ABF(in, mid, out, fuse), x shape, y shape, s, shape, out_shape)
ABF_CASES = {
    "reviewkd_abf_fuse": ((32, 64, 48, True), (2, 32, 8, 8), (2, 64, 4, 4), 1, 8, 8),
    "reviewkd_abf_fuse_upsample": ((32, 64, 48, True), (2, 32, 4, 4), (2, 64, 2, 2), 2, 4, 8),
    "reviewkd_abf_last": ((64, 64, 64, False), (2, 64, 1, 1), None, 3, 1, 1),
}


@pytest.mark.parametrize("case", sorted(ABF_CASES))
def test_abf_matches_the_reference(case):
    ref = CASES[case]
    args, x_shape, y_shape, s, shape, out_shape = ABF_CASES[case]
    abf = ABF(*args)
    assert {k: list(v.shape) for k, v in abf.state_dict().items()} == ref["state_dict"]
    apply_fill(abf).eval()
    x = sin_input(x_shape, 0.031 + 0.01 * s, 0.2 * s).requires_grad_()
    y = None if y_shape is None else sin_input(y_shape, 0.047 + 0.01 * s, 0.3 + 0.2 * s).requires_grad_()
    out, res = abf(x, y, shape, out_shape)
    loss = out.sum() + res.sum()
    loss.backward()
    assert math.isclose(loss.item(), ref["loss"], rel_tol=1e-5, abs_tol=1e-5)
    for got, want in zip((out.sum().item(), res.sum().item()), ref["parts"]):
        assert math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-5)
    assert_stats(out, ref["out"], what="out")
    assert_stats(res, ref["res"], what="res")
    inputs = [x] if y is None else [x, y]
    assert len(ref["grads"]) == len(inputs)
    for i, (t, g) in enumerate(zip(inputs, ref["grads"])):
        assert_stats(t.grad, g, what=f"grad {i}")


def test_abf_initialisation_is_the_authors():
    """kaiming_uniform(a=1) on both convolutions: bound sqrt(6 / ((1 + a^2) fan_in)) = sqrt(3 / fan_in)."""
    torch.manual_seed(0)
    abf = ABF(64, 128, 96, fuse=True)
    for conv in (abf.conv1[0], abf.conv2[0]):
        w = conv.weight.detach()
        bound = math.sqrt(3.0 / w[0].numel())
        assert w.abs().max() <= bound
        assert w.abs().max() > 0.99 * bound
        assert math.isclose(w.std().item(), bound / math.sqrt(3), rel_tol=0.05)
    assert abf.conv1[0].bias is None and abf.conv2[0].bias is None and abf.att_conv[0].bias is not None
    assert ABF(8, 8, 8, fuse=False).att_conv is None
    with pytest.raises(ValueError, match="residual"):
        abf(torch.zeros(1, 64, 4, 4))


# --- the authors' configs for the 12 benchmark pairs -------------------------------------------
# (IN_CHANNELS, OUT_CHANNELS, SHAPES, OUT_SHAPES) as the authors' configs give them; in/out
# channels shallow to deep, shapes deep to shallow. Sources:
#   DVLAB: dvlab-research/ReviewKD, CIFAR-100/model/reviewkd.py, build_review_kd(model, teacher),
#          the branch named (the authors' code; out_shapes = shapes where the branch sets none);
#   MDIST: megvii-research/mdistiller, mdistiller/engine/cfg.py (REVIEWKD defaults) and
#          configs/cifar100/reviewkd.yaml;
#   GDKD:  ZaberKo/GDKD (an mdistiller fork holding the per-pair mdistiller YAMLs),
#          configs/cifar100/reviewkd/<file>.
DVLAB = "dvlab-research/ReviewKD CIFAR-100/model/reviewkd.py build_review_kd"
GDKD = "ZaberKo/GDKD configs/cifar100/reviewkd/"
AUTHORS = {
    "wrn_40_2:wrn_16_2": ([32, 64, 128, 128], [32, 64, 128, 128], [1, 8, 16, 32], [1, 8, 16, 32],
                          f"{DVLAB} 'wrn'; {GDKD}wrn40_2_wrn_16_2.yaml"),
    "wrn_40_2:wrn_40_1": ([16, 32, 64, 64], [32, 64, 128, 128], [1, 8, 16, 32], [1, 8, 16, 32],
                          f"{DVLAB} 'wrn'; {GDKD}wrn40_2_wrn_40_1.yaml"),
    # the 'resnet' branch lists SHAPES [1, 8, 16, 32, 32]: the fifth is never read by 4 ABFs
    "resnet56:resnet20": ([16, 32, 64, 64], [16, 32, 64, 64], [1, 8, 16, 32], [1, 8, 16, 32],
                          f"{DVLAB} 'resnet'; {GDKD}res56_res20.yaml"),
    "resnet110:resnet32": ([16, 32, 64, 64], [16, 32, 64, 64], [1, 8, 16, 32], [1, 8, 16, 32],
                           f"{DVLAB} 'resnet'; {GDKD}res110_res32.yaml"),
    "resnet32x4:resnet8x4": ([64, 128, 256, 256], [64, 128, 256, 256], [1, 8, 16, 32], [1, 8, 16, 32],
                             "megvii-research/mdistiller mdistiller/engine/cfg.py REVIEWKD defaults, "
                             f"configs/cifar100/reviewkd.yaml; {DVLAB} 'x4'"),
    "vgg13:vgg8": ([128, 256, 512, 512, 512], [128, 256, 512, 512, 512], [1, 4, 4, 8, 16], [1, 4, 4, 8, 16],
                   f"{DVLAB} 'vgg' (teacher not ResNet50); {GDKD}vgg13_vgg8.yaml"),
    "vgg13:MobileNetV2": ([12, 16, 48, 160, 1280], [128, 256, 512, 512, 512], [1, 2, 4, 8, 16],
                          [1, 4, 4, 8, 16], f"{DVLAB} 'mobile' (teacher not ResNet50); {GDKD}vgg13_mv2.yaml"),
    "ResNet50:MobileNetV2": ([12, 16, 48, 160, 1280], [256, 512, 1024, 2048, 2048], [1, 2, 4, 8, 16],
                             [1, 4, 8, 16, 32], f"{DVLAB} 'mobile' (teacher ResNet50); {GDKD}res50_mv2.yaml"),
    "ResNet50:vgg8": ([128, 256, 512, 512, 512], [256, 512, 1024, 2048, 2048], [1, 4, 4, 8, 16],
                      [1, 4, 8, 16, 32], f"{DVLAB} 'vgg' (teacher ResNet50); no YAML published"),
    "resnet32x4:ShuffleV1": ([240, 480, 960, 960], [64, 128, 256, 256], [1, 4, 8, 16], [1, 8, 16, 32],
                             f"{DVLAB} 'shufflev1' (teacher not wrn); {GDKD}res32x4_shuv1.yaml"),
    "resnet32x4:ShuffleV2": ([116, 232, 464, 1024], [64, 128, 256, 256], [1, 4, 8, 16], [1, 8, 16, 32],
                             f"{DVLAB} 'shufflev2'; {GDKD}res32x4_shuv2.yaml"),
    "wrn_40_2:ShuffleV1": ([240, 480, 960, 960], [32, 64, 128, 128], [1, 4, 8, 16], [1, 8, 16, 32],
                           f"{DVLAB} 'shufflev1' (teacher wrn); {GDKD}wrn40_2_shuv1.yaml"),
}
# The ReviewKD weight per pair: dvlab-research/ReviewKD CIFAR-100/script/reviewKD.sh (--kd-loss-weight),
# mdistiller configs/cifar100/reviewkd.yaml (REVIEWKD_WEIGHT 5.0 for resnet32x4 -> resnet8x4); the
# vgg/MobileNetV2 pairs have none published: mdistiller's default REVIEWKD_WEIGHT 1.0.
AUTHORS_BETA = {"wrn_40_2:wrn_16_2": 5.0, "wrn_40_2:wrn_40_1": 5.0, "wrn_40_2:ShuffleV1": 5.0,
                "resnet32x4:resnet8x4": 5.0, "resnet32x4:ShuffleV1": 5.0, "resnet32x4:ShuffleV2": 8.0,
                "resnet56:resnet20": 0.6, "resnet110:resnet32": 1.0, "vgg13:vgg8": 1.0,
                "vgg13:MobileNetV2": 1.0, "ResNet50:MobileNetV2": 1.0, "ResNet50:vgg8": 1.0}


# a cheap pair (teacher:student) for the tests of the step itself
SMALL = "resnet20:resnet8"


def make_opt(teacher="resnet8", student="resnet8", *extra):
    opt = train_student.parse_args(["--path_t", "unused.pth", "--distill", "reviewkd", "--model_s", student,
                                    "--device", "cpu", *extra])
    opt.model_t = teacher
    return opt


def build(pair, *extra):
    teacher, student = pair.split(":")
    torch.manual_seed(0)
    s, t = model_dict[student](num_classes=100), model_dict[teacher](num_classes=100)
    return ReviewKDDistiller(s, t, make_opt(teacher, student, *extra))


def test_the_pairs_are_the_benchmarks():
    from scripts.sweep import ALL_PAIRS
    assert sorted(AUTHORS) == sorted(ALL_PAIRS) == sorted(AUTHORS_BETA)


@pytest.mark.parametrize("pair", list(AUTHORS))
@pytest.mark.slow
def test_layout_is_the_authors(pair):
    """Channels and shapes derived from the real models equal the authors' config, the ABFs are
    built from them, and the chain's outputs have exactly the teacher targets' shapes."""
    in_ch, out_ch, shapes, out_shapes, source = AUTHORS[pair]
    d = build(pair)
    got = (d.in_channels, d.out_channels, d.shapes, d.out_shapes)
    assert got == (in_ch, out_ch, shapes, out_shapes), f"{pair}: {got} differs from {source}"
    mid = min(512, in_ch[-1])
    assert d.mid_channel == mid
    # abfs[0] is the deepest level (the authors' reversed ModuleList)
    for abf, c_in, c_out, k in zip(d.abfs, in_ch[::-1], out_ch[::-1], range(len(in_ch))):
        assert abf.conv1[0].in_channels == c_in and abf.conv1[0].out_channels == mid
        assert abf.conv2[0].in_channels == mid and abf.conv2[0].out_channels == c_out
        assert (abf.att_conv is not None) == (k > 0)
    d.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats_s, _ = d.student(x, is_feat=True)
        feats_t, _ = d.teacher(x, is_feat=True, preact=True)
        outs = d.review(feats_s)
    targets = [f if f.dim() == 4 else f[:, :, None, None] for f in feats_t[1:]]
    assert [tuple(o.shape) for o in outs] == [tuple(t.shape) for t in targets]
    assert [o.shape[-1] for o in outs] == out_shapes[::-1]


@pytest.mark.parametrize("pair", list(AUTHORS_BETA))
def test_pair_weights(pair):
    teacher, student = pair.split(":")
    opt = make_opt(teacher, student)
    assert opt.beta is None
    ReviewKDDistiller.resolve_pair_settings(opt)
    want = AUTHORS_BETA[pair]
    assert (opt.beta if opt.beta is not None else ReviewKDDistiller.default_weights["beta"]) == want
    assert PAIR_BETA.get((teacher, student), 1.0) == want
    given = make_opt(teacher, student, "-b", "2.5")
    ReviewKDDistiller.resolve_pair_settings(given)
    assert given.beta == 2.5  # the user's -b wins


def test_a_direct_build_takes_the_pair_weight():
    """Built without train_student.py's resolve_pair_settings (benchmark, tests): the same weight."""
    assert build("resnet32x4:ShuffleV2").beta == 8.0
    assert build("resnet32x4:ShuffleV2", "-b", "3").beta == 3.0
    assert build(SMALL).beta == 1.0


def test_defaults_and_description():
    cls = METHODS["reviewkd"]
    assert cls is ReviewKDDistiller and cls.title() == "ReviewKD"
    assert cls.default_weights == {"gamma": 1.0, "alpha": 0.0, "beta": 1.0}
    assert 160 < cls.table_order < 200
    opt = make_opt()
    ReviewKDDistiller.resolve_pair_settings(opt)  # resnet8 -> resnet8: no published weight
    assert opt.beta is None and opt.reviewkd_warmup == 20 and not opt.reviewkd_stu_preact
    assert cls.folder_tags(opt) == []
    assert cls.folder_tags(make_opt("resnet8", "resnet8", "--reviewkd_warmup", "5",
                                    "--reviewkd_stu_preact")) == ["wu:5", "spre"]
    d = build(SMALL, "-b", "5")
    assert list(d.loss_terms()) == ["cls", "kd"]
    assert d.describe_loss() == "cls=1*CE + kd=5*min(epoch/20,1)*ReviewKD(HCL)"
    d = build(SMALL, "-a", "1")
    assert list(d.loss_terms()) == ["cls", "div", "kd"]
    with pytest.raises(UsageError, match="--reviewkd_warmup"):
        make_opt("resnet8", "resnet8", "--reviewkd_warmup", "-1")


def batch_of(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(images=torch.randn(n, 3, 32, 32, generator=g), labels=torch.randint(0, 100, (n,), generator=g))


def test_warmup_is_linear_in_one_based_epochs():
    """mdistiller counts epochs from 1: the term weighs beta * min(epoch / 20, 1), 1/20 in epoch 1."""
    d = build(SMALL, "-b", "2")
    d.train()
    batch = batch_of(2)
    kd = {}
    for epoch in (1, 10, 20, 240):
        d.set_epoch(epoch)
        assert d.warmup_factor() == min(epoch / 20, 1.0)
        kd[epoch] = d.forward_train(batch)[1]["kd"].item()
    for epoch, value in kd.items():
        assert math.isclose(value, kd[20] * min(epoch / 20, 1.0), rel_tol=1e-5)
    d.warmup = 0.0  # --reviewkd_warmup 0: no warm-up
    assert d.warmup_factor() == 1.0
    d5 = build(SMALL, "--reviewkd_warmup", "5")
    d5.set_epoch(2)
    assert d5.warmup_factor() == 0.4


class Spy(torch.nn.Module):
    """Records the `preact` of each feature call of the wrapped model."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, []

    def forward(self, x, is_feat=False, preact=False):
        if is_feat:
            self.calls.append(preact)
        return self.model(x, is_feat=is_feat, preact=preact)


@pytest.mark.parametrize("stu_preact", [False, True])
def test_step_is_the_authors_loss(stu_preact):
    """kd = beta * warm-up * HCL(chain(student feats), teacher preact feats[1:] + pooled), by hand;
    the student's features post-activation unless --reviewkd_stu_preact, the teacher's pre-activation."""
    torch.manual_seed(0)
    student, teacher = Spy(model_dict["resnet8"](num_classes=100)), Spy(model_dict["resnet20"](num_classes=100))
    extra = ["--reviewkd_stu_preact"] if stu_preact else []
    d = ReviewKDDistiller(student, teacher, make_opt("resnet20", "resnet8", "-b", "5", *extra))
    d.train()
    d.set_epoch(4)
    student.calls.clear(), teacher.calls.clear()
    batch = batch_of()
    logits, terms = d.forward_train(batch)
    assert student.calls == [stu_preact] and teacher.calls == [True]
    assert list(terms) == ["cls", "kd"] and logits.shape == (4, 100)
    # by hand, in mdistiller's order
    with torch.no_grad():
        feats_s, logits_s = student.model(batch.images, is_feat=True, preact=stu_preact)
        feats_t, _ = teacher.model(batch.images, is_feat=True, preact=True)
        x = feats_s[:-1] + [feats_s[-1][:, :, None, None]]  # feats + [pooled_feat]
        x = x[::-1]  # zip below stops at the 4 ABFs: the stem feature is never used
        results = []
        out, res = d.abfs[0](x[0], out_shape=d.out_shapes[0])
        results.append(out)
        for f, abf, shape, out_shape in zip(x[1:], d.abfs[1:], d.shapes[1:], d.out_shapes[1:]):
            out, res = abf(f, res, shape, out_shape)
            results.insert(0, out)
        targets = feats_t[1:-1] + [feats_t[-1][:, :, None, None]]
        want = 5.0 * min(4 / 20, 1.0) * hcl_loss(results, targets)
        ce = torch.nn.functional.cross_entropy(logits_s, batch.labels)
    assert torch.allclose(terms["kd"], want, rtol=1e-4)
    assert torch.allclose(terms["cls"], ce, rtol=1e-5)


def test_abfs_train_with_the_student():
    d = build(SMALL)
    d.train()
    d.set_epoch(20)
    params = {id(p) for p in d.trainable_parameters()}
    abf_params = list(d.abfs.parameters())
    assert abf_params and all(id(p) in params for p in abf_params)
    assert not any(id(p) in params for p in d.teacher.parameters())
    before = [p.detach().clone() for p in abf_params]
    opt = torch.optim.SGD(d.trainable_parameters(), lr=0.1)
    _, terms = d.forward_train(batch_of())
    sum(terms.values()).backward()
    opt.step()
    assert all(p.grad is not None for p in abf_params)
    assert all(not torch.equal(a, b) for a, b in zip(before, abf_params) if a.dim() == 4)
    assert all(p.grad is None for p in d.teacher.parameters())


def test_beta_zero_needs_no_features():
    d = build(SMALL, "-b", "0")
    _, terms = d.forward_train(batch_of())
    assert list(terms) == ["cls"] == list(d.loss_terms())


def test_too_few_student_features_is_a_usage_error():
    class Short(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)

        def forward(self, x, is_feat=False, preact=False):
            f = self.conv(x)
            return [f, f.mean((2, 3))], f.mean((2, 3))

    with pytest.raises(UsageError, match="student gives 2 features"):
        ReviewKDDistiller(Short(), model_dict["resnet32x4"](num_classes=100), make_opt("resnet32x4", "resnet8"))


# End to end on each benchmark pair, with the other newer methods: tests/test_benchmark_pairs.py
