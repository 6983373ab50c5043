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

# Only the help above, the data set and the log name are this script's own; the probe loop is
# shared with the other eval_rep_*.sh (scripts/lib/eval_rep.sh).
. "$(dirname "$0")/lib/common.sh" || exit 2
. "$(dirname "$0")/lib/eval_rep.sh" || exit 2
check_args "$@"
probe_students TinyImageNet200 Tiny200
