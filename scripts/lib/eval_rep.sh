# The body of scripts/eval_rep_STL10.sh and scripts/eval_rep_TinyImageNet200.sh, which differ only
# in the data set and the log names; their headers document the environment variables read here.
# Sourced after lib/common.sh, so $0 and the messages stay those of the script the user ran.

# probe_students DATASET LOG_TAG: one eval_rep.py --dataset DATASET probe per student in $STUDENTS,
# logged to $LOG_DIR/<student>_LOG_TAG.log; exits with the scripts' documented status.
probe_students() {
    _dataset=$1
    _log_tag=$2
    enter_repo_root
    find_python
    SAVE_DIR=${SAVE_DIR:-./save}
    STUDENTS=${STUDENTS:-"$SAVE_DIR/student_model/S:resnet8x4_T:resnet32x4_cifar100_packd_*"}
    DATA_FOLDER=${DATA_FOLDER:-./data}
    TRIAL=${TRIAL:-0}
    LOG_DIR=${LOG_DIR:-$SAVE_DIR/logs/transfer}
    EXTRA_ARGS=${EXTRA_ARGS:-}
    DRY_RUN=${DRY_RUN:-0}

    failed=0
    ran=0
    for student in $STUDENTS; do
        if [ ! -e "$student" ]; then
            echo "error: no student checkpoint or run folder at '$student' (STUDENTS)" >&2
            failed=$((failed + 1))
            continue
        fi
        set -- eval_rep.py --dataset "$_dataset" --data_folder "$DATA_FOLDER" --path_s "$student" \
            --trial "$TRIAL" --save_dir "$SAVE_DIR"
        ran=$((ran + 1))
        if [ "$DRY_RUN" = 1 ]; then
            show_command "$@"
            continue
        fi
        name=$(basename "${student%/}")
        case $name in *.pth) name="$(basename "$(dirname "$student")")_${name%.pth}" ;; esac
        run_logged "$LOG_DIR/${name}_${_log_tag}.log" "$student" "$@" || failed=$((failed + 1))
    done
    [ "$DRY_RUN" = 1 ] && echo "dry run: $ran probe(s)"
    [ "$failed" = 0 ] || die "$failed of the students failed or were not found"
    exit 0
}
