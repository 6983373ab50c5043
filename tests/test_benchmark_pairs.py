"""The newer methods end to end on every benchmark pair: `train_student.py` distils each of the
12 students of the CIFAR-100 tables from its teacher with DKD, DIST, ReviewKD and logit
standardization (with kd, dkd and dist), one step each on generated data.

The models are what matters here: each pair has its own feature shapes (ReviewKD's ABF chain),
its own logits scale and its own per-pair recipe (DKD's beta, LS's temperature and weight,
ReviewKD's weight). The start-up line must show that pair's recipe, the loss terms must be
finite and the saved student must load back into its architecture.
"""
import json
import math
import os

import numpy as np
import pytest
import torch

import train_student
from models import model_dict
from scripts.sweep import ALL_PAIRS, TEACHERS
from tests.distiller_zoo.test_dkd import DKD_BETA, LS_DKD, LS_KD
from tests.distiller_zoo.test_reviewkd import AUTHORS_BETA

TRAIN_IMAGES = 16  # one step of this batch: BatchNorm needs a few images per channel, no more
TEST_IMAGES = 4


def startup_line(method, pair):
    """The part of the start-up loss line that carries the pair's recipe."""
    if method == "dkd":
        return f"kd=1*min(epoch/20,1)*DKD(alpha=1*TCKD + beta={DKD_BETA[pair]}*NCKD, T=4)"
    if method == "dkd+ls":
        T, weight, beta = LS_DKD[pair]
        return f"kd={weight}*min(epoch/20,1)*DKD(alpha=1*TCKD + beta={beta}*NCKD, T={T}, logit-standardised)"
    if method == "kd+ls":
        T, weight = LS_KD[pair]
        return f"cls=0.1*CE + div={weight}*KL(T={T}, logit-standardised)"
    if method == "dist":
        return "cls=1*CE + kd=2*DIST(beta=1, gamma=1, tau=4)"
    if method == "dist+ls":
        return "cls=1*CE + kd=2*DIST(beta=1, gamma=1, tau=4, logit-standardised)"
    if method == "reviewkd":
        return f"cls=1*CE + kd={AUTHORS_BETA[pair]:g}*min(epoch/20,1)*ReviewKD(HCL)"
    raise AssertionError(method)


# the method's own term: the one the recipe weighs
DISTILL_TERM = {"dkd": "kd", "dkd+ls": "kd", "kd+ls": "div", "dist": "kd", "dist+ls": "kd", "reviewkd": "kd"}


def test_the_cases_cover_the_sweep_pairs_and_teachers():
    assert sorted({pair.split(":")[0] for pair in ALL_PAIRS}) == sorted(TEACHERS)
    for method in DISTILL_TERM:
        for pair in ALL_PAIRS:
            assert startup_line(method, pair)


def random_teacher(name):
    """Random weights, BatchNorm statistics set from one batch of 16 random images: with the
    initial statistics (mean 0, var 1) the residual streams of a deep random ResNet grow block
    after block, and resnet110's pre-activation features overflow float32."""
    torch.manual_seed(0)
    model = model_dict[name](num_classes=100)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # cumulative average: after one batch, that batch's statistics
    model.train()
    with torch.no_grad():
        model(torch.randn(16, 3, 32, 32))
    return model.state_dict()


@pytest.fixture(scope="module")
def pair_data(tmp_path_factory):
    """A few generated images in the CIFAR-100 on-disk format, marked as generated."""
    from dataset.cifar import GENERATED_MARKER, write_cifar100
    folder = tmp_path_factory.mktemp("pairs_data")
    g = np.random.default_rng(0)
    train_x = g.integers(0, 256, size=(TRAIN_IMAGES, 3, 32, 32), dtype=np.uint8)
    test_x = g.integers(0, 256, size=(TEST_IMAGES, 3, 32, 32), dtype=np.uint8)
    root = write_cifar100(str(folder), train_x, np.arange(TRAIN_IMAGES), test_x, np.arange(TEST_IMAGES))
    open(os.path.join(root, GENERATED_MARKER), "w").close()
    return folder


@pytest.fixture(scope="module")
def teacher_files(tmp_path_factory):
    """One random-weight checkpoint per teacher architecture, in RepDistiller's folder layout
    (the folder name tells train_student.py the architecture), made on first use."""
    root = tmp_path_factory.mktemp("pair_teachers")
    made = {}

    def path_of(name):
        if name not in made:
            path = root / f"{name}_vanilla" / "ckpt_epoch_240.pth"
            path.parent.mkdir(parents=True)
            torch.save({"model": random_teacher(name)}, path)
            made[name] = path
        return made[name]
    return path_of


