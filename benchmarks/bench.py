"""Machine benchmark: the same code as `platform bench` (densepred.bench), as a script.

    python benchmarks/bench.py [--quick] [--out FILE] [--only SECTION ...]

Prints a table and writes JSON (default benchmarks/results/<YYYY-MM-DD>-<machine id>.json) with a
chart next to it; see `platform bench --help`.
"""
from __future__ import annotations

import sys

from densepred.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
