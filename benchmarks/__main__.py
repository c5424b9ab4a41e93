# importing the benchmark modules registers their benchmarks
from benchmarks import accuracy, efficiency, preprocessing, startup, sweeps, training  # noqa: F401
from benchmarks.record import main

main()
