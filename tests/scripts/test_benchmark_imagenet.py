"""scripts/benchmark.py --dataset imagenet: tiny CPU runs through the command line on a generated
JPEG set (written into a temporary folder and deleted) and on an explicit ImageNet-layout
folder, the data path of both ImageNet paths, and the one-line errors."""
import importlib.util
import json
import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from scripts.bench.imagenet import TEMPORARY_PREFIX
from tests.scripts.test_benchmark import SCRIPT, positive

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT_S = 180
IMAGENET_TRAIN_SIZE = 1_281_167
# Small JPEGs, 2 classes, batch 4, one step: a few seconds per run. One thread: the CPU is shared.
SIZES = ["--image_size", "32x40", "--generated_classes", "2", "--n_data", "8", "--n_test", "4"]
TINY = ["--dataset", "imagenet", "--model_t", "resnet18_imagenet", "--model_s", "resnet18_imagenet",
        "--batch_size", "4", "--steps", "1", "--warmup", "1", "--device", "cpu", "--threads", "1",
        "--data_workers", "0", "--num_workers", "0", "--json"]
FOLDER_CLASSES, FOLDER_PER_CLASS = 3, 4


def dali_required():
    """CI sets KD_TESTS_REQUIRE_DALI=1 where it installed DALI: its absence is then a failure."""
    return os.environ.get("KD_TESTS_REQUIRE_DALI") == "1"


def dali_installed():
    try:
        return importlib.util.find_spec("nvidia.dali") is not None
    except ModuleNotFoundError:
        return False


@pytest.fixture
def dali():
    """DALI, or a skip naming how to install it; a failure where KD_TESTS_REQUIRE_DALI=1."""
    if dali_required():
        import nvidia.dali
        return nvidia.dali
    return pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed (pip install -r "
                                                     "requirements-imagenet.txt)")


