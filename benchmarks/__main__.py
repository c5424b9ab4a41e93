# importing the benchmark modules registers their benchmarks
from benchmarks import (  # noqa: F401
    accuracy,
    audit,
    augment,
    deploy,
    efficiency,
    preprocessing,
    serving,
    startup,
    sweeps,
    training,
)
from benchmarks.record import main

main()
