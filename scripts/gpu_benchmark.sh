#!/bin/sh
# The GPU rows of BENCHMARK.md, on a machine with one GPU (sized for an H100: the rows stop
# at DEADLINE seconds, 420 by default; the later variants may be cut).
#
# Usage:  sh scripts/gpu_benchmark.sh OUT.jsonl
#
# Writes one JSON line per row to OUT.jsonl (the last stdout line of
# scripts/benchmark.py --json; a failed or skipped row writes {"label": ..., "failed": true})
# and prints a summary table at the end. OUT.jsonl is overwritten.
#
# First, smoke runs of the real scripts on the device (train_teacher.py, then train_student.py
# kd / crd / packd for one epoch on a generated data set, --amp --channels_last; at the end,
# if time is left, kd with --compile --compile_mode reduce-overhead for two epochs): they
# check the CUDA paths end to end (data on the device, evaluation, checkpoints) and write
# {"label": "smoke_...", "smoke": true, "ok": true, "seconds": S} rows.
#
# Rows, in this order (the targets first, so that a DEADLINE cut drops only variants):
#   kd    resnet56   -> resnet20    fp32 (also the data path and the levers), --amp --channels_last,
#                                   and with --compile --compile_mode reduce-overhead (CUDA graphs)
#   kd    resnet32x4 -> resnet8x4   --amp --channels_last
#   crd   resnet56   -> resnet20, resnet32x4 -> resnet8x4   --amp --channels_last (16384 negatives)
#   packd resnet32x4 -> resnet8x4   --amp --channels_last (4 views: --mixup_num 3, 16384 negatives)
#   1, 2 and 4 concurrent kd resnet56 -> resnet20 jobs (aggregate images/s; the jobs
#   meet at a barrier after warm-up so their timed windows overlap)
#   then variants: fp32 kd r32x4, crd r56 (with its data path), crd r32x4, packd (levers);
#   the CUDA-graph smoke run; kd --compile default mode; kd and packd resnet32x4 -> resnet8x4
#   with --teacher_bf16 --channels_last (student in float32)
#   ImageNet (--dataset imagenet, on a GENERATED set: 375x500 JPEGs in the ImageNet layout, never
#   real ImageNet): the first row writes the set once into the job's temporary folder, split over
#   the cores (sized by scripts/benchmark.py for the rows below: 13,056 JPEGs on a 16-core machine
#   at the defaults, ~10 ms each on one core, so ~10 s; 2,112 took 9.7 s on this project's 2-core
#   CPU), then imagenet_data: the data path alone, DataLoader workers (decode + crop) at 8 and
#   nproc workers and DALI (nvJPEG) at as many threads, or a line saying why DALI was skipped;
#   and kd resnet34_imagenet -> resnet18_imagenet --amp --channels_last at the recipe's batch 256
#   (loader auto: DALI when installed, else 8 DataLoader workers), projected for ImageNet-1k's
#   1,281,167 images and 100 epochs. IMAGENET_STEPS timed steps (default 24) after
#   IMAGENET_WARMUP (default 8): whole waves of the 8 workers' batches; about a minute in all
#   last (a DEADLINE cut drops them first): kd resnet56 -> resnet20 --amp --channels_last under
#   torchrun with 1, 2, 4 and 8 GPUs (one process each, DDP as in training): the recipe's
#   global batch of 64 (strong scaling: kd_r56_r20_amp_cl_ddpN), then 64 per GPU (weak
#   scaling: kd_r56_r20_amp_cl_ddpN_b64xN, N > 1). A row needing more GPUs than are visible
#   is skipped with a line saying so ({"label": ..., "skipped": true} in OUT.jsonl). The
#   1-GPU row's images/s is passed to the others as --baseline_images_per_s, so their JSON
#   holds scaling_efficiency = aggregate images/s / (N x 1-GPU images/s); the summary
#   prints it per row.
#
# Targets (240 epochs, test evaluation included): kd r56->r20 <= 3 min, kd r32x4->r8x4
# <= 5 min, crd <= 1.3 x kd, packd r32x4->r8x4 <= 12 min.
#
# Environment: PYTHON (default python), STEPS (timed steps per row, default 200),
# WARMUP (default 30), DEADLINE (seconds for all rows, default 420; a row gets at most
# the time left, rows after the deadline are skipped), COMPILE (0: no --compile row),
# DDP_ONLY (1: only the torchrun rows, e.g. on a machine with 8 GPUs), IMAGENET_ONLY (1: only
# the ImageNet rows), IMAGENET_STEPS, IMAGENET_WARMUP, GPUS (the GPUs the
# torchrun rows may use; default all that torch sees, on DEVICE=cpu the CPU cores: there a
# "GPU" is a gloo process), DEVICE (default cuda) and BENCH_ARGS (appended to every run,
# split on spaces) for a smoke test elsewhere, e.g.
#   DEVICE=cpu COMPILE=0 STEPS=2 WARMUP=1 IMAGENET_STEPS=1 IMAGENET_WARMUP=1 BENCH_ARGS="--n_data 512
#   --n_test 64 --batch_size 16 --nce_k 32 --threads 1 --data_workers 0" sh scripts/gpu_benchmark.sh /tmp/x.jsonl
set -u
set -f

