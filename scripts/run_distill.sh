#!/bin/sh
# Distil every teacher -> student pair of the CIFAR-100 benchmark (PACKD by default).
# The sweep lives in scripts/sweep.py; its help: sh scripts/run_distill.sh -h
#
# PYTHON is the interpreter of the training runs (it may be a wrapper or carry options),
# so the sweep itself runs under SWEEP_PYTHON (default: python3, else python).
py=${SWEEP_PYTHON:-$(command -v python3 || command -v python)}
[ -n "$py" ] || { echo "error: no python on PATH; set SWEEP_PYTHON" >&2; exit 2; }
exec "$py" "$(dirname "$0")/sweep.py" distill "$@"
