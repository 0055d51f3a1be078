#!/usr/bin/env bash
# One command from a fresh clone to a ben-lab model: set up .venv, then
#   [1/4] data       lab experiments -> data/lab_instructions.jsonl, data/lab_eval.jsonl (+ docs -> data/lab_doc_instructions.jsonl)
#   [2/4] fine-tune  LoRA on the base model -> ben-lab-lora/
#   [3/4] GGUF       ben-lab-adapter.gguf, ben-lab.gguf (merged), Modelfile
#   [4/4] Ollama     `ollama create ben-lab` when Ollama is installed, else the commands to run later
#   [eval]           base vs fine-tuned accuracy on held-out questions -> eval/ (skip with --skip-eval)
# Each step's output is reused on a re-run unless --force. Run with --help for the options.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT_DIR="$ROOT"
FROM_STEP=1
FORCE=0
QUICK=0
BASE_MODEL=""
OLLAMA_MODE="auto"
EVALUATE=1

usage() {
  cat <<EOF
Usage: ./train_and_install.sh [options]

Builds the ben-lab model from live lab experiments: data, LoRA fine-tuning, GGUF export, Ollama.

Options:
  --base-model NAME   hub id, local directory, .gguf file, or smollm2 / gemma3-270m
                      (default: Llama-3.2-1B-Instruct on a CUDA GPU when available, else the embedded SmolLM2-135M)
  --ollama-mode MODE  auto | adapter | merged (default auto)
  --from-step N       start at step N (1 data, 2 fine-tune, 3 GGUF, 4 Ollama)
  --force             redo steps whose output already exists
  --quick             small counts and few training steps: a full pass in a few minutes
  --out-dir DIR       where the artifacts go (default: the repository root)
  --skip-eval         do not score base vs fine-tuned on the held-out questions at the end
  -h, --help          this help
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --base-model) BASE_MODEL="${2:?--base-model needs a value}"; shift 2 ;;
    --ollama-mode) OLLAMA_MODE="${2:?--ollama-mode needs a value}"; shift 2 ;;
    --from-step) FROM_STEP="${2:?--from-step needs a value}"; shift 2 ;;
    --out-dir) OUT_DIR="${2:?--out-dir needs a value}"; shift 2 ;;
    --force) FORCE=1; shift ;;
    --quick) QUICK=1; shift ;;
    --skip-eval) EVALUATE=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown option '$1'; see ./train_and_install.sh --help" >&2; exit 2 ;;
  esac
done
case "$FROM_STEP" in 1|2|3|4) ;; *) echo "error: --from-step must be 1, 2, 3 or 4, got '$FROM_STEP'" >&2; exit 2 ;; esac
case "$OLLAMA_MODE" in auto|adapter|merged) ;; *) echo "error: --ollama-mode must be auto, adapter or merged, got '$OLLAMA_MODE'" >&2; exit 2 ;; esac

if ! mkdir -p "$OUT_DIR" 2>/dev/null || ! touch "$OUT_DIR/.write-check" 2>/dev/null; then
  echo "error: --out-dir $OUT_DIR cannot be written; pick a folder you can write to" >&2
  exit 2
fi
rm -f "$OUT_DIR/.write-check"
"$ROOT/scripts/bootstrap.sh"
PY="$ROOT/.venv/bin/python"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
DATA="$OUT_DIR/data"
LORA="$OUT_DIR/ben-lab-lora"
cd "$ROOT"

step() {  # step NUMBER NAME OUTPUT COMMAND...: run unless skipped or already done; report the time taken
  local number="$1" name="$2" output="$3"
  shift 3
  if [ "$number" -lt "$FROM_STEP" ]; then
    echo "[$number/4] $name: skipped (--from-step $FROM_STEP)"
    return
  fi
  if [ -n "$output" ] && [ -e "$output" ] && [ "$FORCE" -eq 0 ]; then
    echo "[$number/4] $name: reusing $output (--force redoes it)"
    return
  fi
  echo "[$number/4] $name ..."
  local start=$SECONDS
  "$@"
  echo "[$number/4] $name: done in $((SECONDS - start)) s"
}

data_args=()
train_args=()
if [ "$QUICK" -eq 1 ]; then
  data_args=(--phase-experiments 10 --tri-tests 12 --discovery-runs 3 --drift-runs 8 --loop-runs 8)
  train_args=(--max-steps 4 --general-replay 4)