OUT=${1:-}
if [ -z "$OUT" ]; then
    echo "usage: sh scripts/gpu_benchmark.sh OUT.jsonl" >&2
    exit 2
fi
case $OUT in /*) ;; *) OUT="$(pwd)/$OUT" ;; esac
cd "$(dirname "$0")/.." || exit 2
PYTHON=${PYTHON:-python}
STEPS=${STEPS:-200}
WARMUP=${WARMUP:-30}
DEADLINE=${DEADLINE:-420}
COMPILE=${COMPILE:-1}
DEVICE=${DEVICE:-cuda}
BENCH_ARGS=${BENCH_ARGS:-}
DDP_ONLY=${DDP_ONLY:-0}
IMAGENET_ONLY=${IMAGENET_ONLY:-0}
IMAGENET_STEPS=${IMAGENET_STEPS:-24}
IMAGENET_WARMUP=${IMAGENET_WARMUP:-8}
GPUS=${GPUS:-}
# The lines of scripts/benchmark.py's output shown under each row (scripts/bench/report.py).
SHOWN='^(training step|scaling|processes|forward-only|epoch|projected|data path|data:|generated data|host syncs|negative|memory-bank|sinkhorn|levers|peak|malloc)'

: >"$OUT" || { echo "error: cannot write '$OUT'" >&2; exit 2; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gpu_bench.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
failed=0
skipped=0

if [ "$DEVICE" != cpu ]; then
    command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    $PYTHON -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))" ||
        { echo "error: no CUDA device visible to torch" >&2; exit 2; }
fi
# What the torchrun rows may use: GPUs seen by torch (CPU cores on DEVICE=cpu), or GPUS.
if [ -n "$GPUS" ]; then
    visible=$GPUS
elif [ "$DEVICE" = cpu ]; then
    visible=$($PYTHON -c "import os; print(os.cpu_count() or 1)")
else
    visible=$($PYTHON -c "import torch; print(torch.cuda.device_count())")
fi
if [ "$DEVICE" = cpu ]; then unit="CPU core(s)"; else unit="GPU(s)"; fi

# Seconds left before DEADLINE.
time_left() {
    echo $((DEADLINE - ($(date +%s) - start)))
}

record_failure() {  # LABEL REASON
    printf '{"label": "%s", "failed": true, "reason": "%s"}\n' "$1" "$2" >>"$OUT"
    failed=$((failed + 1))
}

record_skip() {  # LABEL
    printf '{"label": "%s", "failed": true, "reason": "skipped: DEADLINE reached"}\n' "$1" >>"$OUT"
    skipped=$((skipped + 1))
}

# limited LABEL LIMIT_S COMMAND...: run COMMAND under the row's time limit (capped by DEADLINE),
# stdout/stderr to $tmp/LABEL.out/.err. Returns 0 on success, 1 on failure (recorded), 2 when
# skipped because DEADLINE is reached (recorded).
limited() {
    label=$1
    limit=$2
    shift 2
    left=$(time_left)
    if [ "$left" -lt 20 ]; then
        echo "== $label: skipped (DEADLINE reached)"
        record_skip "$label"
        return 2
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $label (limit ${limit}s)"
    timeout "$limit" "$@" >"$tmp/$label.out" 2>"$tmp/$label.err"
    rc=$?
    [ "$rc" -eq 0 ] && return 0
    echo "   FAILED (exit $rc$([ "$rc" -eq 124 ] && echo ': timeout')); last lines of stderr:"
    tail -n 5 "$tmp/$label.err" | sed 's/^/   /'
    record_failure "$label" "exit $rc"
    return 1
}

# row LABEL LIMIT_S BENCHMARK_ARGS...: one benchmark run, its JSON line appended to OUT.
row() {
    label=$1
    limit=$2
    shift 2
    # shellcheck disable=SC2086
    if limited "$label" "$limit" $PYTHON scripts/benchmark.py --device "$DEVICE" --json --label "$label" \
        --steps "$STEPS" --warmup "$WARMUP" "$@" $BENCH_ARGS; then
        grep -E "$SHOWN" "$tmp/$label.out" | sed 's/^/   /'
        tail -n 1 "$tmp/$label.out" >>"$OUT"
    fi
}

# smoke LABEL LIMIT_S SCRIPT ARGS...: one run of a real training script on the device.
smoke() {
    label=$1
    limit=$2
    shift 2
    t0=$(date +%s)
    # shellcheck disable=SC2086
    if limited "$label" "$limit" $PYTHON "$@" --device "$DEVICE" --no_progress --no_tensorboard; then
        grep -E '^(finished|teacher )' "$tmp/$label.out" | sed 's/^/   /'
        printf '{"label": "%s", "smoke": true, "ok": true, "seconds": %s}\n' "$label" $(($(date +%s) - t0)) >>"$OUT"
    fi
}

# concurrent N: N kd resnet56 -> resnet20 jobs at once on the same GPU.
concurrent() {
    n=$1
    left=$(time_left)
    if [ "$left" -lt 30 ]; then
        echo "== concurrent x$n: skipped (DEADLINE reached)"
        record_skip "kd_r56_r20_concurrent_${n}"
        return 0
    fi
    limit=90
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $n concurrent kd resnet56 -> resnet20 jobs (limit ${limit}s)"
    barrier="$tmp/barrier_$n"
    i=1
    pids=
    while [ "$i" -le "$n" ]; do
        # shellcheck disable=SC2086
        timeout "$limit" $PYTHON scripts/benchmark.py --device "$DEVICE" --json --distill kd --model_t resnet56 \
            --model_s resnet20 --steps $((STEPS * 2)) --warmup "$WARMUP" --skip_data_path --eval_steps 0 \
            --barrier "$barrier" --barrier_count "$n" --label "kd_r56_r20_concurrent_${n}_job_$i" $BENCH_ARGS \
            >"$tmp/conc_${n}_$i.out" 2>"$tmp/conc_${n}_$i.err" &
        pids="$pids $!"
        i=$((i + 1))
    done
    i=1
    for pid in $pids; do
        if wait "$pid"; then
            tail -n 1 "$tmp/conc_${n}_$i.out" >>"$OUT"
        else
            echo "   job $i FAILED; last lines of stderr:"
            tail -n 5 "$tmp/conc_${n}_$i.err" | sed 's/^/   /'
            record_failure "kd_r56_r20_concurrent_${n}_job_$i" "failed"
        fi
        i=$((i + 1))
    done
}

# row_images_per_s LABEL: images_per_s of that row in OUT (empty when it failed or is absent).
row_images_per_s() {
    $PYTHON - "$OUT" "$1" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    row = json.loads(line) if line.strip() else {}
    if row.get("label") == sys.argv[2] and row.get("images_per_s"):
        print(row["images_per_s"])
EOF
}

# ddp_row N LABEL LIMIT_S BENCHMARK_ARGS...: one benchmark run under torchrun with N processes (one
# per GPU; rank 0 writes the JSON line), with the 1-GPU row's images/s ($ddp_base) as baseline.
ddp_base=
ddp_row() {
    n=$1
    label=$2
    limit=$3
    shift 3
    if [ "$n" -gt "$visible" ]; then
        echo "== $label: skipped ($n $unit needed, $visible visible)"
        printf '{"label": "%s", "skipped": true, "reason": "%s %s needed, %s visible"}\n' "$label" "$n" "$unit" \
            "$visible" >>"$OUT"
        return 0
    fi
    baseline=
    [ -n "$ddp_base" ] && baseline="--baseline_images_per_s $ddp_base"
    # shellcheck disable=SC2086
    if limited "$label" "$limit" $PYTHON -m torch.distributed.run --standalone --nproc_per_node "$n" \
        scripts/benchmark.py --device "$DEVICE" --json --label "$label" --steps "$STEPS" --warmup "$WARMUP" "$@" \
        $baseline $BENCH_ARGS; then
        grep -E "$SHOWN" "$tmp/$label.out" | sed 's/^/   /'
        tail -n 1 "$tmp/$label.out" >>"$OUT"
    fi
}

# Everything but the ImageNet and torchrun rows (DDP_ONLY=1 or IMAGENET_ONLY=1 skips them).
if [ "$DDP_ONLY" != 1 ] && [ "$IMAGENET_ONLY" != 1 ]; then
smoke_dir="$tmp/smoke"
smoke_teacher="$smoke_dir/save/models/resnet8_cifar100_lr_0.05_decay_0.0005_trial_0/resnet8_last.pth"
smoke smoke_teacher 60 train_teacher.py --model resnet8 --epochs 1 --generate_data \
    --data_folder "$smoke_dir/data" --save_dir "$smoke_dir/save"
for method in kd crd packd; do
    smoke "smoke_$method" 60 train_student.py --path_t "$smoke_teacher" --model_s resnet8 --distill "$method" \
        --epochs 1 --data_folder "$smoke_dir/data" --save_dir "$smoke_dir/save" --nce_k 256 --t-epoch 1 \
        --head_cache_dir "$smoke_dir/heads" --amp --channels_last
done

# Most decision-relevant rows first (the KD 3-min candidates, then one row per target), so a
# DEADLINE cut drops the variants, not the targets.
row kd_r56_r20 60 --distill kd --model_t resnet56 --model_s resnet20 --data_workers 0,2,4,8 --levers
row kd_r56_r20_amp_cl 45 --distill kd --model_t resnet56 --model_s resnet20 --amp --channels_last --skip_data_path
if [ "$COMPILE" != 0 ]; then
    row kd_r56_r20_amp_cl_cudagraphs 120 --distill kd --model_t resnet56 --model_s resnet20 --amp --channels_last \
        --compile --compile_mode reduce-overhead --skip_data_path
fi
row kd_r32x4_r8x4_amp_cl 45 --distill kd --model_t resnet32x4 --model_s resnet8x4 --amp --channels_last \
    --skip_data_path
row crd_r56_r20_amp_cl 45 --distill crd --model_t resnet56 --model_s resnet20 --nce_k 16384 --amp \
    --channels_last --skip_data_path
row crd_r32x4_r8x4_amp_cl 45 --distill crd --model_t resnet32x4 --model_s resnet8x4 --nce_k 16384 --amp \
    --channels_last --skip_data_path
row packd_r32x4_r8x4_amp_cl 60 --distill packd --model_t resnet32x4 --model_s resnet8x4 --mixup_num 3 \
    --nce_k 16384 --amp --channels_last --pretrain_steps 50 --skip_data_path
concurrent 1
concurrent 2
concurrent 4
# Variants, as time allows.
row kd_r32x4_r8x4 60 --distill kd --model_t resnet32x4 --model_s resnet8x4 --levers --skip_data_path
row crd_r56_r20 45 --distill crd --model_t resnet56 --model_s resnet20 --nce_k 16384
row crd_r32x4_r8x4 45 --distill crd --model_t resnet32x4 --model_s resnet8x4 --nce_k 16384 --skip_data_path
row packd_r32x4_r8x4 75 --distill packd --model_t resnet32x4 --model_s resnet8x4 --mixup_num 3 --nce_k 16384 \
    --pretrain_steps 50 --levers
if [ "$COMPILE" != 0 ]; then
    smoke smoke_kd_cudagraphs 120 train_student.py --path_t "$smoke_teacher" --model_s resnet8 --distill kd \
        --epochs 2 --data_folder "$smoke_dir/data" --save_dir "$smoke_dir/save_cg" --compile \
        --compile_mode reduce-overhead
    row kd_r56_r20_amp_cl_compile 120 --distill kd --model_t resnet56 --model_s resnet20 --amp --channels_last \
        --compile --skip_data_path
fi
row kd_r32x4_r8x4_tbf16_cl 45 --distill kd --model_t resnet32x4 --model_s resnet8x4 --teacher_bf16 \
    --channels_last --skip_data_path
row packd_r32x4_r8x4_tbf16_cl 60 --distill packd --model_t resnet32x4 --model_s resnet8x4 --mixup_num 3 \
    --nce_k 16384 --teacher_bf16 --channels_last --pretrain_steps 50 --skip_data_path
fi

# ImageNet on a generated set, written by the first row (its --generate_data) into $tmp/imagenet and
# read by the second; the data-path row's flags size the set for both rows.
if [ "$DDP_ONLY" != 1 ]; then
    IMAGENET_ARGS="--dataset imagenet --data_folder $tmp/imagenet --batch_size 256 --steps $IMAGENET_STEPS
        --warmup $IMAGENET_WARMUP --eval_steps 2"
    cores=$(nproc)
    workers=8
    [ "$cores" != 8 ] && workers="8,$cores"
    # shellcheck disable=SC2086
    row imagenet_data 120 $IMAGENET_ARGS --generate_data --data_only --data_workers "$workers"
    # shellcheck disable=SC2086
    row imagenet_kd_r34_r18_amp_cl 120 $IMAGENET_ARGS --distill kd --amp --channels_last --skip_data_path
fi

# Last: the torchrun rows (1/2/4/8 GPUs), the recipe's global batch 64, then 64 per GPU.
if [ "$IMAGENET_ONLY" != 1 ]; then
DDP_ARGS="--distill kd --model_t resnet56 --model_s resnet20 --amp --channels_last --skip_data_path"
# shellcheck disable=SC2086
ddp_row 1 kd_r56_r20_amp_cl_ddp1 90 $DDP_ARGS --batch_size 64
ddp_base=$(row_images_per_s kd_r56_r20_amp_cl_ddp1)
for n in 2 4 8; do
    # shellcheck disable=SC2086
    ddp_row "$n" "kd_r56_r20_amp_cl_ddp$n" 90 $DDP_ARGS --batch_size 64
done
for n in 2 4 8; do
    # shellcheck disable=SC2086
    ddp_row "$n" "kd_r56_r20_amp_cl_ddp${n}_b64x$n" 90 $DDP_ARGS --batch_size $((64 * n))
done
fi

echo "rows took $(($(date +%s) - start))s; JSON lines in $OUT"
$PYTHON - "$OUT" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
print(f"{'row':34} {'ms/step':>8} {'img/s':>8} {'run (epochs)':>15} {'+pretrain':>10} {'peak MiB':>9}")
groups = {}
for r in rows:
    if r.get("failed"):
        print(f"{r['label']:34} {'failed: ' + r.get('reason', ''):>40}")
        continue
    if r.get("skipped"):
        print(f"{r['label']:34} {'skipped: ' + r.get('reason', ''):>40}")
        continue
    if r.get("smoke"):
        print(f"{r['label']:34} {'ok (real script, ' + str(r['seconds']) + ' s)':>40}")
        continue
    label = r.get("label") or r["method"]
    if "_concurrent_" in label:
        groups.setdefault(label.split("_job_")[0], []).append(r)
        continue
    if "projected_run_s" not in r:  # --data_only: ms per batch of the training loader alone
        print(f"{label:34} {r['ms_per_step']:8.2f} {r['images_per_s']:8.0f} {'data path only':>26} "
              f"{r['peak_memory_bytes'] / 2 ** 20:9.0f}")
        continue
    print(f"{label:34} {r['ms_per_step']:8.2f} {r['images_per_s']:8.0f} {r['projected_run_s'] / 60:8.2f}m "
          f"({r['epochs']:3}) {r['projected_run_with_pretrain_s'] / 60:9.2f}m {r['peak_memory_bytes'] / 2 ** 20:9.0f}")
for name, jobs in groups.items():
    start = max(j["timed_start_unix"] for j in jobs)
    end = min(j["timed_end_unix"] for j in jobs)
    longest = max(j["timed_end_unix"] - j["timed_start_unix"] for j in jobs)
    overlap = max(end - start, 0) / longest if longest > 0 else 0
    total = sum(j["images_per_s"] for j in jobs)
    print(f"{name:34} {len(jobs)} jobs: aggregate {total:,.0f} images/s, "
          f"{sum(j['ms_per_step'] for j in jobs) / len(jobs):.2f} ms/step each, timed windows overlap {100 * overlap:.0f}%")
ddp = [r for r in rows if "_ddp" in (r.get("label") or "") and "aggregate_images_per_s" in r]
single = next((r for r in ddp if r.get("world_size") == 1), None)
for r in ddp:
    n = r["world_size"]
    base = single["images_per_s"] if single else r.get("baseline_images_per_s")
    efficiency = f"{100 * r['aggregate_images_per_s'] / (n * base):.0f}% of {n} x 1 GPU" if base else "no 1-GPU row"
    print(f"{r['label']:34} {n} GPU(s), global batch {r['global_batch_size']}: aggregate "
          f"{r['aggregate_images_per_s']:,.0f} images/s, {r['images_per_s_per_process']:,.0f} per GPU, "
          f"ms/step per rank {min(r['ms_per_step_ranks']):.2f}-{max(r['ms_per_step_ranks']):.2f}, "
          f"scaling efficiency {efficiency}")
EOF
[ "$skipped" -eq 0 ] || echo "$skipped row(s) skipped: DEADLINE reached" >&2
[ "$failed" -eq 0 ] || { echo "$failed row(s) failed" >&2; exit 1; }
