#!/bin/sh
# Representation transfer to Tiny-ImageNet-200: a linear classifier trained on the frozen pooled
# features of CIFAR-100 students, on 32x32 images (the PACKD authors'
# code/scripts/eval_rep_TinyImageNet200.sh, which runs their code/eval_rep_base.py; the recipe is
# eval_rep.py's defaults: 100 epochs, SGD lr 0.1 Nesterov, decay x0.1 after 30/60/90, batch 64,
# RandomResizedCrop(32) + flip, ImageNet normalisation).
#
# Usage:  sh scripts/eval_rep_TinyImageNet200.sh      (probe every student in $STUDENTS, one after another)
#         sh scripts/eval_rep_TinyImageNet200.sh -h   (this help)
#
# Configuration (environment variables):
#   STUDENTS     student checkpoints or run folders, separated by spaces; shell patterns are expanded;
#                a run folder means its <model>_best.pth, the file the authors probe
#                (default: $SAVE_DIR/student_model/S:resnet8x4_T:resnet32x4_cifar100_packd_*, the
#                authors' resnet32x4 -> resnet8x4 PACKD student, every trial found)
#   DATA_FOLDER  the set (wnids.txt, train/, val/) or a folder holding tiny-imagenet-200/ (default:
#                ./data; the official zip is downloaded when absent)
#   TRIAL        --trial of the probes, also their seed (default: 0, the authors' --manual_seed 0)
#   SAVE_DIR     where students are looked for and probes go ($SAVE_DIR/transfer/) (default: ./save)
#   LOG_DIR      one <student>_Tiny200.log per student (default: $SAVE_DIR/logs/transfer; the authors
#                wrote log_rep/)
#   EXTRA_ARGS   more flags for eval_rep.py (e.g. --device cuda:1, --checkpoint last)
#   PYTHON       the interpreter (default: python3, else python)
#   DRY_RUN=1    print one command per student, run nothing
#
# Relative paths are relative to the repository root (the script runs from there).
# A probe that already finished with the same settings is reported and not redone.
# Exit status: 0 every probe finished (or DRY_RUN), 1 a probe failed or a student was not found,
# 2 bad usage.
set -u

case ${1:-} in
    -h | --help)
        sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p;}' "$0"
        exit 0
        ;;
    '') ;;
    *)
        echo "error: unknown argument '$1'; configure by environment variables, see: sh $0 -h" >&2
        exit 2
        ;;
esac

cd "$(dirname "$0")/.." || { echo "error: cannot enter the repository root" >&2; exit 2; }
PY=${PYTHON:-$(command -v python3 || command -v python)}
[ -n "$PY" ] || { echo "error: no python on PATH; set PYTHON" >&2; exit 2; }
SAVE_DIR=${SAVE_DIR:-./save}
STUDENTS=${STUDENTS:-"$SAVE_DIR/student_model/S:resnet8x4_T:resnet32x4_cifar100_packd_*"}
DATA_FOLDER=${DATA_FOLDER:-./data}
TRIAL=${TRIAL:-0}
LOG_DIR=${LOG_DIR:-$SAVE_DIR/logs/transfer}
EXTRA_ARGS=${EXTRA_ARGS:-}
DRY_RUN=${DRY_RUN:-0}

quote() {  # one shell word, quoted when it needs to be
    case $1 in
        '' | *[!A-Za-z0-9_./:=,+@%-]*) printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")" ;;
        *) printf '%s' "$1" ;;
    esac
}

failed=0
ran=0
for student in $STUDENTS; do
    if [ ! -e "$student" ]; then
        echo "error: no student checkpoint or run folder at '$student' (STUDENTS)" >&2
        failed=$((failed + 1))
        continue
    fi
    set -- eval_rep.py --dataset TinyImageNet200 --data_folder "$DATA_FOLDER" --path_s "$student" \
        --trial "$TRIAL" --save_dir "$SAVE_DIR"
    if [ "$DRY_RUN" = 1 ]; then
        line=$(quote "$PY")
        for word in "$@"; do line="$line $(quote "$word")"; done
        echo "$line${EXTRA_ARGS:+ $EXTRA_ARGS}"
        ran=$((ran + 1))
        continue
    fi
    mkdir -p "$LOG_DIR" || exit 1
    name=$(basename "${student%/}")
    case $name in *.pth) name="$(basename "$(dirname "$student")")_${name%.pth}" ;; esac
    status=$(mktemp) || exit 1
    # shellcheck disable=SC2086  # EXTRA_ARGS are words
    { "$PY" "$@" $EXTRA_ARGS 2>&1; echo $? > "$status"; } | tee "$LOG_DIR/${name}_Tiny200.log"
    rc=$(cat "$status")
    rm -f "$status"
    ran=$((ran + 1))
    if [ "$rc" != 0 ]; then
        echo "FAILED (exit $rc): $student; log: $LOG_DIR/${name}_Tiny200.log" >&2
        failed=$((failed + 1))
    fi
done
[ "$DRY_RUN" = 1 ] && echo "dry run: $ran probe(s)"
[ "$failed" = 0 ] || { echo "error: $failed of the students failed or were not found" >&2; exit 1; }
exit 0
