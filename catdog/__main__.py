"""The `catdog` command: `catdog <command> [overrides]`, the same as `python -m catdog.<command> [overrides]`.

Commands:
  train     train a network (python train.py in a clone); -m runs a sweep, hparams_search=optuna a search
  prepare   decode and cache the photos of data.source; print counts, skipped files and copies
  evaluate  score a checkpoint on its held-out split or any labelled photos
  predict   label photos with a checkpoint or an export
  export    write an ONNX or .pt2 file (optionally int8) with its preprocessing
  serve     a demo page and a JSON API for a checkpoint or an export
  audit     rank photos whose label is doubtful, outliers and copies

`catdog <command> --help` explains one command. Overrides are Hydra's (`key=value`; `--config-dir DIR` adds a
folder of your own configs).
"""

import runpy
import sys

COMMANDS = {
    "train": "catdog.train",
    "prepare": "catdog.prepare",
    "evaluate": "catdog.evaluate",
    "predict": "catdog.predict",
    "export": "catdog.export",
    "serve": "catdog.serve",
    "audit": "catdog.audit",
}


def main(argv: list[str] | None = None) -> None:
    """Run `argv[0]`'s module as `python -m` would, with the rest of `argv` as its command line."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        sys.exit(0 if argv else 2)
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        sys.exit(
            f"error: catdog has no command {command!r}; use one of: {', '.join(COMMANDS)} (catdog --help)."
        )
    sys.argv = [f"catdog {command}", *rest]
    runpy.run_module(COMMANDS[command], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
