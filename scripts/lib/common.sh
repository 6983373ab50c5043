# Sourced by eval_rep_STL10.sh and eval_rep_TinyImageNet200.sh (their shared body, lib/eval_rep.sh,
# uses it too), run_few_shot.sh and fetch_teachers.sh, so that their usage handling, errors and
# dry-run lines stay alike. POSIX sh: the scripts run as `sh scripts/<name>.sh` (dash on Debian).
# Sourced, not run: a script loads it with
#     . "$(dirname "$0")/lib/common.sh" || exit 2
# before it changes directory, so that it is found from any current directory. $0 stays the
# sourcing script, which is what the help text and the messages below name.
# Helper variables start with _ so that they do not clobber the scripts' own.

# die MESSAGE: one line "error: MESSAGE" on stderr, exit 1 (something failed).
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# usage_error MESSAGE: the same, exit 2 (bad usage or configuration).
usage_error() {
    printf 'error: %s\n' "$*" >&2
    exit 2
}

# check_args "$@": -h/--help prints the script's header comment (line 2 up to the first line
# that is not a comment) and exits 0; any other argument is bad usage, since these scripts
# take their configuration from the environment only.
check_args() {
    case ${1:-} in
        -h | --help)
            sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p;}' "$0"
            exit 0
            ;;
        '') ;;
        *) usage_error "unknown argument '$1'; configure by environment variables, see: sh $0 -h" ;;
    esac
}

# enter_repo_root: cd to the folder above the script's, so relative paths mean the same from
# wherever the script is started.
enter_repo_root() {
    cd "$(dirname "$0")/.." || usage_error "cannot enter the repository root"
}

# find_python: PY is $PYTHON, else python3, else python on PATH.
find_python() {
    PY=${PYTHON:-$(command -v python3 || command -v python)}
    [ -n "$PY" ] || usage_error "no python on PATH; set PYTHON"
}

# quote WORD: one shell word, quoted when it needs to be.
quote() {
    case $1 in
        '' | *[!A-Za-z0-9_./:=,+@%-]*) printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")" ;;
        *) printf '%s' "$1" ;;
    esac
}

# show_command WORD...: the dry-run line for "$PY" WORD... $EXTRA_ARGS, pasteable into a shell
# (EXTRA_ARGS is printed as given, since it is split into words when run).
show_command() {
    _line=$(quote "$PY")
    for _word in "$@"; do _line="$_line $(quote "$_word")"; done
    echo "$_line${EXTRA_ARGS:+ $EXTRA_ARGS}"
}

# run_logged LOG WHAT WORD...: run "$PY" WORD... $EXTRA_ARGS with its output on the terminal and
# in LOG (its folder is created). A failure is reported as "FAILED (exit N): WHAT; log: LOG" and
# its status returned (the status file is there because a pipe into tee would give tee's).
run_logged() {
    _log=$1
    _what=$2
    shift 2
    mkdir -p "$(dirname "$_log")" || exit 1
    _status=$(mktemp) || exit 1
    # shellcheck disable=SC2086  # EXTRA_ARGS are words
    { "$PY" "$@" $EXTRA_ARGS 2>&1; echo $? > "$_status"; } | tee "$_log"
    _rc=$(cat "$_status")
    rm -f "$_status"
    [ "$_rc" = 0 ] && return 0
    echo "FAILED (exit $_rc): $_what; log: $_log" >&2
    return "${_rc:-1}"
}
