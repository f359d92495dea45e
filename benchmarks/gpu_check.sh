#!/usr/bin/env bash
# One-GPU check of umitrain's training speed against TRL (issue 18), in under 5 minutes, no network.
#
#   benchmarks/gpu_check.sh [SPLIT_DIR]     # an `umidata split` output; default: a synthetic split
#
# Python packages needed beyond PyTorch (CUDA build, >= 2.10 for torch.nn.attention.varlen) and
# transformers: accelerate, datasets, tokenizers, safetensors, pyyaml, trl (the `train` extra) and
# peft (the `lora` extra, for the LoRA rows). Optional: flash-attn (then umitrain uses
# flash_attention_2; the JSON records whether it was there). Nothing is downloaded: the models are
# random-weight Qwen2 / Llama-2 shapes built from configs, the tokenizer is trained on the split.
#
# Writes benchmarks/results/train-gpu.json and benchmarks/results/train-gpu.log.
# Rehearse it on CPU first: GPU_CHECK_DRY_RUN=1 benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p benchmarks/results
if [[ $# -ge 1 ]]; then src=(--data "$1"); else src=(--synthetic "${GPU_CHECK_EXAMPLES:-400}"); fi
"$PY" - <<'PY'
import importlib, sys
missing = [m for m in ("torch", "transformers", "accelerate", "datasets", "trl", "peft") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu_check: missing Python packages: {' '.join(missing)} (pip install -e '.[train,lora]')")
import torch
print(f"torch {torch.__version__}, CUDA {torch.cuda.is_available()}, "
      f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}", flush=True)
PY
if [[ -n "${GPU_CHECK_DRY_RUN:-}" ]]; then
  exec "$PY" benchmarks/bench_train.py "${src[@]}" --roles global --cpu-steps 0 --gpu --dry-run \
    --gpu-steps 3 --warmup-steps 1 -o benchmarks/results/train-gpu-dry-run.json
fi
timeout "${GPU_CHECK_TIMEOUT:-290}" "$PY" benchmarks/bench_train.py "${src[@]}" --roles global --cpu-steps 0 --gpu \
  --gpu-steps "${GPU_CHECK_STEPS:-6}" --warmup-steps 2 -o benchmarks/results/train-gpu.json \
  2>&1 | tee benchmarks/results/train-gpu.log
