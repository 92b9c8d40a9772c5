#!/usr/bin/env bash
# Capture-overhead (and memory) checks on a lent GPU machine; results go to $OUT/.
# Runs offline with whatever python3 has: no installs. Finishes within about 5 minutes.
# Usage (repository root): OUT=/some/dir bash bench/gpu_check.sh
set -u
OUT="${OUT:-./gpu_check_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
DEVICE="${DEVICE:-cuda}"  # DEVICE=cpu: a dry run of this script on a machine without a GPU
LOG="$OUT/gpu_check.log"
exec > >(tee -a "$LOG") 2>&1
cd "$(dirname "$0")/.."

echo "== environment $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | head -3
$PY --version
missing=$($PY - <<'PY'
import importlib.util
need = ["torch", "transformers", "tokenizers", "safetensors"]
print(" ".join(n for n in need if importlib.util.find_spec(n) is None))
PY
)
if ! $PY -c "import torch, transformers" 2>/dev/null || [ -n "$missing" ]; then
    echo "MISSING python packages: ${missing:-torch/transformers import failed}"
    echo "cannot run the checks without them (no pip here)"; exit 2
fi
$PY -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'available', torch.cuda.is_available(), '| transformers', transformers.__version__)"
if [ "$DEVICE" = cuda ] && ! $PY -c "import torch; assert torch.cuda.is_available()"; then
    echo "no CUDA device visible"; exit 3
fi

run() {  # name, time limit (s), command...
    local name=$1 limit=$2; shift 2
    echo "== $name"
    timeout "$limit" "$@" --json "$OUT/$name.json" 2>"$OUT/$name.stderr" | tee "$OUT/$name.txt"
    local rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || { echo "$name failed (rc $rc)"; tail -5 "$OUT/$name.stderr"; }
}

run overhead_tiny_b8 50 $PY bench/capture_overhead.py --device $DEVICE --batch 8 --new-tokens 128
run overhead_tiny_b32 50 $PY bench/capture_overhead.py --device $DEVICE --batch 32 --new-tokens 128
run memory_tiny 50 $PY bench/capture_memory.py --device $DEVICE --batch 16 --new-tokens 512
SMOL=""
for d in .bench_models/smollm2/weights .bench_models/smollm2; do
    [ -f "$d/config.json" ] && SMOL=$d && break
done
if [ -n "$SMOL" ]; then
    run overhead_smollm2_b32 70 $PY bench/capture_overhead.py --model "$SMOL" --device $DEVICE \
        --batch 32 --new-tokens 256
    run memory_smollm2 50 $PY bench/capture_memory.py --model "$SMOL" --device $DEVICE \
        --batch 16 --new-tokens 512
else
    echo "== SmolLM2 skipped: no .bench_models/smollm2/config.json"
fi
echo "== done $(date -u +%FT%TZ); results in $OUT"
grep -H "generate =" "$OUT"/*.txt 2>/dev/null
