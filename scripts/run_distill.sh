#!/bin/sh
# Distil every teacher -> student pair of the CIFAR-100 benchmark (PACKD by default).
#
# Usage:  sh scripts/run_distill.sh          (run the sweep)
#         sh scripts/run_distill.sh -h       (this help)
#
# Pairs (teacher:student): wrn_40_2:wrn_16_2 wrn_40_2:wrn_40_1 resnet56:resnet20
#   resnet110:resnet32 resnet32x4:resnet8x4 vgg13:vgg8 vgg13:MobileNetV2
#   ResNet50:MobileNetV2 ResNet50:vgg8 resnet32x4:ShuffleV1 resnet32x4:ShuffleV2
#   wrn_40_2:ShuffleV1
#
# Configuration (environment variables):
#   METHODS       methods to run, space or comma separated (default: packd). Any of
#                 kd hint attention similarity correlation vid crd kdsvd fsp rkd pkt
#                 abound factor nst packd; each gets its usual loss weights:
#                   kd -r 0.1 -a 0.9 -b 0 | hint -a 0 -b 100 | attention -a 0 -b 1000
#                   similarity -a 0 -b 3000 | correlation -a 0 -b 0.02 | vid -a 0 -b 1
#                   crd -a 0 -b 0.8 | kdsvd -a 0 -b 1 | fsp -a 0 -b 50 | rkd -a 0 -b 1
#                   pkt -a 0 -b 30000 | abound -a 0 -b 1 | factor -a 0 -b 200
#                   nst -a 0 -b 50 | packd -r 1 -a 1 -b 0.8 --alpha_aug 1 --mixup_num 3
#   TRIALS        trials per pair and method, run as --trial 0 .. TRIALS-1 (default: 1)
#   PAIRS         subset of pairs, e.g. resnet56:resnet20,vgg13:vgg8 (default: all 12)
#   GPUS          comma list of GPU ids (default: 0); every run sees exactly one of them
#                 through CUDA_VISIBLE_DEVICES
#   JOBS_PER_GPU  runs at the same time on each GPU (default: 1)
#   SAVE_T        folder of the teacher checkpoints (default: ./save_t)
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
# runs have no marker and run again with --resume auto, so they continue from their
# last latest.pth (FORCE=1 passes --overwrite instead and trains from scratch).
#
# Teacher checkpoint of model T, first that exists:
#   $SAVE_T/T_vanilla/ckpt_epoch_240.pth                               (released archive)
#   $SAVE_T/T_cifar100_lr_0.05_decay_0.0005_trial_0/ckpt_epoch_240.pth   (PACKD scripts)
#   {$SAVE_T,$SAVE_DIR}/models/T_cifar100_lr_*_decay_*_trial_0/T_last.pth  (run_vanilla.sh,
#       only when its summary.json says it finished), else ckpt_epoch_240.pth there
# A missing teacher is reported on stderr with the paths looked at; its runs are
# skipped, the other runs go on, and the sweep exits with status 2 at the end.
#
# Exit status: 0 all runs finished (or were skipped as finished), 1 a run failed,
# 2 bad configuration or a missing teacher.
set -u

# --- sweep library: the job pool shared with run_vanilla.sh (which sources this file
# --- with SWEEP_LIBRARY_ONLY=1 and stops below the function definitions).

sweep_tab=$(printf '\t')

sweep_error() {
    printf 'error: %s\n' "$*" >&2
    exit 2
}

# Print the arguments as one line that `eval` splits back into the same words.
sweep_quote() {
    sweep_out=
    for sweep_word in "$@"; do
        case $sweep_word in
            '' | *[!A-Za-z0-9_./:=,+@%-]*)
                sweep_word="'$(printf '%s' "$sweep_word" | sed "s/'/'\\\\''/g")'" ;;
        esac
        sweep_out="${sweep_out:+$sweep_out }$sweep_word"
    done
    printf '%s\n' "$sweep_out"
}

sweep_is_count() {
    case $1 in '' | *[!0-9]* | 0*) return 1 ;; esac
}

# Print the leading comment block of script $1 (its usage text).
sweep_usage() {
    sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p;}' "$1"
}

