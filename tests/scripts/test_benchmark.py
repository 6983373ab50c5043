"""scripts/benchmark.py: a tiny CPU run per memory-bank family (kd, crd, packd) through the
command line, a method class registered at runtime benchmarked in-process (nothing in the
benchmark names a method), plus the projection arithmetic and the input checks."""
import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO_ROOT, "scripts", "benchmark.py")
# resnet8 both sides, 256 images, batch 16, 32 negatives: a few seconds per method. One
# thread: the CPU is shared, and oversubscribed OpenMP threads make timings erratic.
TINY = ["--model_t", "resnet8", "--model_s", "resnet8", "--n_data", "256", "--n_test", "64",
        "--batch_size", "16", "--nce_k", "32", "--steps", "2", "--warmup", "1", "--device", "cpu",
        "--threads", "1", "--data_workers", "0"]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("benchmark_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return load_benchmark()


CLI_METHODS = ("kd", "crd", "packd")


@pytest.fixture(scope="module")
def cli_runs():
    """The three command-line runs, started together (each single-threaded) to save wall time."""
    procs = {m: subprocess.Popen([sys.executable, SCRIPT, "--distill", m, "--json", *TINY], cwd=REPO_ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for m in CLI_METHODS}
    results = {}
    try:
        for m, proc in procs.items():
            out, err = proc.communicate(timeout=120)
            results[m] = (proc.returncode, out, err)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    return results


def positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.slow
@pytest.mark.parametrize("method", CLI_METHODS)
def test_cli_json_last_line(cli_runs, method):
    returncode, stdout, stderr = cli_runs[method]
    assert returncode == 0, stderr[-2000:]
    lines = stdout.strip().splitlines()
    assert len(lines) > 1, "human-readable lines come before the JSON"
    report = json.loads(lines[-1])
    assert report["method"] == method
    for key in ("ms_per_step", "images_per_s", "epoch_s", "projected_run_s", "projected_run_with_pretrain_s",
                "peak_memory_bytes"):
        assert positive(report[key]), (key, report[key])
    assert report["steps"] == 2 and report["steps_per_epoch"] == math.ceil(256 / 16)
    assert report["device"] == "cpu" and report["device_name"] and report["torch_version"] == torch.__version__
    assert {"amp", "teacher_bf16", "channels_last", "compile", "loader"} <= set(report["options"])
    assert report["options"]["loader"] == "device" and report["options"]["amp"] is False
    assert report["options"]["teacher_bf16"] is False
    # ms/step and images/s describe the same measurement
    assert report["images_per_s"] == pytest.approx(16 * 1000.0 / report["ms_per_step"])
    # one process reports the torchrun keys too: a world of 1, no efficiency without a baseline
    assert report["world_size"] == 1 and report["rank"] == 0 and report["nodes"] == 1
    assert report["global_batch_size"] == report["batch_size_per_process"] == 16
    assert report["ms_per_step_ranks"] == [report["ms_per_step"]]
    assert report["aggregate_images_per_s"] == report["images_per_s"] == report["images_per_s_per_process"]
    assert report["scaling_efficiency"] is None and report["baseline_images_per_s"] is None
    assert report["epoch_s"] == pytest.approx(report["ms_per_step"] / 1000.0 * 16)
    assert positive(report["evaluation"]["epoch_s"])
    data = report["data_path"]
    for row in ("device_plain", "torch_workers_0"):
        assert positive(data[row]["images_per_s"]) and positive(data[row]["images_per_cpu_s"])
    assert positive(data["device_vs_dataloader_per_core"])
    if method in ("crd", "packd"):
        assert positive(data["device_method"]["images_per_s"])
        assert positive(report["negative_sampling"]["ms_per_batch"])
        assert positive(report["criterion"]["ms_per_batch"])
        assert report["criterion"]["module"] == {"crd": "criterion_kd (CRDLoss)",
                                                 "packd": "criterion (PACKDLoss)"}[method]
    else:
        assert "negative_sampling" not in report and "criterion" not in report
    if method == "packd":
        assert report["views"] == 4
        assert positive(report["forward_only_ms_per_step"])
        assert positive(report["projection"]["forward_only_epoch_s"])
        assert report["pretrain"]["epochs"] == 60 and report["pretrain"]["skipped"] is True
        assert positive(report["pretrain"]["epoch_s_estimate"])
        assert report["projected_run_with_pretrain_s"] > report["projected_run_s"]
        assert positive(report["sinkhorn"]["ms_per_call"]) and report["sinkhorn"]["calls_per_step"] == 1
        assert report["sinkhorn"]["iterations"] >= 1
    else:
        assert report["projection"]["forward_only_epoch_s"] == 0
        assert "sinkhorn" not in report
    assert report["malloc"]["applied"] is None or report["malloc"]["applied"]["M_TRIM_THRESHOLD"] > 0
    assert any("pre-training stage skipped" in n for n in report["notes"]) == (method == "packd")


def test_project_run_arithmetic(bench):
    p = bench.project_run(0.01, 782, 240, eval_epoch_s=0.5)
    assert p["train_epoch_s"] == pytest.approx(7.82)
    assert p["total_s"] == pytest.approx(240 * (7.82 + 0.5))
    p = bench.project_run(0.01, 782, 240, eval_epoch_s=0.5, forward_only_step_s=0.004, pretrain_epoch_s=2.0,
                          pretrain_epochs=60)
    assert p["forward_only_epoch_s"] == pytest.approx(0.004 * 782 + 0.5)
    assert p["total_without_pretrain_s"] == pytest.approx(240 * 8.32 + 3.628)
    assert p["total_s"] == pytest.approx(p["total_without_pretrain_s"] + 120.0)


def test_scaling_fields_arithmetic():
    from scripts.bench.run import scaling_fields
    out = scaling_fields(3000.0, 4, baseline=1000.0)
    assert out["aggregate_images_per_s"] == 3000.0 and out["images_per_s_per_process"] == 750.0
    assert out["scaling_efficiency"] == pytest.approx(0.75) and out["baseline_images_per_s"] == 1000.0
    assert scaling_fields(500.0, 1)["scaling_efficiency"] is None


def test_first_steps_cuts_an_epoch(bench):
    from dataset import DeviceLoader
    images = torch.zeros(50, 3, 32, 32, dtype=torch.uint8)
    loader = DeviceLoader(images, torch.arange(50) % 10, 8)
    cut = bench.FirstSteps(loader, 3)
    assert len(cut) == 3 and len(list(cut)) == 3 and len(list(cut.iterate(1))) == 2
    assert len(bench.FirstSteps(loader, 100)) == len(loader) == 7


def test_synthetic_data_has_cifar_shape(bench):
    data = bench.synthetic_cifar100(300, 100)
    x, y = data["train"]
    assert x.shape == (300, 3, 32, 32) and x.dtype == torch.uint8
    assert y.dtype == torch.int64 and torch.bincount(y).tolist() == [3] * 100
    assert data["test"][0].shape == (100, 3, 32, 32)


def test_options_are_train_students(bench):
    args, opt = bench.parse_args(["--distill", "crd", "-b", "0.5", "--amp"])
    assert (opt.model_t, opt.model_s, opt.nce_k, opt.batch_size, opt.n_data) == ("resnet56", "resnet20", 16384,
                                                                                  64, 50_000)
    assert opt.beta == 0.5 and opt.amp and opt.learning_rate == 0.05 and opt.nce_t == 0.07
    assert not opt.teacher_bf16
    _, opt = bench.parse_args(["--distill", "kd", "--teacher_bf16"])
    assert opt.teacher_bf16 and not opt.amp


@pytest.mark.parametrize("argv, message", [
    (["--distill", "packd", "--loader", "torch"], "--loader torch"),
    (["--model_t", "resnet999"], "--model_t"),
    (["--distill", "nope"], "--distill"),
    (["--levers", "--compile"], "without --compile"),
])
def test_bad_input_is_a_usage_error(bench, argv, message):
    from util.errors import UsageError
    with pytest.raises(UsageError, match=message):
        bench.parse_args(argv)


def test_data_only_in_process(bench):
    args, opt = bench.parse_args(["--distill", "crd", "--data_only", *TINY])
    threads = torch.get_num_threads()
    try:
        report = bench.run_benchmark(args, opt, log=lambda text: None)
    finally:
        torch.set_num_threads(threads)
    assert positive(report["ms_per_step"]) and positive(report["images_per_s"])
    assert "device_method" in report["data_path"] and "criterion" not in report


def test_distill_takes_an_alias(bench):
    _, opt = bench.parse_args(["--distill", "PACKDCONLoss"])
    assert opt.distill == "packd"


def run_in_process(bench, argv):
    args, opt = bench.parse_args(argv)
    threads = torch.get_num_threads()
    lines = []
    try:
        report = bench.run_benchmark(args, opt, log=lines.append)
    finally:
        torch.set_num_threads(threads)
    return report, lines


# -- a method the benchmark has never heard of ---------------------------------------------
class TinyBank(nn.Module):
    """A memory bank scored at the batch's contrast indices (what CRD-like criteria do)."""

    def __init__(self, n_data, dim):
        super().__init__()
        self.embed = nn.Linear(dim, 8)
        self.register_buffer("memory", F.normalize(torch.randn(n_data, 8), dim=1))

    def forward(self, features, contrast_index):
        scores = (F.normalize(self.embed(features), dim=1) @ self.memory.t()).gather(1, contrast_index)
        return (torch.logsumexp(scores, dim=1) - scores[:, 0]).mean()


def make_fake_method():
    from dataset.batch import CONTRAST_INDEX, INDEX
    from distiller_zoo.base import Distiller

    class FakeMethod(Distiller):
        """Registered at runtime: its own flag, a criterion on contrast indices, a
        pre-training stage of --fake_stage_epochs epochs and a forward-only first epoch."""
        name = "fake_bank"
        needs = frozenset({INDEX, CONTRAST_INDEX})
        default_weights = {"gamma": 1.0, "alpha": 0.0, "beta": 0.5}
        forward_only_first_epoch = True

        @classmethod
        def add_arguments(cls, parser):
            parser.add_argument("--fake_stage_epochs", type=int, default=3)

        def __init__(self, student, teacher, opt):
            super().__init__(student, teacher, opt)
            self.bank = TinyBank(opt.n_data, 100)
            self.stage_passes = 0

        def forward_train(self, batch):
            logits = self.student(batch.images)
            return logits, {"cls": self.gamma * F.cross_entropy(logits, batch.labels),
                            "kd": self.beta * self.bank(logits, batch.contrast_index)}

        def pretrain(self, loader, opt, device, log=print):
            sgd = torch.optim.SGD(self.bank.parameters(), lr=0.01)
            for _ in range(opt.fake_stage_epochs):
                self.stage_passes += 1
                for batch in loader:
                    with torch.no_grad():
                        logits = self.student(batch.images)
                    loss = self.bank(logits, batch.contrast_index)
                    sgd.zero_grad()
                    loss.backward()
                    sgd.step()

    return FakeMethod


@pytest.fixture
def fake_method(monkeypatch):
    import distiller_zoo
    cls = make_fake_method()
    monkeypatch.setattr(distiller_zoo, "METHODS", {**distiller_zoo.METHODS, cls.name: cls})
    return cls


def test_a_method_registered_at_runtime_is_benchmarked(bench, fake_method):
    report, lines = run_in_process(bench, ["--distill", "fake_bank", *TINY, "--skip_data_path", "--eval_steps", "1",
                                           "--fake_stage_epochs", "4"])
    assert report["method"] == "fake_bank" and report["steps"] == 2
    for key in ("ms_per_step", "epoch_s", "projected_run_s", "forward_only_ms_per_step"):
        assert positive(report[key]), key
    # the stage ran with the real options: its epochs are the passes it made over its loader
    assert report["pretrain"]["epochs"] == 4 and report["pretrain"]["steps_timed"] == 2
    assert positive(report["pretrain"]["epoch_s_estimate"])
    assert report["projected_run_with_pretrain_s"] > report["projected_run_s"]
    # the module that consumed the contrast indices is timed alone, found without a name
    assert report["criterion"]["module"] == "bank (TinyBank)" and report["criterion"]["rows"] == 16
    assert report["criterion"]["negatives"] == 32 and report["criterion"]["backward"] is True
    assert positive(report["negative_sampling"]["ms_per_batch"])
    assert any(line.startswith("forward-only step (fake_bank's first epoch)") for line in lines)
    from util.malloc import _glibc
    if _glibc() is not None:
        assert report["malloc"]["applied"]["M_TRIM_THRESHOLD"] > 0


def test_no_malloc_tuning_keeps_the_defaults(bench, fake_method):
    report, lines = run_in_process(bench, ["--distill", "fake_bank", *TINY, "--skip_data_path", "--eval_steps", "0",
                                           "--pretrain_steps", "0", "--no_malloc_tuning"])
    assert report["malloc"] == {"applied": None, "why": "--no_malloc_tuning"}
    assert "malloc: glibc defaults (--no_malloc_tuning)" in lines
    assert report["pretrain"]["epochs"] is None  # --pretrain_steps 0: the stage is not run at all
    assert report["projected_run_with_pretrain_s"] == report["projected_run_s"]


def test_stage_loader_counts_passes_and_times_the_first(bench):
    from dataset import DeviceLoader
    from scripts.bench.steps import StageLoader
    from scripts.bench.timing import Stopwatch
    loader = DeviceLoader(torch.zeros(50, 3, 32, 32, dtype=torch.uint8), torch.arange(50) % 10, 8)
    stage = StageLoader(loader, warmup=2, steps=3, stopwatch=Stopwatch(torch.device("cpu")))
    sizes = [sum(1 for _ in stage) for _ in range(4)]
    assert sizes == [5, 1, 1, 1] and stage.passes == 4 and stage.timed_batches == 3
    assert stage.stopwatch.seconds is not None and stage.stopwatch.seconds >= 0


def test_busy_cores_never_exceed_the_machine():
    from scripts.bench.report import cores_text
    assert cores_text(1.5, machine=2) == "1.50 cores busy"
    assert cores_text(3.1, machine=2).startswith("all 2 cores busy")