@pytest.mark.slow
@pytest.mark.parametrize("pair", ALL_PAIRS)
@pytest.mark.parametrize("method", list(DISTILL_TERM))
def test_train_student_runs_each_pair(method, pair, pair_data, teacher_files, tmp_path, capsys):
    teacher, student = pair.split(":")
    distill, _, variant = method.partition("+")
    save = tmp_path / "save"
    train_student.main(["--path_t", str(teacher_files(teacher)), "--model_s", student, "--distill", distill,
                        *(["--logit_stand"] if variant == "ls" else []), "--epochs", "1",
                        "--batch_size", str(TRAIN_IMAGES), "--data_folder", str(pair_data),
                        "--save_dir", str(save), "--device", "cpu", "--no_progress", "--no_tensorboard"])
    out = capsys.readouterr().out
    assert startup_line(method, pair) in out
    runs = os.listdir(save / "student_model")
    assert len(runs) == 1 and runs[0].startswith(f"S:{student}_T:{teacher}_cifar100_{distill}_r:")
    assert runs[0].endswith("_ls_1" if variant == "ls" else "_1")
    run = save / "student_model" / runs[0]
    settings = json.load(open(run / "run.json"))["identity"]["settings"]
    assert settings["logit_stand"] is (variant == "ls")
    rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
    term = f"loss_{DISTILL_TERM[method]}"
    assert len(rows) == 1 and {"loss_cls", term} <= set(rows[0])
    assert all(math.isfinite(rows[0][k]) for k in ("train_loss", "loss_cls", term, "test_loss"))
    assert rows[0][term] > 0
    assert os.path.isfile(run / "summary.json")
    ckpt = torch.load(run / f"{student}_last.pth", map_location="cpu", weights_only=True)
    model_dict[student](num_classes=100).load_state_dict(ckpt["model"])


# --- the whole zoo on every pair: one step, or a one-line refusal ------------------------------
# FSP and KDSVD compare same-width feature maps (RepDistiller's, N/A across widths in the CRD
# paper's tables): they refuse the pairs whose widths differ, before anything is written.
SAME_WIDTH_PAIRS = {"wrn_40_2:wrn_16_2", "resnet56:resnet20", "resnet110:resnet32", "resnet32x4:resnet8x4",
                    "vgg13:vgg8"}
SAME_WIDTH_METHODS = {"fsp", "kdsvd"}


@pytest.mark.slow
@pytest.mark.parametrize("pair", ALL_PAIRS)
def test_every_method_takes_a_step_on_the_pair_or_refuses_it_in_one_line(pair):
    """Each registered method, built as train_student.py builds it (its real loader: negatives,
    views), takes a forward, backward and optimizer step with finite terms on the pair's real
    models; the only refusals are the width rule's, one line naming it."""
    from dataset import make_loaders
    from distiller_zoo import METHODS
    from scripts.bench.data import synthetic_cifar100
    from scripts.bench.options import parse_args
    from scripts.bench.steps import build_distiller
    from util.errors import UsageError
    teacher, student = pair.split(":")
    device = torch.device("cpu")
    data = synthetic_cifar100(64, 8)
    refused = {}
    for name, method in sorted(METHODS.items()):
        _, opt = parse_args(["--distill", name, "--model_t", teacher, "--model_s", student, "--batch_size", "4",
                             "--nce_k", "16", "--n_data", "64", "--n_test", "8", "--device", "cpu"])
        torch.manual_seed(0)
        train_loader, _ = make_loaders(opt, data, device, method.needs_for(opt))
        opt.n_data, opt.steps_per_epoch = train_loader.num_samples, len(train_loader)
        try:
            distiller, optimizer = build_distiller(opt, device)
        except UsageError as e:
            refused[name] = str(e)
            continue
        distiller.train()
        distiller.set_epoch(2)
        _, terms = distiller.forward_train(next(iter(train_loader.iterate())))
        optimizer.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        optimizer.step()
        assert all(torch.isfinite(v) for v in terms.values()), (name, terms)
    want = set() if pair in SAME_WIDTH_PAIRS else SAME_WIDTH_METHODS
    assert set(refused) == want, refused
    for name, message in refused.items():
        assert "\n" not in message and "equal channel numbers" in message and "width" in message