# Read the shared configuration, go to the repository root, prepare the run queue.
sweep_init() {
    set -f  # EXTRA_ARGS, PYTHON and the lists are split on spaces, never globbed
    cd "$(dirname "$0")/.." || sweep_error "cannot enter the repository root"
    GPUS=${GPUS:-0}
    JOBS_PER_GPU=${JOBS_PER_GPU:-1}
    TRIALS=${TRIALS:-1}
    SAVE_DIR=${SAVE_DIR:-./save}
    LOG_DIR=${LOG_DIR:-$SAVE_DIR/logs}
    EXTRA_ARGS=${EXTRA_ARGS:-}
    PYTHON=${PYTHON:-python}
    DRY_RUN=${DRY_RUN:-0}
    FORCE=${FORCE:-0}
    # An interrupted run continues from its latest.pth; FORCE=1 trains finished runs again.
    if [ "$FORCE" = 1 ]; then sweep_resume="--overwrite"; else sweep_resume="--resume auto"; fi
    sweep_gpu_list=$(printf '%s' "$GPUS" | tr ',' ' ')
    [ -n "$(printf '%s' "$sweep_gpu_list" | tr -d ' ')" ] || sweep_error "GPUS must list at least one GPU id, e.g. GPUS=0,1"
    sweep_is_count "$JOBS_PER_GPU" || sweep_error "JOBS_PER_GPU must be a positive integer, got '$JOBS_PER_GPU'"
    sweep_is_count "$TRIALS" || sweep_error "TRIALS must be a positive integer, got '$TRIALS'"
    sweep_python_q=$(sweep_quote $PYTHON)
    sweep_skipped=0
    sweep_queued=0
    sweep_tmp=$(mktemp -d "${TMPDIR:-/tmp}/sweep.XXXXXX") || sweep_error "cannot create a temporary folder"
    trap 'rm -rf "$sweep_tmp"' EXIT
    : >"$sweep_tmp/queue"
    if [ "$DRY_RUN" != 1 ]; then
        mkdir -p "$LOG_DIR" || sweep_error "cannot create LOG_DIR '$LOG_DIR'"
    fi
}

# sweep_add NAME SCRIPT ARGS...: queue (or, with DRY_RUN=1, print) one run unless it
# already finished with the same arguments.
sweep_add() {
    sweep_name=$1
    shift
    sweep_args=$(sweep_quote "$@")
    sweep_marker="$LOG_DIR/$sweep_name.done"
    if [ "$FORCE" != 1 ] && [ -f "$sweep_marker" ]; then
        if [ "$(cat "$sweep_marker")" = "$sweep_args" ]; then
            echo "skip $sweep_name: finished (remove $sweep_marker or set FORCE=1 to run it again)" >&2
            sweep_skipped=$((sweep_skipped + 1))
            return 0
        fi
        echo "rerun $sweep_name: it finished with other arguments ($sweep_marker)" >&2
    fi
    if [ "$DRY_RUN" = 1 ]; then
        printf '%s %s\n' "$sweep_python_q" "$sweep_args"
    else
        printf '%s\t%s\n' "$sweep_name" "$sweep_args" >>"$sweep_tmp/queue"
    fi
    sweep_queued=$((sweep_queued + 1))
}

