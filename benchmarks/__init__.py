"""catdog's benchmark suite (`make bench`, `python -m benchmarks [NAMES...]`): kept outside the package, since it
reads the shared data beside the repository and appends rows to the repository's results/<benchmark>.csv, from
which `python -m benchmarks.results` (`make results`) regenerates RESULTS.md."""
