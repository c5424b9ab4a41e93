"""`python -m benchmarks.results`: RESULTS.md and README.md's presets table regenerated from results/*.csv rows,
and `--check` (in `make lint`) failing when a generated file differs from what the rows give."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
from helpers import ROOT

from benchmarks import results
from benchmarks.results import COLUMNS, END, PRESET_ACCURACY, PRESET_TIME, START

XEON, EPYC = "Intel Xeon, 2 CPUs", "AMD EPYC (family 25 model 17), 2 CPUs"


def row(date, metric, value, cpu=XEON, gpu="", goal="", met="measured", seeds="", note="", commit="abc1234"):
    return dict(zip(COLUMNS, (date, commit, cpu, gpu, seeds, metric, value, goal, met, note)))


def write_rows(folder, name, rows):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture
def checkout(tmp_path):
    """A tree with rows of two benchmarks and a README holding the presets markers."""
    fast = "time_to_accuracy_fast"
    write_rows(
        tmp_path / "results",
        fast,
        [
            row(
                "2026-12-01 10:00",
                PRESET_ACCURACY,
                "94.10 +- 0.50",
                goal=">= 94.5",
                met="MISSED",
                seeds="10-12",
            ),
            row("2026-12-01 10:00", PRESET_TIME, "5.0 +- 0.1", goal="<= 4 each", met="MISSED", seeds="10-12"),
            row(
                "2026-12-02 10:00", PRESET_ACCURACY, "95.15 +- 0.27", goal=">= 94.5", met="met", seeds="40-42"
            ),
            row("2026-12-02 10:00", PRESET_TIME, "4.2 +- 0.1", goal="<= 4 each", met="MISSED", seeds="40-42"),
            row(
                "2026-12-03 10:00",
                PRESET_ACCURACY,
                "94.99 +- 0.50",
                EPYC,
                goal=">= 94.5",
                met="met",
                seeds="60-62",
            ),
            row(
                "2026-12-03 10:00",
                PRESET_TIME,
                "6.0 +- 0.2",
                EPYC,
                goal="<= 4 each",
                met="MISSED",
                seeds="60-62",
            ),
            # seeds looked at while the preset was chosen: in RESULTS.md, not in the presets table
            row("2026-12-04 10:00", "test accuracy, seeds scored while choosing (%)", "94.66", seeds="0-2"),
        ],
    )
    write_rows(
        tmp_path / "results", "startup", [row("2026-12-02 11:00", "python train.py --help (s)", "0.61")]
    )
    (tmp_path / "README.md").write_text(f"# tool\n\nIntro.\n\n{START}\nstale table\n{END}\n\n## Rest\nkept\n")
    return tmp_path


def test_the_rows_regenerate_the_status_and_the_presets_table(checkout):
    assert results.main([], root=checkout) == 0
    status = (checkout / "RESULTS.md").read_text()
    readme = (checkout / "README.md").read_text()
    # one row per goal and machine, its latest result: the Xeon's 12-02 replaced its 12-01, the EPYC's beside it
    assert "94.10" not in status and status.count("95.15 +- 0.27") == 1 and status.count("94.99 +- 0.50") == 1
    assert "| python train.py --help (s) |  | 0.61 | measured |" in status
    assert status.index("## startup") < status.index("## time_to_accuracy_fast")  # by name
    table = readme.split(START)[1].split(END)[0]
    assert readme.startswith("# tool\n\nIntro.\n\n") and readme.endswith(f"{END}\n\n## Rest\nkept\n")
    assert "stale table" not in readme and "94.66" not in table
    assert f"| `fast` | 95.15 +- 0.27 % | 40-42 | 4.2 +- 0.1 | {XEON} |" in table
    assert f"| `fast` | 94.99 +- 0.50 % | 60-62 | 6.0 +- 0.2 | {EPYC} |" in table
    assert "`make bench ARGS=time_to_accuracy_fast`" in table
    # the same rows give the same files: nothing to rewrite, and --check passes
    before = {p: p.read_bytes() for p in (checkout / "RESULTS.md", checkout / "README.md")}
    assert results.main([], root=checkout) == 0 and results.main(["--check"], root=checkout) == 0
    assert {p: p.read_bytes() for p in before} == before


def test_check_fails_on_a_hand_edited_status_and_on_new_rows(checkout, capsys):
    results.main([], root=checkout)
    status = checkout / "RESULTS.md"
    edited = status.read_text().replace("95.15 +- 0.27", "96.00 +- 0.10")
    status.write_text(edited)
    assert results.main(["--check"], root=checkout) == 1
    assert "error: RESULTS.md differs from what results/*.csv give" in capsys.readouterr().err
    assert status.read_text() == edited  # --check writes nothing

    results.main([], root=checkout)
    with open(checkout / "results" / "startup.csv", "a") as f:
        f.write("2026-12-05 11:00,def5678,Intel Xeon,,,python train.py --help (s),0.58,,measured,\n")
    assert results.main(["--check"], root=checkout) == 1
    assert "RESULTS.md" in capsys.readouterr().err


def test_a_malformed_row_or_a_readme_without_markers_is_one_error_line(checkout):
    (checkout / "README.md").write_text("# tool\n")
    with pytest.raises(SystemExit, match=r"error: README.md has no <!-- presets:start --> \.\.\. "):
        results.main([], root=checkout)
    with open(checkout / "results" / "startup.csv", "a") as f:
        f.write("2026-12-05,abc,too few\n")
    with pytest.raises(SystemExit, match=r"error: .*startup.csv row 3 has 3 fields, not 10"):
        results.main([], root=checkout)
    (checkout / "results" / "startup.csv").write_text("date,value\n")
    with pytest.raises(SystemExit, match=r"startup.csv: the first line must be the header date,commit,cpu"):
        results.main([], root=checkout)


def test_the_committed_status_and_readme_are_what_the_committed_rows_give():
    """What `make lint` runs, as a user runs it: the repository's RESULTS.md and README table are up to date."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.results", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert (ROOT / "RESULTS.md").read_text() == results.status_page(results.read_rows(ROOT / "results"))
