# importing the benchmark modules registers their benchmarks
from benchmarks import (  # noqa: F401
    accuracy,
    architectures,
    audit,
    augment,
    choice,
    deploy,
    efficiency,
    finetune,
    longer_runs,
    preprocessing,
    scale,
    serving,
    speed_settings,
    startup,
    sweeps,
    training,
)
from benchmarks.record import main

main()
