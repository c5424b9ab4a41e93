"""Not part of the package: Python imports this file only as `import catdog` run in the folder above a clone named
`catdog`, where the clone itself is found first (before the installed package) and, without this file, would be an
empty namespace package (`module 'catdog' has no attribute 'load'`). It loads the package inside, catdog/catdog, as
`catdog`, so `import catdog; catdog.load(...)` and `python -m catdog.predict` work from there too."""

import importlib.util
import sys
from pathlib import Path

_inner = Path(__file__).resolve().parent / "catdog"
# only as `catdog`: a tool that imports this folder as a package of another name (pytest's collection imports it as
# the clone folder's name) must not replace the catdog package it already loaded
if __name__ == "catdog":
    _spec = importlib.util.spec_from_file_location(
        "catdog", _inner / "__init__.py", submodule_search_locations=[str(_inner)]
    )
    _package = importlib.util.module_from_spec(_spec)
    sys.modules["catdog"] = (
        _package  # the import statement returns what sys.modules holds once this file has run
    )
    _spec.loader.exec_module(_package)
