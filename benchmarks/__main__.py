# importing the benchmark modules registers their benchmarks
from benchmarks import (  # noqa: F401
    accuracy,
    audit,
    augment,
    choice,
    deploy,
    efficiency,
    finetune,
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
