"""Running again in an existing run dir (a resume): the command that does it, the run's own overrides restored, and
the run's record kept.

- An interrupted run prints the command that resumes it: its program, config flags and every override it was
  started with, its run dir and `ckpt_path=last`.
- `python train.py hydra.run.dir=<run dir> ckpt_path=last|auto [changes]` restores the overrides that run dir's
  last run was started with (Hydra would otherwise compose the defaults: other data, another model); an override
  given on the command line replaces the recorded one of the same key.
- Hydra writes each run's config to `<run dir>/.hydra/`: a later run in the same dir writes to
  `.hydra/resume_<n>/` instead, so `.hydra/` stays the record of the run as it was started.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from catdog.overrides import current_spelling, parse_overrides

RECORD = "overrides.yaml"
RESUME_PREFIX = "resume_"
RESUMING = ("last", "auto")
# characters Hydra's override grammar reads as syntax in an unquoted value
HYDRA_SPECIAL = re.compile(r"[\s=,\[\]{}()'\"\\]")


def records(output_subdir: Path) -> list[Path]:
    """The record folders of the runs in a run dir, first run first: `.hydra`, `.hydra/resume_1`, ..."""
    later = [p for p in output_subdir.glob(f"{RESUME_PREFIX}*") if p.name[len(RESUME_PREFIX) :].isdigit()]
    found = [output_subdir, *sorted(later, key=lambda p: int(p.name[len(RESUME_PREFIX) :]))]
    return [p for p in found if (p / RECORD).is_file()]


class KeepRunRecord(Callback):
    """Hydra callback: when the run dir already holds a run's `.hydra/` files, this run's go to `.hydra/resume_<n>/`
    (Hydra writes them right after this hook, before catdog's code runs)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        subdir = config.hydra.output_subdir
        if subdir is None:
            return
        found = records(Path(config.hydra.run.dir) / subdir)
        if found:
            with read_write(config.hydra), open_dict(config.hydra):
                config.hydra.output_subdir = f"{subdir}/{RESUME_PREFIX}{len(found)}"


def restore_overrides(argv: list[str]) -> list[str]:
    """`argv` with the recorded overrides of the run it resumes put first (see the module's docstring); unchanged
    unless it sets ckpt_path=last|auto and a hydra.run.dir whose .hydra/ holds a record."""
    given = [a for a in argv if not a.startswith("-") and ("=" in a or a.startswith("~"))]
    parsed = {o.key_or_group: o for o in parse_overrides(given)}
    ckpt, run_dir = parsed.get("ckpt_path"), parsed.get("hydra.run.dir")
    if ckpt is None or run_dir is None or str(ckpt.value()) not in RESUMING:
        return argv
    found = records(Path(str(run_dir.value())) / ".hydra")
    if not found:
        return argv
    recorded = [current_spelling(str(o)) for o in OmegaConf.load(found[-1] / RECORD)]  # 0.2's model.net.*
    # a run started with init_from goes on from its own checkpoint
    dropped = {*parsed, *(("init_from",) if str(ckpt.value()) == "last" else ())}
    restored = [
        s for s, o in zip(recorded, parse_overrides(recorded), strict=True) if o.key_or_group not in dropped
    ]
    if restored:
        print(f"Resuming {run_dir.value()} with its overrides: {shlex.join(restored)}", file=sys.stderr)
    return [*restored, *argv]


def shown_program(command: list[str]) -> list[str]:
    """The interpreter and script of `command` as a user types them: `python` when that is this interpreter, the
    script relative to the working dir when it is below it."""
    python, *rest = command
    on_path = shutil.which("python")
    if on_path and os.path.samefile(on_path, python):
        python = "python"
    if rest and rest[0] != "-m" and os.path.isabs(rest[0]):
        relative = os.path.relpath(rest[0])
        rest[0] = rest[0] if relative.startswith("..") else relative
    return [python, *rest]


def resume_command(run_dir: str) -> str:
    """The shell command that resumes this run from `<run_dir>/checkpoints/last.ckpt`: this run's program and
    config flags, its overrides (any ckpt_path replaced) and its run dir."""
    from hydra.core.hydra_config import HydraConfig

    from catdog.run.launch import ENTRY_ENV, program

    entry = json.loads(os.environ.get(ENTRY_ENV) or json.dumps(program()))
    task = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    # the resume goes on from the run's own checkpoint: no init_from
    replaced = ("ckpt_path", "init_from")
    kept = [s for s, o in zip(task, parse_overrides(task), strict=True) if o.key_or_group not in replaced]
    if HYDRA_SPECIAL.search(
        run_dir
    ):  # sweep job dirs hold = , [ ]: quoted for Hydra, inside the shell's quotes
        run_dir = "'" + run_dir.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return shlex.join([*shown_program(entry), *kept, f"hydra.run.dir={run_dir}", "ckpt_path=last"])
