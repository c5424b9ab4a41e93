"""catdog's benchmark suite (`make bench`, `python -m benchmarks [NAMES...]`): kept outside the package, since it
reads the shared data beside the repository and appends to the repository's BENCHMARKS.md."""