# One pool slot pinned to GPU $1: claims queued runs one at a time (mkdir is atomic,
# so each run goes to exactly one slot) until the queue is exhausted.
sweep_worker() {
    CUDA_VISIBLE_DEVICES=$1
    export CUDA_VISIBLE_DEVICES
    sweep_child=
    trap '[ -n "$sweep_child" ] && kill "$sweep_child" 2>/dev/null; exit 143' TERM
    sweep_index=0
    while IFS= read -r sweep_line; do
        sweep_index=$((sweep_index + 1))
        mkdir "$sweep_tmp/claim.$sweep_index" 2>/dev/null || continue
        sweep_name=${sweep_line%%"$sweep_tab"*}
        sweep_args=${sweep_line#*"$sweep_tab"}
        sweep_log="$LOG_DIR/$sweep_name.log"
        printf '==== %s GPU %s: %s %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "$1" \
            "$sweep_python_q" "$sweep_args" >>"$sweep_log"
        echo "[gpu $1] start $sweep_name (log: $sweep_log)"
        (eval "exec $sweep_python_q $sweep_args") </dev/null >>"$sweep_log" 2>&1 &
        sweep_child=$!
        wait "$sweep_child"
        sweep_rc=$?
        sweep_child=
        if [ "$sweep_rc" -eq 0 ]; then
            printf '%s\n' "$sweep_args" >"$LOG_DIR/$sweep_name.done"
            echo "[gpu $1] done  $sweep_name"
        else
            echo "$sweep_name" >>"$sweep_tmp/failed"
            echo "[gpu $1] FAILED $sweep_name (exit $sweep_rc), see $sweep_log" >&2
        fi
    done <"$sweep_tmp/queue"
}

sweep_stop() {
    trap - INT TERM HUP
    echo "interrupted: stopping the running jobs" >&2
    # shellcheck disable=SC2086
    kill $sweep_pids 2>/dev/null
    wait
    exit 130
}

# Run the queue on GPUS x JOBS_PER_GPU slots; returns 1 when a run failed.
sweep_run() {
    if [ "$DRY_RUN" = 1 ]; then
        echo "dry run: $sweep_queued runs, $sweep_skipped already finished" >&2
        return 0
    fi
    if [ "$sweep_queued" -eq 0 ]; then
        echo "nothing to run ($sweep_skipped already finished)"
        return 0
    fi
    sweep_pids=
    trap sweep_stop INT TERM HUP
    sweep_slots=0
    sweep_round=0
    while [ "$sweep_round" -lt "$JOBS_PER_GPU" ]; do
        for sweep_gpu in $sweep_gpu_list; do
            [ "$sweep_slots" -lt "$sweep_queued" ] || break
            sweep_worker "$sweep_gpu" &
            sweep_pids="$sweep_pids $!"
            sweep_slots=$((sweep_slots + 1))
        done
        sweep_round=$((sweep_round + 1))
    done
    echo "running $sweep_queued runs on $sweep_slots slots (GPUS=$GPUS, JOBS_PER_GPU=$JOBS_PER_GPU); $sweep_skipped already finished"
    wait
    trap - INT TERM HUP
    sweep_failed=0
    [ -f "$sweep_tmp/failed" ] && sweep_failed=$(wc -l <"$sweep_tmp/failed")
    sweep_failed=$((sweep_failed + 0))
    echo "sweep done: $((sweep_queued - sweep_failed)) finished, $sweep_failed failed, $sweep_skipped skipped (already finished); logs in $LOG_DIR"
    [ "$sweep_failed" -eq 0 ]
}

if [ -n "${SWEEP_LIBRARY_ONLY:-}" ]; then
    return 0
fi

# --- run_distill.sh proper ----------------------------------------------------------

ALL_PAIRS="wrn_40_2:wrn_16_2 wrn_40_2:wrn_40_1 resnet56:resnet20 resnet110:resnet32
resnet32x4:resnet8x4 vgg13:vgg8 vgg13:MobileNetV2 ResNet50:MobileNetV2 ResNet50:vgg8
resnet32x4:ShuffleV1 resnet32x4:ShuffleV2 wrn_40_2:ShuffleV1"

# The loss weights each method was benchmarked with (RepDistiller's run_cifar_distill.sh;
# packd: the PACKD authors' scripts/run_distill.sh).
method_flags() {
    case $1 in
        kd) echo "-r 0.1 -a 0.9 -b 0" ;;
        hint) echo "-a 0 -b 100" ;;
        attention) echo "-a 0 -b 1000" ;;
        similarity) echo "-a 0 -b 3000" ;;
        correlation) echo "-a 0 -b 0.02" ;;
        vid) echo "-a 0 -b 1" ;;
        crd) echo "-a 0 -b 0.8" ;;
        kdsvd) echo "-a 0 -b 1" ;;
        fsp) echo "-a 0 -b 50" ;;
        rkd) echo "-a 0 -b 1" ;;
        pkt) echo "-a 0 -b 30000" ;;
        abound) echo "-a 0 -b 1" ;;
        factor) echo "-a 0 -b 200" ;;
        nst) echo "-a 0 -b 50" ;;
        packd) echo "-r 1 -a 1 -b 0.8 --alpha_aug 1 --mixup_num 3" ;;
        *) return 1 ;;
    esac
}

