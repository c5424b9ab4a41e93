"""A sweep in which the pruner certainly prunes one trial, and the checks of what it leaves: run through the joblib
launcher (tests/test_study.py) and through a real SLURM (tests/cluster/test_slurm.py)."""

from __future__ import annotations

from pathlib import Path

import torch
from helpers import read_csv, sweep_overrides
from omegaconf import OmegaConf

# no accuracy reaches 1.01, so this pruner stops every trial it judges; warmup 2 leaves epoch 1 unjudged
THRESHOLD = "{_target_:optuna.pruners.ThresholdPruner,lower:1.01,n_warmup_steps:2}"


def pruning_overrides(source: Path, out: Path) -> list[str]:
    """Two tiny trials launched together (BruteForceSampler over the command line's max_epochs): one of 2 epochs,
    which the pruner would stop after epoch 2 but for the rule that a trial's last epoch is never judged, and one of
    3 that the pruner stops after epoch 2."""
    tiny = [o for o in sweep_overrides(source, out) if not o.startswith("trainer.max_epochs=")]
    return [
        *tiny,
        "hparams_search=optuna",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweeper.pruner={THRESHOLD}",
        "hydra.sweeper.sampler._target_=optuna.samplers.BruteForceSampler",
        "~hydra.sweeper.sampler.n_startup_trials",
        "hydra.sweeper.params=null",  # the command line's sweep is the search space
        "trainer.max_epochs=choice(2,3)",
        "~callbacks.early_stopping",
    ]


def check_pruned_sweep(sweep: Path) -> None:
    """The 3-epoch trial is PRUNED in the study and `pruned` in the summary, no result, with its checkpoint of
    epoch 2 and its TensorBoard curves kept; the 2-epoch trial, judged at no epoch of its own, is the best."""
    import optuna

    rows = {r["trainer.max_epochs"]: r for r in read_csv(sweep / "summary.csv")}
    assert (rows["2"]["status"], rows["3"]["status"]) == ("ok", "pruned")
    assert rows["3"]["error"] == "pruned after epoch 2" and rows["3"]["n_seeds"] == "0"  # not a result
    summary = (sweep / "summary.md").read_text()
    assert (
        "2 jobs, 1 ok, 1 pruned" in summary and f"job {rows['2']['job']} " in summary.split("Best val/acc")[1]
    )
    study = optuna.load_study(study_name="catdog", storage=f"sqlite:///{sweep}/optuna.db")
    states = {t.params["trainer.max_epochs"]: t for t in study.trials}
    assert states[3].state.name == "PRUNED" and sorted(states[3].intermediate_values) == [1, 2]
    assert states[2].state.name == "COMPLETE" and list(states[2].intermediate_values) == [1, 2]
    assert OmegaConf.load(sweep / "optimization_results.yaml").best_trial == states[2].number
    pruned_dir = sweep / rows["3"]["job"]
    ckpt = torch.load(pruned_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 1 and len(list(pruned_dir.rglob("events.out.tfevents.*"))) == 1
