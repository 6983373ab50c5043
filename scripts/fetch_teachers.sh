#!/bin/sh
# Fetch the PACKD authors' CIFAR-100 teachers and unpack them into $SAVE_T.
#
# Usage:  sh scripts/fetch_teachers.sh                              (download)
#         ARCHIVE=/path/to/cifar_teachers.tar sh scripts/fetch_teachers.sh   (local file)
#         sh scripts/fetch_teachers.sh -h                           (this help)
#
# Configuration (environment variables):
#   URL       the archive (default: the `checkpoints` release of smuelpeng/PACKD,
#             https://github.com/smuelpeng/PACKD/releases/download/checkpoints/cifar_teachers.tar)
#   ARCHIVE   use this local .tar (.tar.gz, ...) instead of downloading
#   SAVE_T    where the teachers go (default: ./save_t)
#   PYTHON    used to download when neither curl nor wget exists (default: python3)
#   FORCE=1   download and unpack even when every teacher is already there
#
# Relative paths are relative to the repository root (the script runs from there),
# except ARCHIVE, which is taken as given.
#
# Layout: whatever folders wrap the checkpoints in the archive (cifar_teachers/,
# save_t/), each folder holding .pth files lands as $SAVE_T/<folder>/, e.g.
# $SAVE_T/resnet56_vanilla/ckpt_epoch_240.pth, where run_distill.sh looks first. A
# checkpoint at the archive's top, <model>.pth, becomes
# $SAVE_T/<model>_vanilla/ckpt_epoch_240.pth.
#
# Exit status: 0 done (a teacher the archive lacks is reported as a warning),
# 1 download or unpack failed, 2 bad usage.
set -u

# die, usage_error and the -h handling are shared with the other scripts.
. "$(dirname "$0")/lib/common.sh" || exit 2

DEFAULT_URL=https://github.com/smuelpeng/PACKD/releases/download/checkpoints/cifar_teachers.tar
TEACHERS="wrn_40_2 resnet56 resnet110 resnet32x4 vgg13 ResNet50"

check_args "$@"

URL=${URL:-$DEFAULT_URL}
ARCHIVE=${ARCHIVE:-}
SAVE_T=${SAVE_T:-./save_t}
PYTHON=${PYTHON:-python3}
FORCE=${FORCE:-0}

if [ -n "$ARCHIVE" ]; then
    [ -f "$ARCHIVE" ] || usage_error "ARCHIVE '$ARCHIVE' is not a file"
    case $ARCHIVE in /*) ;; *) ARCHIVE="$(pwd)/$ARCHIVE" ;; esac
fi
cd "$(dirname "$0")/.." || die "cannot enter the repository root"

# The released teachers in any of the layouts run_distill.sh accepts.
teacher_present() {
    [ -f "$SAVE_T/$1_vanilla/ckpt_epoch_240.pth" ] ||
        [ -f "$SAVE_T/$1_cifar100_lr_0.05_decay_0.0005_trial_0/ckpt_epoch_240.pth" ]
}

missing_teachers() {
    for teacher in $TEACHERS; do
        teacher_present "$teacher" || printf ' %s' "$teacher"
    done
}

if [ "$FORCE" != 1 ] && [ -z "$ARCHIVE" ] && [ -z "$(missing_teachers)" ]; then
    echo "all teachers are already in $SAVE_T (FORCE=1 fetches them again)"
    exit 0
fi

mkdir -p "$SAVE_T" || die "cannot create SAVE_T '$SAVE_T'"
work=$(mktemp -d "$SAVE_T/.fetch.XXXXXX") || die "cannot create a temporary folder in $SAVE_T"
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM HUP

download() {  # download URL FILE
    if command -v curl >/dev/null 2>&1; then
        curl -fL --progress-bar --retry 2 --connect-timeout 20 -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then
        wget -q -T 20 -t 2 -O "$2" "$1"
    elif command -v "$PYTHON" >/dev/null 2>&1; then
        "$PYTHON" -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' "$1" "$2"
    else
        echo "error: no downloader: install curl or wget (or set PYTHON)" >&2
        return 1
    fi
}

if [ -z "$ARCHIVE" ]; then
    echo "downloading $URL"
    ARCHIVE="$work/teachers.tar"
    download "$URL" "$ARCHIVE" || die "could not download $URL (offline, or the release moved?). Download it by hand and run: ARCHIVE=/path/to/cifar_teachers.tar sh scripts/fetch_teachers.sh"
fi

echo "unpacking $ARCHIVE into $SAVE_T"
mkdir "$work/unpacked"
tar -xf "$ARCHIVE" -C "$work/unpacked" || die "cannot unpack '$ARCHIVE' (not a tar archive, or truncated?)"

# Move every folder that holds checkpoints to $SAVE_T/<its name>.
found=$(find "$work/unpacked" -type f -name '*.pth' | wc -l)
[ "$found" -gt 0 ] || die "the archive '$ARCHIVE' holds no .pth checkpoint"
find "$work/unpacked" -type f -name '*.pth' | while IFS= read -r ckpt; do
    folder=$(dirname "$ckpt")
    file=$(basename "$ckpt")
    if [ "$folder" = "$work/unpacked" ]; then
        target="$SAVE_T/${file%.pth}_vanilla"
        file=ckpt_epoch_240.pth
    else
        target="$SAVE_T/$(basename "$folder")"
    fi
    mkdir -p "$target" && mv -f "$ckpt" "$target/$file" || exit 1
    echo "  $target/$file"
done || die "cannot move the checkpoints into $SAVE_T"

missing=$(missing_teachers)
if [ -n "$missing" ]; then
    echo "warning: the archive has no checkpoint for:$missing (run_distill.sh will report them; train them with sh scripts/run_vanilla.sh)" >&2
fi
echo "teachers are in $SAVE_T"
