"""The README's and the docs pages' commands and code as written: every `python train.py ...` / `python -m
catdog.<command> ...` / `catdog <command> ...` line and every override they quote on their own composes, and the
deploy page's onnxruntime snippet runs on the export of a grayscale model (what `make train` trains)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import ROOT, make_image, train_checkpoint, write_class_folders
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from catdog.overrides import arch_card

README = (ROOT / "README.md").read_text()
# every docs page is held to the same standard
PAGES = sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "benchmark-log.md")  # the log is history
# the entry points: `python train.py`, `python -m catdog.evaluate`, ..., each composing configs/<its name>.yaml but
# prepare, which composes train.py's config
CONFIGS = {"prepare": "train"}
COMMAND = re.compile(r"^(?:python train\.py|python -m catdog\.(\w+)|catdog (\w+))(?=\s|$)")
# overrides quoted on their own (`model.kernel=3,5`, `debug=overfit`), each word a key of the train config's top
# level, then `=`: not an error message that starts with one (`data.batch_size=0 is invalid: ...`)
# (a `hydra.sweeper.*` or `hydra.launcher.*` key quoted alone belongs to a sweeper or launcher its sentence names)
TRAIN_KEYS = r"data|model|trainer|callbacks|logger|paths|hydra/\w+|experiment|debug|hparams_search|tune|seed|threads|test"
OVERRIDE = re.compile(rf"^(?:[+~]?(?:{TRAIN_KEYS})(?:[./][\w.]+)?=\S*(?: |$))+$")


def commands(text: str) -> list[str]:
    """The command lines the README writes: in shell blocks (continuation lines joined, comments cut) and in
    backticks in its prose."""
    text = re.sub(r"\\\n\s*", " ", text)
    found = []
    for block in re.findall(r"```(?:bash|sh|shell|console)?\n(.*?)```", text, re.S):
        found += [line.split(" #")[0].strip() for line in block.splitlines()]
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    # a code span opens and closes with the same number of backticks (``a `b` c``)
    spans = re.findall(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", prose, re.S)
    found += [" ".join(span.split()) for _, span in spans]
    return list(dict.fromkeys(line for line in found if COMMAND.match(line) or OVERRIDE.match(line)))


def overrides(line: str) -> tuple[str, list[str]]:
    """The config a README line composes and its overrides, with the README's placeholders filled in: `<time>` and
    `$RANDOM` as values, `[port=8000]` as the optional override it stands for, `[overrides]` as none, and the
    choices of `model/optimizer=adam|adamw|sgd` as a sweep over them."""
    line = re.sub(r"<[^>]+>", "x", line).replace("$RANDOM", "0")
    line = re.sub(r"=(\w+(?:\|\w+)+)(?=\s|$)", lambda m: "=" + m.group(1).replace("|", ","), line)
    line = re.sub(r"(^|\s)\[([^\[\]]*=[^\[\]]*)\]", r"\1\2", line)
    match = COMMAND.match(line)
    name = (
        (match.group(1) or match.group(2) or "train") if match else "train"
    )  # no match: an override on its own
    words = shlex.split(line[match.end() :] if match else line)
    # bash expands `~` after the `=` of a word shaped like an assignment (data.source=~/photos.zip)
    words = [re.sub(r"^([^=]+)=~/", lambda m: f"{m.group(1)}={Path.home()}/", w) for w in words]
    # flags (`-m`, `--help`, `--cfg job`) are not overrides
    words = [w for i, w in enumerate(words) if not w.startswith("-") and not (i and words[i - 1] == "--cfg")]
    # as the command reads them: `model.arch=resnet` picks resnet's card
    return CONFIGS.get(name, name), [arch_card(w) for w in words if w != "[overrides]"]


def compose_calls(lines: list[str]) -> list[str]:
    """The README's lines as compose calls: each command alone, each config choice quoted alone
    (`experiment=fast`) alone, and the settings quoted alone (`model.head=gap`: a dotted key, one value) all in one
    call, each key at its first value: alone or together, they compose under the same default config."""
    calls, settings = [], {}
    for line in lines:
        words = line.split()
        # model.arch picks a card (as model= does): a call of its own
        lone = all("." in w.split("=")[0] and "," not in w and not w.startswith("model.arch=") for w in words)
        if COMMAND.match(line) is None and lone:
            settings |= {w.split("=")[0]: w for w in words if w.split("=")[0] not in settings}
        else:
            calls.append(line)
    return [*calls, " ".join(settings.values())]


README_LINES = commands(README)
# docs/add-a-network.md's toy kind is registered by a user's own package (tests/test_arch.py trains it)
DOC_LINES = [line for page in PAGES for line in commands(page.read_text()) if "model=toy" not in line]


def test_the_readme_lines_are_found():
    """The extraction itself: the card's sweep, an evaluate line, an Optuna line and a lone override are among them."""
    assert "python train.py -m model.kernel=3,5" in README_LINES
    assert any(line.startswith("python -m catdog.evaluate ckpt_path=") for line in README_LINES + DOC_LINES)
    assert any("hparams_search=optuna" in line for line in DOC_LINES)
    assert any(COMMAND.match(line) is None for line in README_LINES)
    assert overrides("python -m catdog.serve ckpt_path=X [port=8000] [overrides]") == (
        "serve",
        ["ckpt_path=X", "port=8000"],
    )


