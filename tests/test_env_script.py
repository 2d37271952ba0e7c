"""`source scripts/env.sh`, as the README says, from any folder: it changes no option of the user's
shell (a stray `set -e` would close the terminal at the next failing command) and puts `platform`
on the PATH. The environment exists already when the suite runs, so nothing is installed."""
from __future__ import annotations

import subprocess

from conftest import REPO


def test_sourcing_the_environment_script_leaves_the_shell_options_alone(tmp_path):
    script = f"""
before=$(set -o; shopt -p)
source {REPO}/scripts/env.sh
status=$?
after=$(set -o; shopt -p)
[ "$before" = "$after" ] && echo "options unchanged"
echo "status $status"
command -v platform
false
echo "still here after a failing command"
"""
    res = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    lines = res.stdout.splitlines()
    assert "options unchanged" in lines, res.stdout + res.stderr
    assert "status 0" in lines
    assert any(line.endswith("/.venv/bin/platform") for line in lines), res.stdout
    assert lines[-1] == "still here after a failing command"
