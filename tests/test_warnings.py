"""pyproject.toml's filterwarnings: a deprecated call in catdog's own code fails the tests; third-party warnings are
ignored only by name."""

from __future__ import annotations

import warnings

import pytest


def warn_from(module: str, category: type[Warning] = DeprecationWarning) -> None:
    """A warning attributed to `module`, as one raised for its caller (stacklevel=2) is."""
    warnings.warn_explicit(
        "old API", category, filename=f"{module.replace('.', '/')}.py", lineno=1, module=module
    )


@pytest.mark.parametrize(
    "module", ["catdog.run.training", "catdog", "hydra_plugins.catdog_optuna_sweeper.sweeper"]
)
def test_a_deprecation_in_catdogs_own_code_fails_the_test(module):
    with pytest.raises(DeprecationWarning, match="old API"):
        warn_from(module)


def test_third_party_warnings_are_reported_or_ignored_by_name_not_raised():
    with warnings.catch_warnings(record=True) as seen:  # the test's filters kept, what passes them recorded
        warn_from("torch.onnx")  # another library's deprecation: reported in pytest's summary, not an error
        warn_from("pytorch_lightning.utilities._pytree", FutureWarning)  # ignored by name in pyproject.toml
        warn_from("pytorch_lightning.trainer", FutureWarning)  # the same warning elsewhere is reported
    assert [(w.category, w.filename) for w in seen] == [
        (DeprecationWarning, "torch/onnx.py"),
        (FutureWarning, "pytorch_lightning/trainer.py"),
    ]