def jobs(words: list[str]) -> list[list[str]]:
    """The jobs of a sweep worth composing: each sweep at its first value, then each other value that names a config
    (`model/optimizer=adam,adamw,sgd`) rather than a number (`seed=0,1,2` composes the same keys each time)."""
    parsed = OverridesParser.create().parse_overrides(words)
    sweeps = {o.get_key_element(): list(o.sweep_string_iterator()) for o in parsed if o.is_sweep_override()}
    plain = [o.input_line for o in parsed if not o.is_sweep_override()]
    first = {key: values[0] for key, values in sweeps.items()}
    chosen = [first] + [
        {**first, key: value}
        for key, values in sweeps.items()
        for value in values[1:]
        if not re.fullmatch(r"[\d.e+-]+", value)
    ]
    return [plain + [f"{key}={value}" for key, value in job.items()] for job in chosen]


@pytest.mark.parametrize("line", compose_calls(list(dict.fromkeys(README_LINES + DOC_LINES))))
def test_every_command_and_override_in_the_readme_composes(line):
    """Each job of a sweep the line writes (`model.kernel=3,5`: 3, then 5) composes as the command would compose
    it; an override the config does not have (`model.net.kernel`) fails here, not in a user's shell."""
    name, words = overrides(line)
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        for job in jobs(words):
            compose(name, overrides=job, return_hydra_config=True)


def readme_snippet(marker: str) -> str:
    """The deploy page's ```python block that mentions `marker`."""
    page = (ROOT / "docs" / "deploy.md").read_text()
    (code,) = [block for block in re.findall(r"```python\n(.*?)```", page, re.S) if marker in block]
    return code


@pytest.mark.slow
def test_the_onnxruntime_snippet_runs_as_written_on_a_grayscale_export(tmp_path, monkeypatch):
    """The snippet, in a folder holding `last.onnx` (with its JSON) of a 1-channel model and a colour `cat.jpg`,
    gives the probabilities catdog's own runtime gives for that photo."""
    pytest.importorskip("onnxruntime")
    from catdog.export import export
    from catdog.runtime import load

    ckpt = train_checkpoint(write_class_folders(tmp_path / "photos", per_class=8), tmp_path, channels=1)
    model = export(str(ckpt), "onnx", str(tmp_path / "last.onnx"))
    cv2.imwrite(str(tmp_path / "cat.jpg"), make_image(0, seed=7, size=(48, 40)))
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(readme_snippet("onnxruntime"), scope)
    predictor = load(model)
    expected = predictor.probabilities(predictor.image(tmp_path / "cat.jpg")[None])
    np.testing.assert_allclose(scope["probabilities"], expected, atol=1e-5)