def write_folder(root, marked):
    """An ImageNet-layout folder; without the generated set's marker it stands for a real one."""
    from dataset.imagenet import GENERATED_MARKER, write_generated_imagenet
    write_generated_imagenet(root, classes=FOLDER_CLASSES, per_class=FOLDER_PER_CLASS, val_per_class=2,
                             size=(32, 40))
    if not marked:
        os.remove(os.path.join(root, GENERATED_MARKER))
    return str(root)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The command-line runs, started together (each single-threaded) to save wall time; each
    with TMPDIR of its own, so that what it leaves there can be checked."""
    base = tmp_path_factory.mktemp("bench_imagenet")
    folder = write_folder(base / "folder", marked=False)
    argvs = {"kd": ["--distill", "kd", *SIZES], "packd": ["--distill", "packd", *SIZES],
             "folder": ["--distill", "crd", "--nce_k", "4", "--data_folder", folder]}
    if dali_installed() or dali_required():
        argvs["dali"] = ["--distill", "kd", "--loader", "dali", *SIZES, "--skip_data_path"]

    def run(name):
        tmpdir = base / f"tmp_{name}"
        tmpdir.mkdir()
        env = {**os.environ, "TMPDIR": str(tmpdir), "OMP_NUM_THREADS": "1", "XDG_CACHE_HOME": str(base / "cache")}
        proc = subprocess.run([sys.executable, SCRIPT, *TINY, *argvs[name]], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT_S)
        return {"returncode": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr, "folder": folder,
                "sets_left": [n for n in os.listdir(tmpdir) if n.startswith(TEMPORARY_PREFIX)]}

    with ThreadPoolExecutor(len(argvs)) as pool:
        return dict(zip(argvs, pool.map(run, argvs)))


def report_of(run):
    assert run["returncode"] == 0, run["stderr"][-3000:]
    lines = run["stdout"].strip().splitlines()
    assert len(lines) > 1, "human-readable lines come before the JSON"
    return json.loads(lines[-1]), lines[:-1]


def check_row(row):
    for key in ("images_per_s", "ms_per_batch", "images_per_cpu_s"):
        assert positive(row[key]), (key, row)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["kd", "packd"])
def test_generated_set_run(runs, method):
    report, lines = report_of(runs[method])
    assert report["method"] == method and report["dataset"] == "imagenet" and report["generated"] is True
    assert (report["model_t"], report["model_s"]) == ("resnet18_imagenet", "resnet18_imagenet")
    for key in ("ms_per_step", "images_per_s", "epoch_s", "projected_run_s"):
        assert positive(report[key]), key
    assert report["images_per_s"] == pytest.approx(4 * 1000.0 / report["ms_per_step"])
    # the generated set: as asked, written to a temporary folder that is gone afterwards
    assert (report["n_data"], report["n_test"], report["data_classes"]) == (8, 4, 2)
    assert report["generated_set_written"]["image_size"] == [32, 40] and report["data_folder"] is None
    assert runs[method]["sets_left"] == []
    # it stands in for ImageNet-1k: 1000-class models, 100 epochs of 1,281,167 images projected
    assert report["num_classes"] == 1000 and report["epochs"] == 100
    assert report["steps_per_epoch"] == math.ceil(IMAGENET_TRAIN_SIZE / 4)
    assert report["projected_for"]["train_images"] == IMAGENET_TRAIN_SIZE
    assert report["epoch_s"] == pytest.approx(report["ms_per_step"] / 1000.0 * math.ceil(IMAGENET_TRAIN_SIZE / 4))
    # generated data never passes for real data
    assert any(line.startswith("generated data: wrote 8 training + 4 validation JPEGs") for line in lines)
    assert any(line.startswith("data: ImageNet layout, GENERATED (not ImageNet)") for line in lines)
    assert any(note.startswith("GENERATED JPEGs") for note in report["notes"])
    assert report["loader_used"] == "torch" and report["options"]["loader"] == "auto"  # auto on the CPU: torch
    data = report["data_path"]
    for row in ("training_loader", "torch_workers_0"):
        check_row(data[row])
    assert data["torch_workers_0"]["num_workers"] == 0 and data["training_loader"]["loader"] == "torch"
    if method == "packd":  # PACKD's ImageNet form: mixed views from the DataLoader path, no memory bank
        assert report["views"] == 2 and data["training_loader"]["needs"] == ["views"]
        assert "criterion" not in report
    else:
        assert report["views"] == 1 and data["training_loader"]["needs"] == []


@pytest.mark.slow
def test_data_path_times_dali(runs, dali):
    report, lines = report_of(runs["kd"])
    row = report["data_path"].get("dali_threads_1")
    assert row is not None, report["data_path"].get("dali_skipped")
    check_row(row)
    assert row["threads"] == 1 and row["decoder"] == "CPU operators"
    assert any(line.startswith("data path: DALI (CPU operators), 1 thread:") for line in lines)


@pytest.mark.slow
def test_training_on_dali(runs, dali):
    report, _ = report_of(runs["dali"])
    assert report["loader_used"] == "dali" and report["options"]["loader"] == "dali"
    assert report["loader_workers"] == 1  # DALI runs at least one thread
    assert positive(report["images_per_s"]) and "data_path" not in report


@pytest.mark.slow
def test_explicit_folder_run(runs):
    run = runs["folder"]
    report, lines = report_of(run)
    n_train = FOLDER_CLASSES * FOLDER_PER_CLASS
    assert report["generated"] is False and report["data_folder"] == run["folder"]
    assert report["generated_set_written"] is None and run["sets_left"] == []
    # the folder's own classes and sizes, as train_student.py would read them
    assert report["num_classes"] == report["data_classes"] == FOLDER_CLASSES
    assert report["n_data"] == n_train and report["steps_per_epoch"] == math.ceil(n_train / 4)
    assert report["projected_for"] == {"train_images": n_train, "val_images": FOLDER_CLASSES * 2,
                                       "of": "this folder"}
    assert any(line.startswith(f"data: ImageNet layout, '{run['folder']}'") for line in lines)
    assert not any("GENERATED" in line or line.startswith("generated") for line in lines)
    # crd on ImageNet: negatives drawn on the device, the memory-bank criterion timed alone
    assert report["data_path"]["training_loader"]["needs"] == ["contrast_index", "index"]
    check_row(report["data_path"]["training_loader"])
    assert positive(report["criterion"]["ms_per_batch"]) and positive(report["negative_sampling"]["ms_per_batch"])


def test_defaults_are_the_imagenet_recipe():
    from scripts.bench.imagenet import DEFAULT_IMAGE_SIZE
    from scripts.bench.options import parse_args
    args, opt = parse_args(["--dataset", "imagenet", "--batch_size", "8", "--steps", "3", "--warmup", "2"])
    assert (opt.model_t, opt.model_s, opt.dataset, opt.loader) == ("resnet34_imagenet", "resnet18_imagenet",
                                                                   "imagenet", "auto")
    assert opt.epochs == 100 and opt.num_classes == 1000 and opt.batch_size == 8
    assert opt.num_workers == 8  # train_student.py's default for the DataLoader workers
    assert args.image_size == DEFAULT_IMAGE_SIZE == (375, 500)


def test_a_generated_set_holds_every_timed_window():
    from scripts.bench.imagenet import default_sizes
    from scripts.bench.options import parse_args
    args, _ = parse_args(["--dataset", "imagenet", "--batch_size", "8", "--steps", "3", "--warmup", "2",
                          "--data_workers", "0"])
    # the training steps after their warm-up, the data-path rows after theirs (8 workers: a wave of
    # 8 batches warms up, 8 are timed), and one evaluation
    assert default_sizes(args, num_workers=0) == (8 * (2 + 3), 8 * (1 + 3))
    assert default_sizes(args, num_workers=8) == (8 * (8 + 8), 8 * (1 + 3))
    argv = ["--dataset", "imagenet", "--batch_size", "4", "--steps", "10", "--warmup", "5", "--eval_steps", "2",
            "--data_workers", "0", "--data_only"]
    args, _ = parse_args(argv)
    assert default_sizes(args, num_workers=0) == (4 * (5 + 10), 4)  # a data-path row alone: no evaluation
    args, _ = parse_args([*argv, "--data_folder", "/nonexistent/kept", "--generate_data"])
    assert default_sizes(args, num_workers=0) == (4 * (5 + 10), 4 * (1 + 2))  # kept: sized for training too


def test_data_path_rows_of_workers_time_whole_waves():
    from scripts.bench.imagenet import data_path_timing
    from scripts.bench.options import parse_args
    args, _ = parse_args(["--dataset", "imagenet", "--steps", "20", "--warmup", "3"])
    assert data_path_timing(args, 0) == data_path_timing(args, 1) == (3, 20)
    assert data_path_timing(args, 2) == (4, 20)
    assert data_path_timing(args, 8) == (8, 24) and data_path_timing(args, 16) == (16, 32)


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "imagenet", "--loader", "device"], "--loader device holds CIFAR-100"),
    (["--dataset", "imagenet", "--data_folder", "/nonexistent/imagenet"], "does not exist"),
    (["--dataset", "imagenet", "--distill", "packd", "--loader", "dali"], "cannot build packd's extra views"),
    (["--dataset", "imagenet", "--model_t", "resnet56"], "unknown --model_t 'resnet56' for --dataset imagenet"),
    (["--loader", "auto"], "--loader auto is for --dataset imagenet"),
    (["--data_folder", "/tmp"], "--data_folder is for --dataset imagenet"),
    (["--image_size", "32x40"], "--image_size is for --dataset imagenet"),
    (["--loader", "dali"], "--loader dali reads JPEG folders"),
])
def test_bad_combinations_are_usage_errors(argv, message):
    from scripts.bench.options import parse_args
    from util.errors import UsageError
    with pytest.raises(UsageError, match=message):
        parse_args(argv)


def test_a_folder_without_train_is_a_usage_error(tmp_path):
    from scripts.bench.options import parse_args
    from util.errors import UsageError
    with pytest.raises(UsageError, match="train/ is missing"):
        parse_args(["--dataset", "imagenet", "--data_folder", str(tmp_path)])


@pytest.mark.parametrize("argv, first_words", [
    (["--dataset", "imagenet", "--data_folder", "/nonexistent/imagenet"], "error: --data_folder '/nonexistent"),
    (["--dataset", "imagenet", "--loader", "device"], "error: --loader device holds CIFAR-100"),
])
def test_errors_are_one_line_and_exit_2(argv, first_words):
    proc = subprocess.run([sys.executable, SCRIPT, *argv], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    assert proc.returncode == 2
    assert proc.stderr.startswith(first_words) and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_generated_set_written_in_parts_is_one_labelled_layout(tmp_path):
    from dataset.imagenet import is_generated, scan_imagenet
    from scripts.bench.imagenet import write_generated_set
    root = str(tmp_path / "set")
    written = write_generated_set(root, n_train=10, n_val=5, classes=5, size=(24, 32), processes=2)
    assert (written["train"], written["val"], written["classes"], written["processes"]) == (10, 5, 5, 2)
    classes, train, val = scan_imagenet(root, cache_dir=False)
    assert classes == [f"n{k:08d}" for k in range(5)] and is_generated(root)
    assert sorted(label for _, label in train) == [k for k in range(5) for _ in range(2)]
    assert sorted(label for _, label in val) == list(range(5))
    assert sorted(os.listdir(tmp_path)) == ["set"], "the parts were merged and removed"


class _Passes:
    """A loader whose pass p yields batches (p, 0), (p, 1), ... (`size` a pass)."""

    def __init__(self, size):
        self.size, self.passes, self.batch_size = size, 0, 1

    def __len__(self):
        return self.size

    def iterate(self, skip=0):
        self.passes += 1
        return iter([(self.passes, i) for i in range(skip, self.size)])


def test_continuing_loader_goes_on_with_the_pass():
    from scripts.bench.data import FirstSteps
    from scripts.bench.imagenet import ContinuingLoader
    loader = ContinuingLoader(_Passes(size=3))
    assert list(FirstSteps(loader, 2)) == [(1, 0), (1, 1)]
    assert list(FirstSteps(loader, 2)) == [(1, 2), (2, 0)]  # the rest of pass 1, then a new pass
    assert list(FirstSteps(loader, 1)) == [(2, 1)]
    assert len(loader) == 3 and loader.batch_size == 1 and loader.loader.passes == 2


def test_imagenet_models_have_the_classes_asked_for():
    from scripts.bench.options import parse_args
    from scripts.bench.steps import build_distiller
    _, opt = parse_args(["--dataset", "imagenet", "--model_t", "resnet18_imagenet", "--batch_size", "2",
                         "--device", "cpu"])
    opt.n_data = 8
    distiller, _ = build_distiller(opt, torch.device("cpu"))
    assert distiller.student(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)
