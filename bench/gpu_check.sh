#!/usr/bin/env bash
# Every filter's default at 1 MP and 4 MP, and the DeepDream and texture benchmarks, on a GPU: one table, < 8 min.
#
#   bench/gpu_check.sh                # on a machine with an NVIDIA GPU (TensorFlow, and JAX where installed)
#   bench/gpu_check.sh --dry-run      # the same steps on the CPU at tiny sizes, to check the script itself
#
# Each cell is one process of bench/bench_speed.py --cell (model loaded first and not timed, then one
# default call through the Python API). On a GPU with bfloat16 (compute capability 8.0 or more: A100,
# H100, H200, L4 ...) the filters with a "precision" parameter run once more with precision=bfloat16
# (their mixed precision: bfloat16 convolutions, float32 statistics); every cell runs on TensorFlow,
# and again on JAX (KERAS_BACKEND=jax) when jax sees a GPU. A cell that fails or passes its time
# limit is reported as such and the script goes on. Results: a table on stdout and the raw JSON lines
# in $OUT (default bench/gpu_check.jsonl); nothing is written into bench/results.json.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-bench/gpu_check.jsonl}
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
BEGAN=$(date +%s)
LIMIT=${LIMIT:-460}          # seconds for the whole script (8 min, minus start-up and the table)
RESERVE=${RESERVE:-150}      # seconds of LIMIT kept for the two benchmarks at the end

if [ $DRY = 1 ]; then
  SIZES="64"; CELL_TIMEOUT=240; export CUDA_VISIBLE_DEVICES=""
  echo "dry run: CPU, size $SIZES (the GPU run uses 1024 and 2048)"
else
  SIZES="1024 2048"; CELL_TIMEOUT=90
  if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "no NVIDIA GPU here (nvidia-smi -L failed); use --dry-run to check the script on the CPU" >&2
    exit 2
  fi
  nvidia-smi --query-gpu=name,memory.total,compute_cap,driver_version --format=csv,noheader
fi
: > "$OUT"

# What the machine offers: TensorFlow's GPUs and their compute capability, JAX's devices.
read -r TF_GPU BF16 < <("$PY" - <<'EOF' 2>/dev/null
import tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
cap = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0)) if gpus else (0, 0)
print(len(gpus), int(tuple(cap) >= (8, 0)))
EOF
) || { TF_GPU=0; BF16=0; }
JAX_GPU=$("$PY" -c "import jax; print(int(any(d.platform == 'gpu' for d in jax.devices())))" 2>/dev/null || echo 0)
echo "TensorFlow GPUs: ${TF_GPU:-0}, bfloat16: ${BF16:-0}, JAX GPU: ${JAX_GPU:-0}"
if [ $DRY = 0 ] && [ "${TF_GPU:-0}" = 0 ]; then
  echo "TensorFlow sees no GPU (a CPU-only TensorFlow wheel?): install tensorflow[and-cuda] first" >&2
  exit 3
fi

left() { echo $(( LIMIT - ($(date +%s) - BEGAN) )); }

# cell BACKEND PRECISION ROW SIZE
cell() {
  local backend=$1 precision=$2 row=$3 size=$4 params="{}" budget
  budget=$(( $(left) - RESERVE ))
  if [ "$budget" -lt 20 ]; then
    echo "{\"backend\": \"$backend\", \"precision\": \"$precision\", \"row\": \"$row\", \"column\": \"$size\", \"error\": \"skipped: out of time\"}" >> "$OUT"
    return
  fi
  [ "$budget" -gt "$CELL_TIMEOUT" ] && budget=$CELL_TIMEOUT
  [ "$precision" != default ] && params="{\"precision\": \"$precision\"}"
  local line
  line=$(KERAS_BACKEND=$backend BENCH_SPEED_PARAMS=$params TF_CPP_MIN_LOG_LEVEL=2 \
         timeout "$budget" "$PY" bench/bench_speed.py --cell "$row" "$size" 2>/dev/null | grep '^{' | tail -1)
  [ -z "$line" ] && line="{\"row\": \"$row\", \"column\": \"$size\", \"error\": \"failed or over ${budget} s\"}"
  echo "$line" | "$PY" -c "import json,sys; d=json.loads(sys.stdin.read()); d.update(backend='$backend', precision='$precision'); print(json.dumps(d))" >> "$OUT"
}

ROWS="texture style-transfer deepdream-lite0 deepdream-vgg16-hed hallucinate saliency-grad-cam saliency-guided-backprop activation-maps feature-inversion"
WITH_PRECISION="texture style-transfer deepdream-lite0 deepdream-vgg16-hed"
for size in $SIZES; do
  for row in $ROWS; do
    cell tensorflow default "$row" "$size"
    if [ "${BF16:-0}" = 1 ] && [[ " $WITH_PRECISION " == *" $row "* ]]; then
      cell tensorflow bfloat16 "$row" "$size"
    fi
  done
done
if [ "${JAX_GPU:-0}" = 1 ] || [ $DRY = 1 ]; then
  for row in texture deepdream-lite0 deepdream-vgg16-hed; do
    cell jax default "$row" "${SIZES%% *}"
  done
fi

# The benchmarks, each with its remaining share of the time; results go to $OUT's folder, not results.json.
bench() {
  local name=$1; shift
  local budget; budget=$(left)
  if [ "$budget" -lt 30 ]; then echo "{\"bench\": \"$name\", \"error\": \"skipped: out of time\"}" >> "$OUT"; return; fi
  local began; began=$(date +%s)
  if timeout "$budget" "$PY" "$@" > "/tmp/gpu_check_$name.out" 2>&1; then status=ok; else status="failed or over ${budget} s"; fi
  echo "{\"bench\": \"$name\", \"seconds\": $(( $(date +%s) - began )), \"status\": \"$status\", \"tail\": $("$PY" -c "import json,sys; print(json.dumps(open(sys.argv[1]).read()[-600:]))" "/tmp/gpu_check_$name.out")}" >> "$OUT"
}
if [ $DRY = 1 ]; then
  bench deepdream bench/bench_deepdream.py --models lite0 --steps lite0=1 --rounds 1 --no-equal-work --rss 128x96 --rise lite0 --target "" --out /tmp/gpu_check_deepdream.json
  bench texture bench/bench_texture.py synth --size 64 --steps 5 --target 0.5 --max-seconds 60
else
  bench deepdream bench/bench_deepdream.py --rounds 1 --rss 4096x4096 --rise "" --target "" --out /tmp/gpu_check_deepdream.json
  bench texture bench/bench_texture.py synth --size 1024 --steps 100 --target 0.05 --max-seconds 120
fi

# The table.
"$PY" - "$OUT" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
print(f"\n{'filter':<26} {'backend':<10} {'precision':<9} {'size':>5} {'seconds':>8} {'start-up':>8} {'evals':>7}")
for r in rows:
    if "bench" in r:
        continue
    sec = f"{r['seconds']:.1f}" if r.get("seconds") is not None else r.get("error", "–")[:30]
    print(f"{r.get('row', '?'):<26} {r.get('backend', ''):<10} {r.get('precision', ''):<9} {r.get('column', ''):>5} {sec:>8} "
          f"{r.get('startup_s', '–')!s:>8} {r.get('evaluations_full_size', '–')!s:>7}")
for r in rows:
    if "bench" in r:
        print(f"benchmark {r['bench']}: {r.get('status', r.get('error'))}, {r.get('seconds', '–')} s")
EOF
echo "total $(( $(date +%s) - BEGAN )) s; raw lines in $OUT"