# Checkpoints of teacher $1 that may exist, in order of preference, one per line.
teacher_candidates() {
    echo "$SAVE_T/$1_vanilla/ckpt_epoch_240.pth"
    echo "$SAVE_T/$1_cifar100_lr_0.05_decay_0.0005_trial_0/ckpt_epoch_240.pth"
    for base in "$SAVE_T/models" "$SAVE_DIR/models"; do
        set +f
        for run_dir in "$base/$1"_cifar100_lr_*_decay_*_trial_0; do
            [ -d "$run_dir" ] || continue
            [ -f "$run_dir/summary.json" ] && echo "$run_dir/$1_last.pth"
            echo "$run_dir/ckpt_epoch_240.pth"
        done
        set -f
    done
}

# Where teacher $1 was looked for, for the error message.
teacher_lookup_help() {
    echo "    $SAVE_T/$1_vanilla/ckpt_epoch_240.pth"
    echo "    $SAVE_T/$1_cifar100_lr_0.05_decay_0.0005_trial_0/ckpt_epoch_240.pth"
    for base in "$SAVE_T/models" "$SAVE_DIR/models"; do
        echo "    $base/$1_cifar100_lr_*_decay_*_trial_0/{$1_last.pth (finished runs), ckpt_epoch_240.pth}"
    done
}

teacher_path() {
    teacher_candidates "$1" | while IFS= read -r candidate; do
        if [ -f "$candidate" ]; then
            echo "$candidate"
            break
        fi
    done
}

case ${1:-} in
    -h | --help)
        sweep_usage "$0"
        exit 0
        ;;
    '') ;;
    *)
        echo "error: unknown argument '$1'; configure by environment variables, see: sh $0 -h" >&2
        exit 2
        ;;
esac

sweep_init
METHODS=$(printf '%s' "${METHODS:-packd}" | tr ',' ' ')
SAVE_T=${SAVE_T:-./save_t}
PAIRS=$(printf '%s' "${PAIRS:-$ALL_PAIRS}" | tr ',' ' ')

[ -n "$(printf '%s' "$METHODS" | tr -d ' ')" ] || sweep_error "METHODS is empty"
for method in $METHODS; do
    method_flags "$method" >/dev/null ||
        sweep_error "unknown method '$method' in METHODS; use any of kd hint attention similarity correlation vid crd kdsvd fsp rkd pkt abound factor nst packd"
done
for pair in $PAIRS; do
    case $pair in
        *:*:* | :* | *:) sweep_error "PAIRS entry '$pair' is not teacher:student (e.g. PAIRS=resnet56:resnet20,vgg13:vgg8)" ;;
        *:*) ;;
        *) sweep_error "PAIRS entry '$pair' is not teacher:student (e.g. PAIRS=resnet56:resnet20,vgg13:vgg8)" ;;
    esac
done

missing_teachers=
trial=0
while [ "$trial" -lt "$TRIALS" ]; do
    for method in $METHODS; do
        for pair in $PAIRS; do
            teacher=${pair%%:*}
            student=${pair#*:}
            path_t=$(teacher_path "$teacher")
            if [ -z "$path_t" ]; then
                case " $missing_teachers " in
                    *" $teacher "*) ;;
                    *)
                        missing_teachers="$missing_teachers $teacher"
                        {
                            echo "error: no checkpoint of teacher '$teacher'; looked for:"
                            teacher_lookup_help "$teacher"
                            echo "  fetch the released teachers (sh scripts/fetch_teachers.sh) or train it" \
                                "(sh scripts/run_vanilla.sh); skipping the runs with this teacher"
                        } >&2
                        ;;
                esac
                continue
            fi
            # shellcheck disable=SC2046,SC2086
            sweep_add "${teacher}-${student}_${method}_trial_${trial}" \
                train_student.py --path_t "$path_t" --model_s "$student" --distill "$method" \
                $(method_flags "$method") --trial "$trial" --save_dir "$SAVE_DIR" $sweep_resume $EXTRA_ARGS
        done
    done
    trial=$((trial + 1))
done

sweep_run
status=$?
if [ -n "$missing_teachers" ]; then
    echo "error: skipped all runs of the missing teacher(s):$missing_teachers" >&2
    [ "$status" -eq 0 ] && status=2
fi
exit "$status"
