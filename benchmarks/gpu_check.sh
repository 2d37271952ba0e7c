#!/usr/bin/env bash
# GPU path check on a CUDA machine, in under 5 minutes: W32 training at fp32 / fp16 AMP / bf16
# (50 steps, channels_last), inference with and without the optimised path, ONNX Runtime's CUDA
# provider, and a 2-worker Ray Train run sharing one GPU. Writes gpu_check.json.
#   bash benchmarks/gpu_check.sh [OUT_DIR]        (default: benchmarks/results)
# Python: $PYTHON, else the project's .venv if its torch sees a GPU, else python3. A machine that
# cannot reach a package index may hold the missing packages as wheels in .whl/ (see README).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-${OUT:-$root/benchmarks/results}}"
py="${PYTHON:-}"
if [ -z "$py" ] && [ -x "$root/.venv/bin/python" ] && \
   "$root/.venv/bin/python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  py="$root/.venv/bin/python"
fi
py="${py:-python3}"
export PYTHONPATH="$root/platform${PYTHONPATH:+:$PYTHONPATH}"
if ! "$py" -c "import mmengine, pycocotools" 2>/dev/null && ls "$root"/.whl/*.whl >/dev/null 2>&1; then
  echo "[gpu_check] installing the wheels in .whl/ into /tmp/densepred-site"
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/densepred-site "$root"/.whl/*.whl || exit 1
  export PYTHONPATH="$PYTHONPATH:/tmp/densepred-site"
  export PATH="/tmp/densepred-site/bin:$PATH"
fi
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}" PYTHONUNBUFFERED=1
cd "$root"
exec "$py" benchmarks/gpu_check.py --out "$out" "${@:2}"
