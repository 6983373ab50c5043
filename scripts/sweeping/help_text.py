"""The help of both sweeps: the shell scripts' comment blocks, with the pairs, teachers and
the methods' flags filled in from the code."""
import re
import textwrap

from scripts.sweeping.config import ConfigError
from scripts.sweeping.runs import ALL_PAIRS, TEACHERS, load_methods, method_flags

COMMON_HELP = """\
#   TRIALS        trials per {per}, run as --trial 0 .. TRIALS-1 (default: 1)
{pairs_var}#   GPUS          comma list of GPU ids (default: 0); every run sees exactly one of them
#                 through CUDA_VISIBLE_DEVICES (GPUS_PER_RUN of them with GPUS_PER_RUN > 1)
#   JOBS_PER_GPU  runs at the same time on each GPU (group) (default: 1)
#   GPUS_PER_RUN  GPUs of one run (default: 1); > 1 starts each run under torchrun
#                 (python -m torch.distributed.run --standalone --nproc_per_node N), the
#                 GPUS split into groups of N
{save_t_var}#   SAVE_DIR      --save_dir of the runs (default: ./save)
#   LOG_DIR       one <run>.log per run, plus <run>.done markers (default: $SAVE_DIR/logs)
#   EXTRA_ARGS    appended to every command, split on spaces
#                 (e.g. "--epochs 1 --data_folder /data --device cpu")
#   PYTHON        interpreter of the runs (default: python); the sweep itself runs under
#                 SWEEP_PYTHON (default: python3, else python)
#   DRY_RUN=1     print one command per run (stdout) and run nothing
#   FORCE=1       run again even the runs that already finished
#
# Relative paths are relative to the repository root (the runs start there).
#
# Finished runs are skipped: when a command exits 0 its arguments are written to
# LOG_DIR/<run>.done; a later sweep skips the run when that marker records the same
# arguments. With other arguments (e.g. another --epochs in EXTRA_ARGS) the run is
# started again with --resume auto and {script} decides: it continues or
# trains a fresh run, or refuses in one line naming the flags that differ from the run
# folder's (exit 2, reported as REFUSED). Failed or interrupted runs have no marker and
# run again with --resume auto, continuing from their last latest.pth (FORCE=1 passes
# --overwrite instead and trains from scratch).
#
# Ctrl-C (or SIGTERM) stops the sweep: no new run starts, each running one gets one
# SIGINT, saves its latest.pth and stops; the sweep waits for them and exits 130.
# Running the same command again continues them. A second Ctrl-C makes the runs give up
# at once (their last finished epoch is kept).
"""

DISTILL_HELP = """\
# Distil every teacher -> student pair of the CIFAR-100 benchmark (PACKD by default).
#
# Usage:  sh scripts/run_distill.sh          (run the sweep; = python scripts/sweep.py distill)
#         sh scripts/run_distill.sh -h       (this help)
#
{pair_list}
#
# Configuration (environment variables):
#   METHODS       methods to run, space or comma separated (default: packd). Any
#                 --distill name of distiller_zoo, or name+variant for one of the class's
#                 sweep_variants (kd+ls, dkd+ls: --logit_stand); each gets the loss weights
#                 its class uses for the pair (default_weights, or its per-pair recipe) as
#                 -r/-a/-b and its sweep_args:
{methods}
""" + COMMON_HELP + """\
#
# TEACHER_LAYOUT (default: packd) orders the released layouts. Teacher checkpoint of
# model T, first that exists:
#   $SAVE_T/T_cifar100_lr_0.05_decay_0.0005_trial_0/ckpt_epoch_240.pth   (PACKD's save_t)
#   $SAVE_T/T_vanilla/ckpt_epoch_240.pth                               (RepDistiller's archive)
#   (TEACHER_LAYOUT=repdistiller: these two the other way round)
#   {{$SAVE_T,$SAVE_DIR}}/models/T_cifar100_lr_*_decay_*_trial_0/T_last.pth  (run_vanilla.sh,
#       only when its summary.json says it finished), else ckpt_epoch_240.pth there
# The file used for each teacher and its recorded test accuracy are printed (stderr).
# A missing teacher is reported on stderr with the paths looked at; its runs are
# skipped, the other runs go on, and the sweep exits with status 2 at the end.
#
# Exit status: 0 all runs finished (or were skipped as finished), 1 a run failed or was
# refused, 2 bad configuration or a missing teacher, 130 interrupted.
"""

VANILLA_HELP = """\
# Train the teachers (plain cross-entropy) of the CIFAR-100 benchmark.
#
# Usage:  sh scripts/run_vanilla.sh [MODEL ...]   (the teachers, plus any models named;
#                                                  = python scripts/sweep.py vanilla [MODEL ...])
#         sh scripts/run_vanilla.sh -h            (this help)
#         e.g. sh scripts/run_vanilla.sh vgg8     (also trains the vgg8 baseline)
#
# Teachers: {teachers}. Each run writes
# $SAVE_DIR/models/<model>_cifar100_lr_<lr>_decay_<wd>_trial_<trial>/, where
# run_distill.sh looks for teachers (trial 0).
#
# Configuration (environment variables):
#   MODELS        replaces the teacher list (MODELS= with only command-line models)
""" + COMMON_HELP + """\
#
# Exit status: 0 all runs finished (or were skipped as finished), 1 a run failed or was
# refused, 2 bad configuration, 130 interrupted.
"""


def help_comment(text):
    """The help as the shell scripts printed it: their comment block without the '# '."""
    return "\n".join(re.sub(r"^# ?", "", line) for line in text.splitlines()) + "\n"


def distill_help():
    """The distill sweep's help; the method list and weights come from the registry."""
    try:
        entries = [f"{name} {' '.join(method_flags(cls))}" for name, cls in load_methods().items()]
    except ConfigError as e:
        entries = [f"(the list could not be loaded: {e})"]
    lines = [""]
    for entry in entries:
        if lines[-1] and len(lines[-1]) + 3 + len(entry) > 66:
            lines.append("")
        lines[-1] = f"{lines[-1]} | {entry}" if lines[-1] else entry
    return help_comment(DISTILL_HELP.format(
        pair_list=textwrap.fill(" ".join(ALL_PAIRS), width=88, initial_indent="# Pairs (teacher:student): ",
                                subsequent_indent="#   ", break_on_hyphens=False),
        methods="\n".join(f"#                   {line}" for line in lines),
        per="pair and method", script="train_student.py",
        pairs_var="#   PAIRS         subset of pairs, e.g. resnet56:resnet20,vgg13:vgg8 (default: all 12)\n",
        save_t_var="#   SAVE_T        folder of the teacher checkpoints (default: ./save_t)\n"))


def vanilla_help():
    return help_comment(VANILLA_HELP.format(teachers=" ".join(TEACHERS), per="model", script="train_teacher.py",
                                            pairs_var="", save_t_var=""))
