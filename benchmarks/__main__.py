# importing the benchmark modules registers their benchmarks
from benchmarks import accuracy, audit, augment, efficiency, preprocessing, startup, training  # noqa: F401
from benchmarks.record import main

main()
