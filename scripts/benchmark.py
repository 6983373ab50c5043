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

ImageNet: `--dataset imagenet` times the same on JPEGs (scripts/bench/imagenet.py), read as
`train_student.py --dataset imagenet` reads them: from an ImageNet-layout --data_folder, or
from a generated set of --image_size JPEGs (375x500 by default; --n_data, --n_test and
--generated_classes size it, by default to hold every timed window) written once into a
temporary folder and deleted (every line and field says it is generated, never ImageNet).
Models resnet34_imagenet -> resnet18_imagenet by default (1000 classes), --loader torch, dali
or auto (train_student.py's default), the run projected for ImageNet-1k's 1,281,167 images
and 100 epochs; the data path alone: the training loader, the DataLoader path at each
--data_workers count and DALI at as many threads (a line says why when it is skipped).

    python scripts/benchmark.py --dataset imagenet --data_only --loader torch --num_workers 2 \
        --data_workers 0,2 --batch_size 64 --steps 20 --warmup 3 --repeats 3 --device cpu --threads 1

Several processes: `torchrun --nproc_per_node N scripts/benchmark.py ...` (or `python -m
torch.distributed.run --standalone ...`) times the same step as `torchrun ... train_student.py`:
--batch_size is the global batch, each rank takes its slice, the step is wrapped in DDP as
the Trainer wraps it, and every rank times the same windows (a barrier before and after
each). Rank 0 alone prints and writes the JSON: ms_per_step / images_per_s are the whole
run's (a window lasts as long as its slowest rank), plus world_size, ms_per_step_ranks,
aggregate_images_per_s, images_per_s_per_process and, given --baseline_images_per_s (one
process's images/s of the same row, e.g. from a 1-process run), scaling_efficiency =
aggregate / (N x baseline). One process reports the same keys (world_size 1).

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
    if args.json and report.get("rank", 0) == 0:  # under torchrun rank 0 alone reports
        print(json_line(report), flush=True)
    return report


if __name__ == "__main__":
    from helper.trainer import run_guarded
    run_guarded(lambda: main())
