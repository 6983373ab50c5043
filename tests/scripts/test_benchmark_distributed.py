"""scripts/benchmark.py under torchrun: 2 processes on the CPU (gloo), tiny sizes.

Each run goes through `python -m torch.distributed.run --standalone --nproc_per_node 2`, as
a user would start it; the runs are started together (one thread per process) to save
wall time. Rank 0 alone prints and writes the JSON line.
"""
import json
import math
import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO_ROOT, "scripts", "benchmark.py")
TIMEOUT_S = 180
BASELINE = 100.0  # --baseline_images_per_s given to the crd run
TINY = ["--model_t", "resnet8", "--model_s", "resnet8", "--n_data", "256", "--n_test", "32", "--batch_size", "16",
        "--steps", "2", "--warmup", "1", "--skip_data_path", "--eval_steps", "0", "--pretrain_steps", "0",
        "--nce_k", "16", "--device", "cpu", "--threads", "1", "--json"]
RUNS = {
    "kd": ["--distill", "kd", *TINY],
    "crd": ["--distill", "crd", *TINY, "--baseline_images_per_s", str(BASELINE)],
    "odd_batch": ["--distill", "kd", *TINY, "--batch_size", "15"],
}
pytestmark = pytest.mark.slow


def env():
    e = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_",
                                                                    "TORCHELASTIC_"))}
    e.update(OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    return e


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("bench_ddp")
    procs = {name: subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                     "--nproc_per_node", "2", SCRIPT, *argv], cwd=cwd, env=env(),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, argv in RUNS.items()}
    out = {}
    try:
        for name, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
            out[name] = (proc.returncode, stdout, stderr)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    return out


def positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.parametrize("method", ["kd", "crd"])
def test_two_processes_one_report_with_aggregate_throughput(runs, method):
    returncode, stdout, stderr = runs[method]
    assert returncode == 0, stdout[-2000:] + stderr[-3000:]
    reports = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert len(reports) == 1, "rank 0 alone writes the JSON line"
    assert stdout.count("training step:") == 1 and stdout.count("scaling:") == 1, "rank 0 alone prints"
    assert stdout.strip().splitlines()[-1].startswith("{"), "the JSON object is still the last line"
    report = reports[0]
    assert report["method"] == method and report["rank"] == 0
    assert report["world_size"] == 2 and report["nodes"] == 1
    assert report["global_batch_size"] == 16 and report["batch_size_per_process"] == 8
    assert len(report["ms_per_step_ranks"]) == 2 and all(positive(v) for v in report["ms_per_step_ranks"])
    # a window of the run lasts as long as its slowest rank
    assert report["ms_per_step"] == pytest.approx(max(report["ms_per_step_ranks"]))
    assert positive(report["aggregate_images_per_s"])
    assert report["aggregate_images_per_s"] == report["images_per_s"] == pytest.approx(16 * 1000.0
                                                                                        / report["ms_per_step"])
    assert report["images_per_s_per_process"] == pytest.approx(report["aggregate_images_per_s"] / 2)
    assert len(report["peak_memory_bytes_ranks"]) == 2
    # the old keys are unchanged (scripts/gpu_benchmark.sh reads them)
    for key in ("ms_per_step", "epoch_s", "projected_run_s", "projected_run_with_pretrain_s", "peak_memory_bytes"):
        assert positive(report[key]), key
    assert report["steps"] == 2 and report["steps_per_epoch"] == 256 // 16
    if method == "crd":
        assert report["baseline_images_per_s"] == BASELINE
        assert report["scaling_efficiency"] == pytest.approx(report["aggregate_images_per_s"] / (2 * BASELINE))
        # the criterion's memory update gathers over the ranks: timed alone on every rank, in step
        assert report["criterion"]["module"] == "criterion_kd (CRDLoss)" and report["criterion"]["rows"] == 8
        assert positive(report["negative_sampling"]["ms_per_batch"])
    else:
        assert report["scaling_efficiency"] is None and report["baseline_images_per_s"] is None


def test_a_global_batch_that_does_not_split_is_one_error(runs):
    returncode, stdout, stderr = runs["odd_batch"]
    out = stdout + stderr
    assert returncode != 0 and out.count("must divide evenly over 2 processes") == 1, out[-3000:]
    assert "exitcode  : 2" in out  # each worker exits 2 (a usage error), torchrun reports them
