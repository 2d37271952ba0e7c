#!/usr/bin/env bash
# Run the test suite in the project's virtual environment (created on first use).
# Usage: scripts/test.sh [--slow] [pytest args...]   (--slow also runs the long end-to-end tests)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/env.sh"
cd "$root"
marker=(-m "not slow")
if [ "${1:-}" = "--slow" ]; then marker=(); shift; fi
exec python -m pytest -q "${marker[@]}" "$@"
