#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install what it needs.
# torch is pinned and installed first (a CPU wheel here); then the package with its dependencies.
# Re-installs only when pyproject.toml changed since the last successful install.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
py="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  echo "[env] creating virtual environment in $venv"
  "$py" -m venv "$venv"
fi
stamp="$venv/.densepred-env-stamp"
want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[env] installing torch==2.13.0, then the platform and its dependencies (a few minutes the first time)"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
  # The two OpenCV wheels share the cv2/ folder: only the contrib build (pyproject) may stay.
  "$venv/bin/python" -m pip uninstall -q -y opencv-python-headless >/dev/null 2>&1 || true
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$root[test,export,fast-eval]" 2>&1 | grep -v "^WARNING: Location" || true
  "$venv/bin/python" -c "import torch, ray, mmengine, cv2, pycocotools, cityscapesscripts, densepred; cv2.HOGDescriptor" \
    || { echo "[env] installation failed" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"
