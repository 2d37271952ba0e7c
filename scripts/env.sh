# Create (or reuse) the project's virtual environment in .venv, install what it needs, and put it
# on PATH. Source it from any folder: `source scripts/env.sh` (scripts/demo.sh and scripts/test.sh
# do). It changes no option of the calling shell: the installation runs in a subshell with its own
# `set -euo pipefail`, so a failure there returns non-zero instead of closing a terminal.
# torch is pinned and installed first (a CPU wheel here); then the package with its dependencies,
# every version held to scripts/constraints.txt (the versions the test suite passed with).
# Re-installs only when pyproject.toml or the constraints changed since the last installation, and
# never into a .venv that is a symbolic link to an environment elsewhere.

_densepred_env() {
  local root venv
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" || return 1
  venv="$root/.venv"
  (
    set -euo pipefail
    py="${PYTHON:-python3}"
    if [ ! -x "$venv/bin/python" ]; then
      echo "[env] creating virtual environment in $venv"
      "$py" -m venv "$venv"
    fi
    stamp="$venv/.densepred-env-stamp"
    want="$(cat "$root/pyproject.toml" "$root/scripts/constraints.txt" | sha256sum | cut -d' ' -f1)"
    if [ -L "$venv" ]; then
      :  # a linked environment (e.g. the test suite's own) is installed and updated where it lives
    elif [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
      echo "[env] installing torch==2.13.0, then the platform and its dependencies (a few minutes the first time)"
      pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
      "${pip[@]}" --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
      "${pip[@]}" "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
      # The two OpenCV wheels share the cv2/ folder: only the contrib build (pyproject) may stay.
      "$venv/bin/python" -m pip uninstall -q -y opencv-python-headless >/dev/null 2>&1 || true
      "${pip[@]}" -c "$root/scripts/constraints.txt" -e "$root[test,export,fast-eval,tracking,mtl]" 2>&1 \
        | grep -v "^WARNING: Location" || true
      "$venv/bin/python" -c "import torch, ray, mmengine, cv2, pycocotools, cityscapesscripts, mlflow, torchjd, densepred; cv2.HOGDescriptor" \
        || { echo "[env] installation failed" >&2; exit 1; }
      echo "$want" > "$stamp"
    fi
  ) || return 1
  case ":$PATH:" in
    *":$venv/bin:"*) ;;
    *) export PATH="$venv/bin:$PATH" ;;
  esac
  export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"
}

_densepred_env
_densepred_env_status=$?
unset -f _densepred_env
if [ "$_densepred_env_status" -ne 0 ]; then
  unset _densepred_env_status
  return 1 2>/dev/null || exit 1
fi
unset _densepred_env_status
