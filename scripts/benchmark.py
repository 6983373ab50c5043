"""Speed harness: real training steps of one distillation method on CIFAR-100-shaped data.

    python scripts/benchmark.py --distill crd --model_t resnet56 --model_s resnet20 \
        --steps 20 --warmup 5 --device cpu --threads 2 --json

What runs is what train_student.py runs: the options come from its own parser (so
every default is the real one; unknown flags such as `-b 0.8` or `--nce_k 4096` pass
through to it), the loaders from `dataset.make_loaders`, the distiller from the method
registry (`--distill` takes any name or alias in `distiller_zoo.METHODS`, so a new method
file is benchmarkable as it is), the optimizer from `helper.trainer.make_optimizer`, and
the steps from `helper.loops.train_epoch` itself, fed a loader cut to the first N batches
of an epoch. The teacher has random weights (no checkpoint needed) and the data are
uniform uint8 noise of CIFAR-100's size: speed does not depend on the pixel values.

Reported: ms/step and images/s of the training step (data path included), the time of an
epoch and the projection for the whole run (epochs x (train + test evaluation), plus a
forward-only first epoch when the method has one, plus its pre-training stage estimated
from a few of its real steps: the stage itself is skipped), peak memory, the data path
alone (device augmentation vs the DataLoader path, images per CPU-second), and for a
method that needs contrast indices the negative sampling and its memory-bank criterion
alone, plus library kernels such as the Sinkhorn plan when a step calls them. `--levers`
adds micro-benchmarks of the teacher forward (no_grad / inference_mode / bf16 /
channels_last) and of SGD (foreach vs fused). On CUDA the host syncs of a few steps are
counted. On the CPU glibc's malloc is tuned as the training scripts tune it
(`util.malloc`; `--no_malloc_tuning` keeps the defaults). With --json the last line of
stdout is one JSON object with everything.

Noise: with --repeats R the training steps are timed R times (median and min reported;
the projection uses the median) and every other timing is the fastest of R windows.

The code lives in scripts/bench/ (one module per responsibility); this file is the entry
point and keeps the names the tests and older callers import from it.
"""
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from scripts.bench.data import (CIFAR100_TEST_SIZE, CIFAR100_TRAIN_SIZE, NUM_CLASSES, FirstSteps,  # noqa: E402,F401
                                synthetic_cifar100)
from scripts.bench.options import build_parser, parse_args, training_options  # noqa: E402,F401
from scripts.bench.report import fmt_duration, json_line  # noqa: E402,F401
from scripts.bench.run import run_benchmark  # noqa: E402,F401
from scripts.bench.steps import project_run  # noqa: E402,F401


def main(argv=None):
    args, opt = parse_args(argv)
    report = run_benchmark(args, opt, log=lambda line: print(line, flush=True))
    if args.json:
        print(json_line(report), flush=True)
    return report


if __name__ == "__main__":
    from helper.trainer import run_guarded
    run_guarded(lambda: main())
