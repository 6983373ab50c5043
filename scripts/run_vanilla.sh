#!/bin/sh
# Train the teachers (plain cross-entropy) of the CIFAR-100 benchmark.
#
# Usage:  sh scripts/run_vanilla.sh [MODEL ...]   (the teachers, plus any models named)
#         sh scripts/run_vanilla.sh -h            (this help)
#         e.g. sh scripts/run_vanilla.sh vgg8     (also trains the vgg8 baseline)
#
# Teachers: wrn_40_2 resnet56 resnet110 resnet32x4 vgg13 ResNet50. Each run writes
# $SAVE_DIR/models/<model>_cifar100_lr_<lr>_decay_<wd>_trial_<trial>/, where
# run_distill.sh looks for teachers (trial 0).
#
# Configuration (environment variables):
#   MODELS        replaces the teacher list (MODELS= with only command-line models)
#   TRIALS        trials per model, run as --trial 0 .. TRIALS-1 (default: 1)
#   GPUS          comma list of GPU ids (default: 0); every run sees exactly one of them
#                 through CUDA_VISIBLE_DEVICES
#   JOBS_PER_GPU  runs at the same time on each GPU (default: 1)
#   SAVE_DIR      --save_dir of the runs (default: ./save)
#   LOG_DIR       one <run>.log per run, plus <run>.done markers (default: $SAVE_DIR/logs)
#   EXTRA_ARGS    appended to every command, split on spaces
#                 (e.g. "--epochs 1 --data_folder /data --device cpu")
#   PYTHON        interpreter (default: python)
#   DRY_RUN=1     print one command per run (stdout) and run nothing
#   FORCE=1       run again even the runs that already finished
#
# Relative paths are relative to the repository root (the script runs from there).
#
# Finished runs are skipped: when a command exits 0 its arguments are written to
# LOG_DIR/<run>.done; a later sweep skips the run when that marker records the same
# arguments (changing EXTRA_ARGS, e.g. --epochs, runs it again). Failed or interrupted
# runs have no marker and run again.
#
# Exit status: 0 all runs finished (or were skipped as finished), 1 a run failed,
# 2 bad configuration.
set -u

# The job pool, skip rule and logs are shared with run_distill.sh.
SWEEP_LIBRARY_ONLY=1
. "$(dirname "$0")/run_distill.sh"
unset SWEEP_LIBRARY_ONLY

TEACHERS="wrn_40_2 resnet56 resnet110 resnet32x4 vgg13 ResNet50"

for arg in "$@"; do
    case $arg in
        -h | --help)
            sweep_usage "$0"
            exit 0
            ;;
        -*)
            echo "error: unknown option '$arg'; see: sh $0 -h" >&2
            exit 2
            ;;
    esac
done

sweep_init
models=
for model in ${MODELS-$TEACHERS} "$@"; do
    case " $models " in
        *" $model "*) ;;
        *) models="$models $model" ;;
    esac
done
[ -n "$models" ] || sweep_error "no model to train; name some (sh $0 vgg8) or unset MODELS"

trial=0
while [ "$trial" -lt "$TRIALS" ]; do
    for model in $models; do
        # shellcheck disable=SC2086
        sweep_add "teacher_${model}_trial_${trial}" \
            train_teacher.py --model "$model" --trial "$trial" --save_dir "$SAVE_DIR" $sweep_resume $EXTRA_ARGS
    done
    trial=$((trial + 1))
done

sweep_run