fi
[ -n "$BASE_MODEL" ] && train_args+=(--base-model "$BASE_MODEL")

LAB_URL="${JARVIS_LAB_URL:-http://127.0.0.1:8000}"
LAB_PID=""
stop_lab() {  # only the lab this run started; also on failure and Ctrl-C (the EXIT trap)
  [ -n "$LAB_PID" ] || return 0
  kill "$LAB_PID" 2>/dev/null || true
  wait "$LAB_PID" 2>/dev/null || true
  LAB_PID=""
  echo "[lab] stopped the local lab this run started"
}
trap stop_lab EXIT
trap 'echo "interrupted: finished steps keep their output; run the same command again to go on" >&2; exit 130' INT TERM

start_lab() {  # use the lab at JARVIS_LAB_URL when it answers, else start one on a free port
  if "$PY" -m benlab.lab_client "$LAB_URL" >/dev/null 2>&1; then
    echo "[lab] using the lab already running at $LAB_URL"
    return
  fi
  local port
  port="$("$PY" -c 'from benlab.lab_server import free_port; print(free_port())')"
  LAB_URL="http://127.0.0.1:$port"
  "$PY" jarvis_api.py --port "$port" --log-level warning >/dev/null &
  LAB_PID=$!
  if ! "$PY" -m benlab.lab_client "$LAB_URL" --wait 60 --pid "$LAB_PID" >/dev/null; then
    echo "error: the local lab did not start on port $port; run 'python jarvis_api.py' to see why" >&2
    exit 2
  fi
  echo "[lab] started a local lab at $LAB_URL; it stops when this script ends"
}

make_data() {
  start_lab
  "$PY" generate_lab_training_data.py --api-url "$LAB_URL" --out "$DATA/lab_instructions.jsonl" \
    --eval-out "$DATA/lab_eval.jsonl" "${data_args[@]}"
  stop_lab
  "$PY" generate_lab_doc_training_data.py --out "$DATA/lab_doc_instructions.jsonl"
}

step 1 "data" "$DATA/lab_instructions.jsonl" make_data
step 2 "fine-tune" "$LORA/adapter_model.safetensors" \
  "$PY" finetune_ben_lab.py --data "$DATA/lab_instructions.jsonl" "$DATA/lab_doc_instructions.jsonl" --eval-data "$DATA/lab_eval.jsonl" \
  --output-dir "$LORA" "${train_args[@]}"
step 3 "GGUF" "$OUT_DIR/ben-lab.gguf" \
  "$PY" export_ben_lab.py --step gguf --adapter-dir "$LORA" --out-dir "$OUT_DIR"
step 4 "Ollama" "" \
  "$PY" export_ben_lab.py --step install --adapter-dir "$LORA" --out-dir "$OUT_DIR" --ollama-mode "$OLLAMA_MODE"

if [ "$EVALUATE" -eq 1 ]; then
  echo "[eval] base vs fine-tuned on the held-out questions (--skip-eval skips this) ..."
  start=$SECONDS
  eval_args=()
  [ "$QUICK" -eq 1 ] && eval_args=(--limit 4)
  "$PY" evaluate_ben_lab.py --adapter-dir "$LORA" --eval-data "$DATA/lab_eval.jsonl" --out-dir "$OUT_DIR/eval" \
    --gguf "$OUT_DIR/ben-lab.gguf" "${eval_args[@]}"
  echo "[eval] done in $((SECONDS - start)) s: $OUT_DIR/eval/report.md"
fi

cat <<EOF

ben-lab is built. Artifacts:
  $DATA/lab_instructions.jsonl, $DATA/lab_eval.jsonl   training and held-out data
  $LORA/                                                LoRA adapter, metrics.json, loss_curve.png
  $OUT_DIR/ben-lab-adapter.gguf, $OUT_DIR/ben-lab.gguf  GGUF adapter and merged model
  $OUT_DIR/Modelfile                                    for Ollama
  $OUT_DIR/eval/report.md                               how much better it got at the lab than the base model
Chat with it (it runs lab experiments for you):
  $PY $ROOT/chat_with_lab.py --start-lab --gguf "$OUT_DIR/ben-lab.gguf"   (Ollama's ben-lab when installed, else llama.cpp)
  ollama run ben-lab                                     (when Ollama is installed and the model was created)
  $PY -m llama_cpp.server --model "$OUT_DIR/ben-lab.gguf"   (llama.cpp, OpenAI-compatible server)
EOF
