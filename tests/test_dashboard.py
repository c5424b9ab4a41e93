"""optuna-dashboard opens the study of a real `hparams_search=optuna` sweep, as the README says to start it: in the
sweep dir's SQLite file and in a PostgreSQL database."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import free_port, run_train, sweep_overrides
from postgres import new_database

pytest.importorskip("optuna_dashboard")


def get_json(url: str, timeout_s: float = 60.0):
    """GET url as JSON, retrying until the server answers (it takes a few seconds to start)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.parametrize("in_postgres", [False, True], ids=["sweep-dir", "postgresql"])
def test_the_dashboard_shows_the_trials_of_a_sweep(image_folder, tmp_path, in_postgres, request):
    url, storage = f"sqlite:///{tmp_path}/sweep/optuna.db", []
    if in_postgres:  # a database the sweep names
        url = new_database(request.getfixturevalue("postgres"))
        storage = [f"hydra.sweeper.storage={url}", "hydra.sweeper.study_name=catdog"]
    run_train(
        *sweep_overrides(image_folder, tmp_path),
        "hparams_search=optuna",
        *storage,
        "hydra.sweeper.n_trials=2",
        "trainer.max_epochs=2",
        "~callbacks.early_stopping",
    )
    sweep = tmp_path / "sweep"
    # the README's command, on loopback and a free port
    dashboard = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
    port = free_port()
    command = [dashboard, url, "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        studies = get_json(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
        (study,) = [s for s in studies if s["study_name"] == "catdog"]
        detail = get_json(f"http://127.0.0.1:{port}/api/studies/{study['study_id']}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    trials = detail["trials"]
    assert [(t["number"], t["state"]) for t in trials] == [(0, "Complete"), (1, "Complete")]
    for trial in trials:
        metrics = json.loads((sweep / str(trial["number"]) / "metrics.json").read_text())
        assert trial["values"] == [pytest.approx(metrics["val/acc"])]
        assert [v["step"] for v in trial["intermediate_values"]] == [1, 2]  # one report per epoch
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        assert attrs["run_dir"] == str(sweep / str(trial["number"]))
        assert {p["name"] for p in trial["params"]} >= {"model.optimizer.lr", "model.dropout"}
