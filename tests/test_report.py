"""The sweep report page summary.html: what it holds, and that it renders offline in real headless Chromium with no
console error."""

from __future__ import annotations

import json
import shutil

import pytest
from omegaconf import OmegaConf

from catdog.sweeps.report import curve, dimension
from catdog.sweeps.summary import write_summary

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def job(sweep, num: int, overrides: dict, seed: int, status: str, curve_values: list[float]):
    """A job dir as a sweep leaves it: Hydra's files, a real TensorBoard event file of val/acc per epoch, and
    metrics.json (ok), metrics.json + pruned.json (pruned) or failed.json (failed)."""
    from torch.utils.tensorboard import SummaryWriter

    d = sweep / str(num)
    (d / ".hydra").mkdir(parents=True)
    OmegaConf.save({"hydra": {"job": {"num": num}}}, d / ".hydra" / "hydra.yaml")
    OmegaConf.save({"seed": seed, "data": {"fold": None}}, d / ".hydra" / "config.yaml")
    OmegaConf.save(
        [f"{k}={v}" for k, v in {**overrides, "seed": seed}.items()], d / ".hydra" / "overrides.yaml"
    )
    writer = SummaryWriter(str(d / "tensorboard"))
    for epoch, value in enumerate(curve_values):
        writer.add_scalar("val/acc", value, 10 * (epoch + 1))
    writer.close()
    metrics = {"val/acc": curve_values[-1], "val/n_images": 500} if curve_values else {}
    if status in ("ok", "pruned"):
        (d / "metrics.json").write_text(json.dumps(metrics))
        wrong = round((1 - curve_values[-1]) * 500)  # the first photos are the hard ones
        rows = [f"Cat/{i}.jpg,Cat,{'Dog' if i < wrong else 'Cat'},{int(i >= wrong)},0.9" for i in range(500)]
        (d / "predictions_val.csv").write_text("\n".join(["path,label,predicted,correct,probability", *rows]))
    if status == "pruned":
        (d / "pruned.json").write_text(json.dumps({"epochs": len(curve_values), "metric": "val/acc"}))
    if status == "failed":
        (d / "failed.json").write_text(json.dumps({"error": "CatdogError: data.resolution=4 is too small"}))


@pytest.fixture
def sweep(tmp_path):
    """Two settings x two seeds, one pruned and one failed job."""
    runs = [
        ({"model.optimizer.lr": 0.001, "model.kernel": 3}, 0, "ok", [0.6, 0.7, 0.75, 0.78]),
        ({"model.optimizer.lr": 0.001, "model.kernel": 3}, 1, "ok", [0.62, 0.69, 0.74, 0.77]),
        ({"model.optimizer.lr": 0.01, "model.kernel": 5}, 0, "ok", [0.65, 0.75, 0.8, 0.83]),
        ({"model.optimizer.lr": 0.01, "model.kernel": 5}, 1, "ok", [0.64, 0.77, 0.81, 0.82]),
        ({"model.optimizer.lr": 0.1, "model.kernel": 5}, 0, "pruned", [0.5, 0.52]),
        ({"model.optimizer.lr": 0.0001, "model.kernel": 7}, 0, "failed", []),
    ]
    for num, (overrides, seed, status, values) in enumerate(runs):
        job(tmp_path, num, overrides, seed, status, values)
    write_summary(tmp_path, "val/acc", maximize=True)
    return tmp_path


def test_the_report_holds_the_curves_groups_and_stopped_jobs(sweep):
    page = (sweep / "summary.html").read_text()
    assert curve(sweep / "2", "val/acc") == pytest.approx([0.65, 0.75, 0.8, 0.83])
    assert curve(sweep / "5", "val/acc") == []
    import plotly.offline

    # self-contained: the library inline, no script fetched (the browser test sees no request leave the file)
    assert "<script src=" not in page and plotly.offline.get_plotlyjs()[-2000:] in page
    assert page.count('class="plotly-graph-div"') == 3  # parameters, curves, seed groups
    assert "6 jobs, 4 ok, 1 pruned (stopped early by the pruner; not results), 1 failed or missing." in page
    assert "Best val/acc: 0.8300 on 500 val photos, job 2" in page
    assert "pruned after epoch 2" in page and "CatdogError: data.resolution=4 is too small" in page
    assert "`model.optimizer.lr=0.01 model.kernel=5` vs `model.optimizer.lr=0.001 model.kernel=3`" in page
    assert "Holm p=" in page and "1,000 paired val photos over 2 pair(s) of runs" in page


def test_parallel_coordinate_axes():
    lr = dimension("lr", ["0.0001", "0.01", "0.001"])
    assert lr["label"] == "lr (log)" and lr["values"] == pytest.approx([-4, -2, -3])
    assert dimension("kernel", ["3", "5"]) == {"label": "kernel", "values": [3.0, 5.0]}
    channels = dimension("channels", ["[8,16]", "[4,8]", "[8,16]"])
    assert channels["values"] == [1, 0, 1] and channels["ticktext"] == ["[4,8]", "[8,16]"]


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (apt-get install chromium)")
def test_the_report_renders_offline_in_a_real_browser_without_console_errors(sweep, tmp_path):
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip extra: dev)"
    )
    errors, requests = [], []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto((sweep / "summary.html").as_uri())
            sync_api.expect(page.locator(".js-plotly-plot")).to_have_count(3, timeout=30_000)
            assert page.locator(".parcoords").count() == 1  # the parallel-coordinates plot drew
            legend = page.locator(".legendtext").evaluate_all("els => els.map(e => e.textContent)")
            assert "job 4 (pruned)" in legend and "job 0 (ok)" in legend
            page.screenshot(path=tmp_path / "report.png", full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert all(url.startswith(("file:", "data:", "blob:")) for url in requests), requests  # no network
    assert (tmp_path / "report.png").stat().st_size > 10_000
