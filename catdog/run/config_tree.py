"""The resolved config of a run, printed as a tree at its start (Hydra saves it as .hydra/config.yaml)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import rich
import rich.syntax
import rich.tree
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

ORDER = ("data", "model", "trainer", "callbacks", "logger", "paths")


def _branch(tree: rich.tree.Tree, name: str, node) -> None:
    tree.add(name, style="bold").add(
        rich.syntax.Syntax(OmegaConf.to_yaml(node).rstrip(), "yaml", theme="ansi_dark")
    )


@rank_zero_only
def print_config_tree(cfg: DictConfig, order: Sequence[str] = ORDER) -> None:
    """One branch per config group (the main groups first), then the top-level values, all resolved."""
    resolved = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    tree = rich.tree.Tree("config", style="bold", guide_style="dim")
    groups = [k for k in order if k in resolved] + [
        k for k, v in resolved.items() if isinstance(v, dict) and k not in order
    ]
    for key in groups:
        _branch(tree, key, resolved[key] if resolved[key] is not None else {})
    scalars = {k: v for k, v in resolved.items() if k not in groups}
    if scalars:
        _branch(tree, "run", scalars)
    rich.print(tree)
