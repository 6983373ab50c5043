#!/bin/sh
# Few-shot distillation: PACKD trained on a class-balanced part of CIFAR-100 (the PACKD authors'
# code/scripts/run_few_shot.sh): resnet56 -> resnet20, --distill PACKDCONLoss -a 1 --alpha_aug 1
# -b 0.8 --mixup_num 3 --dataset cifar100, with --few-ratio 0.25, 0.5 and 0.70 run as --trial 0, 1
# and 2 (their loop index), everything else at train_student.py's defaults (240 epochs, lr 0.05).
# The subset is the authors' own images (train_student.py's --few-ratio).
#
# Usage:  sh scripts/run_few_shot.sh          (train the runs one after another)
#         sh scripts/run_few_shot.sh -h       (this help)
#
# Configuration (environment variables):
#   PAIRS          teacher:student pairs, separated by spaces or commas (default: resnet56:resnet20)
#   FEW_RATIOS     fractions of the training set kept (default: "0.25 0.5 0.70")
#   TRIALS         trials per ratio, run as --trial 0 .. TRIALS-1 (default: unset, the authors'
#                  pairing: the i-th ratio runs once, as --trial i)
#   SAVE_T         where teachers are looked for, as run_distill.sh (default: ./save_t; the authors'
#                  save_t/models/<T>_cifar100_lr_0.05_decay_0.0005_trial_0/ckpt_epoch_240.pth is found)
#   TEACHER_LAYOUT packd (default) or repdistiller: which released layout wins, as run_distill.sh
#   PATH_T         one teacher checkpoint for every pair (skips the lookup)
#   SAVE_DIR       --save_dir of the runs (default: ./save)
#   LOG_DIR        logs, <T>_<S>/packd_few_<ratio>_trial_<t>.log (default: $SAVE_DIR/logs/few_shot; the
#                  authors wrote log_PACKD_fewshot_mixnum/)
#   EXTRA_ARGS     more flags for train_student.py (e.g. --device cuda:1)
#   PYTHON         the interpreter (default: python3, else python)
#   DRY_RUN=1      print one train_student.py command per run, run nothing
#
# Every command carries --resume auto: an interrupted run continues, a finished one is reported.
# Relative paths are relative to the repository root (the script runs from there).
# Exit status: 0 all runs finished (or DRY_RUN), 1 a run failed or a teacher was not found, 2 bad usage.
set -u

# Usage handling, errors and the dry-run / logged-run helpers are shared with the other scripts.
. "$(dirname "$0")/lib/common.sh" || exit 2
check_args "$@"
enter_repo_root
find_python
PAIRS=$(printf '%s' "${PAIRS:-resnet56:resnet20}" | tr ',' ' ')
FEW_RATIOS=$(printf '%s' "${FEW_RATIOS:-0.25 0.5 0.70}" | tr ',' ' ')
TRIALS=${TRIALS:-}
SAVE_T=${SAVE_T:-./save_t}
TEACHER_LAYOUT=${TEACHER_LAYOUT:-packd}
PATH_T=${PATH_T:-}
SAVE_DIR=${SAVE_DIR:-./save}
LOG_DIR=${LOG_DIR:-$SAVE_DIR/logs/few_shot}
EXTRA_ARGS=${EXTRA_ARGS:-}
DRY_RUN=${DRY_RUN:-0}

case $TRIALS in
    '') ;;
    *[!0-9]* | 0) usage_error "TRIALS must be a positive whole number, got '$TRIALS'" ;;
esac
# shellcheck disable=SC2086  # words
set -- $FEW_RATIOS
[ $# -gt 0 ] || usage_error "FEW_RATIOS is empty"
for ratio in "$@"; do
    case $ratio in
        *[!0-9.]* | *.*.* | . | '') usage_error "FEW_RATIOS takes fractions like 0.25, got '$ratio'" ;;
    esac
done
for pair in $PAIRS; do
    case $pair in
        ?*:?*) ;;
        *) usage_error "PAIRS takes teacher:student pairs, got '$pair'" ;;
    esac
done

find_teacher() {  # the checkpoint run_distill.sh would use for teacher $1, or a one-line error (exit 1/2)
    "$PY" - "$1" "$SAVE_T" "$SAVE_DIR" "$TEACHER_LAYOUT" <<'EOF'
import sys
from helper.teacher import find_teacher, teacher_search_places
from util.errors import UsageError
model, save_t, save_dir, layout = sys.argv[1:5]
try:
    path = find_teacher(model, save_t, save_dir, layout)
    places = teacher_search_places(model, save_t, save_dir, layout)
except UsageError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
if path is None:
    print(f"error: no checkpoint of teacher {model}; looked at: {'; '.join(places)}; fetch the released "
          f"teachers (sh scripts/fetch_teachers.sh), train it (sh scripts/run_vanilla.sh) or set PATH_T",
          file=sys.stderr)
    sys.exit(1)
print(path)
EOF
}

failed=0
runs=0
for pair in $PAIRS; do
    teacher=${pair%%:*}
    student=${pair#*:}
    if [ -n "$PATH_T" ]; then
        path_t=$PATH_T
    else
        path_t=$(find_teacher "$teacher")
        rc=$?
        [ "$rc" = 2 ] && exit 2
        if [ "$rc" != 0 ]; then
            failed=$((failed + 1))
            continue
        fi
    fi
    echo "teacher $teacher: $path_t"
    i=0
    for ratio in $FEW_RATIOS; do
        if [ -n "$TRIALS" ]; then trials=$(seq 0 $((TRIALS - 1))); else trials=$i; fi
        for trial in $trials; do
            set -- train_student.py --dataset cifar100 --path_t "$path_t" --distill PACKDCONLoss \
                --model_s "$student" --save_dir "$SAVE_DIR" -a 1 --alpha_aug 1 -b 0.8 --mixup_num 3 \
                --few-ratio "$ratio" --trial "$trial" --resume auto
            runs=$((runs + 1))
            if [ "$DRY_RUN" = 1 ]; then
                show_command "$@"
                continue
            fi
            run_logged "$LOG_DIR/${teacher}_${student}/packd_few_${ratio}_trial_${trial}.log" \
                "$teacher -> $student, --few-ratio $ratio --trial $trial" "$@" || failed=$((failed + 1))
        done
        i=$((i + 1))
    done
done
[ "$DRY_RUN" = 1 ] && echo "dry run: $runs run(s)"
[ "$failed" = 0 ] || die "$failed run(s) failed or had no teacher"
exit 0
