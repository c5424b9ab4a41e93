"""Moved: the benchmark suite is `python -m benchmarks` (or `make bench`) from the repository root."""

import sys

sys.exit(
    "error: catdog.bench moved: run `python -m benchmarks [NAMES...]` (or `make bench`) in the repository."
)
