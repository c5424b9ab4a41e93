"""Test helpers: small generated datasets (two learnable classes of real JPEG/PNG files), running train.py as a
user would (forked from a warm interpreter: warm_python.py), and a tiny real checkpoint."""

from __future__ import annotations

import os
import socket
import subprocess
import zipfile
from pathlib import Path

import cv2
import numpy as np
from warm_python import run_python

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def make_image(label: int, seed: int, size=(40, 32)) -> np.ndarray:
    """Class 0: horizontal stripes, class 1: vertical stripes, with noise: learnable in a few steps. Classes 2, 3,
    4, ... (trees of more classes): the same, with stripes 8, 8, 12, ... pixels wide."""
    rng = np.random.default_rng(seed)
    h, w = size[1], size[0]
    across = label % 2 == 0
    stripes = (np.arange(h if across else w) // (4 + 4 * (label // 2)) % 2 * 160 + 40).astype(np.uint8)
    img = np.broadcast_to(stripes[:, None] if across else stripes[None, :], (h, w))
    img = np.clip(img + rng.normal(0, 20, (h, w)), 0, 255).astype(np.uint8)
    return np.dstack([img, np.roll(img, 1, 0), img])


def photo_like(width: int, height: int, seed: int = 0) -> np.ndarray:
    """BGR: smooth gradients, a few shapes and sensor noise, so JPEG coding and downscaling behave as on photos."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    img = np.dstack([120 + 100 * np.sin(3 * x + c + 4 * y * rng.random()) for c in range(3)])
    for _ in range(6):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.circle(img, centre, int(rng.integers(width // 20, width // 4)), colour, -1)
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


def write_class_folders(root: Path, per_class: int = 20, classes=("Cat", "Dog"), ext=".jpg") -> Path:
    for label, name in enumerate(classes):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            cv2.imwrite(str(d / f"{i}{ext}"), make_image(label, seed=label * 1000 + i))
    return root


def write_split_tree(root: Path, splits: dict[str, int], classes=("cat", "dog")) -> Path:
    """Split folders as ImageNet and Roboflow exports lay them out: root/<split>/<class>/<i>.jpg, `splits[split]`
    photos per class, every photo distinct (a class past the second repeats the second's stripes)."""
    for s, (split, per_class) in enumerate(splits.items()):
        for label, name in enumerate(classes):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                cv2.imwrite(
                    str(d / f"{i}.jpg"), make_image(min(label, 1), seed=10_000 * (s + 1) + 1000 * label + i)
                )
    return root


def write_random_labels(root: Path, per_class: int = 180, size: int = 64) -> Path:
    """Photo-like images filed under Cat/ and Dog/ regardless of their content: labels nothing can predict, which
    a model can only memorise (the hardest case for debug=overfit)."""
    for label, name in enumerate(("Cat", "Dog")):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            cv2.imwrite(str(d / f"{i}.jpg"), photo_like(size, size, seed=label * 1000 + i))
    return root


def write_noisy_class_folders(root: Path, per_class: int = 100, flip: float = 0.3) -> Path:
    """Like write_class_folders, with a fraction `flip` of each class's files showing the other class: a net that
    learns the stripes still gets ~that fraction wrong, so a val split has wrong predictions to calibrate on."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(("Cat", "Dog")):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shown = 1 - label if rng.random() < flip else label
            cv2.imwrite(str(d / f"{i}.jpg"), make_image(shown, seed=label * 1000 + i))
    return root


def set_temperature(checkpoint: Path, temperature: float) -> Path:
    """The checkpoint with its stored temperature replaced: a tiny val split leaves T = 1 (too few wrong
    predictions to fit on), tests of how T is used need another value."""
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    state["state_dict"]["temperature"] = torch.tensor(temperature)
    torch.save(state, checkpoint)
    return checkpoint


def write_kaggle(folder: Path, per_class: int = 6) -> Path:
    """Kaggle's flat layout: folder/cat.N.jpg and folder/dog.N.jpg."""
    folder.mkdir(parents=True)
    for label, name in enumerate(("cat", "dog")):
        for i in range(per_class):
            cv2.imwrite(str(folder / f"{name}.{i}.jpg"), make_image(label, seed=label * 1000 + i))
    return folder


def zip_tree(folder: Path, archive: Path, seed: int = 0) -> Path:
    """A zip of `folder` (members named from its own name down), members in a shuffled order as real archives
    can be: nothing may depend on the listing order."""
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    with zipfile.ZipFile(archive, "w") as zf:
        for i in np.random.default_rng(seed).permutation(len(files)):
            zf.write(files[i], files[i].relative_to(folder.parent).as_posix())
    return archive


def run_module(module: str, *args: str, timeout: float = 300, home: Path | None = None):
    """Run `python -m <module> ARGS` from the repository, as a user would: HYDRA_FULL_ERROR unset (errors are the
    one line a user sees), CATDOG_DATA unset; `home`: the HOME that `~` means."""
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "CATDOG_DATA")}
    env |= {"HOME": str(home)} if home else {}
    return run_python(["-m", module, *args], cwd=ROOT, env=env, timeout=timeout)


def run_train(*overrides: str, cwd: Path = ROOT, env_extra: dict | None = None, check: bool = True):
    """Run `python train.py`, as a user would."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = run_python([str(ROOT / "train.py"), *overrides], cwd=cwd, env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"train.py failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc


def tiny_overrides(source: Path, out: Path) -> list[str]:
    """A run small enough for a test: tiny images, a small net, one quick epoch, everything under tmp."""
    return [
        f"data.source={source}",
        f"data.cache_dir={out}/cache",
        f"hydra.run.dir={out}/run",
        "data.resolution=16",
        "data.batch_size=8",
        "data.val_fraction=0.25",
        "data.progress=false",
        "model.channels=[4,8]",
        "model.kernel=3",
        "model.hidden=[16]",
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
    ]


def quiet_trainer(**settings):
    """A Trainer for tests: one CPU epoch with no logger, checkpoints, progress bar or summary (`settings` override)."""
    import pytorch_lightning as pl

    quiet = dict(enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    return pl.Trainer(**{"max_epochs": 1, "accelerator": "cpu", "logger": False, **quiet, **settings})


def tiny_datamodule(source: Path, cache_dir: Path, channels: int = 3, **data):
    """The DataModule of a tiny test run, set up: 16 px images, batches of 8, a quarter for val (`data` overrides)."""
    from catdog.data import ImageDataModule
    from catdog.data.settings import DataSettings

    settings = {"val_fraction": 0.25, "batch_size": 8, "num_workers": 1, **data}
    dm = ImageDataModule(
        DataSettings.from_config(
            dict(
                source=str(source),
                resolution=16,
                channels=channels,
                cache_dir=str(cache_dir),
                progress=False,
                **settings,
            )
        )
    )
    dm.setup("fit")
    return dm


def train_checkpoint(
    source: Path,
    out: Path,
    channels: int = 3,
    net: dict | None = None,
    data: dict | None = None,
    **model_kwargs,
) -> Path:
    """A real checkpoint in a second or two: a tiny net (`net` overrides its keys, `data` the DataModule's) fitted
    in-process for one epoch on `source`."""
    from functools import partial

    import torch

    from catdog.models.classifier import ImageClassifier

    dm = tiny_datamodule(source, out / "cache", channels, **(data or {}))
    net = {"channels": [4, 8], "kernel": 3, "hidden": [16], **(net or {})}
    model = ImageClassifier(
        channels,
        16,
        classes=dm.classes,
        **net,
        optimizer=partial(torch.optim.Adam, lr=0.01),
        **model_kwargs,
    )
    trainer = quiet_trainer(default_root_dir=out)
    trainer.fit(model, datamodule=dm)
    path = out / "tiny.ckpt"
    trainer.save_checkpoint(path)
    return path


def train_in_process(*overrides: str) -> dict:
    """`train(compose(...))` in this process, as train.py would run it (give hydra.run.dir), without the seconds a
    new Python process spends importing torch and Lightning; for tests of what a run does, not of the CLI."""
    from catdog.run.training import train

    return run_in_process(train, "train", *overrides)


def run_in_process(fn, config_name: str, *overrides: str):
    """`fn(compose(config_name, ...))` in this process with Hydra's config set, as an entry point's main would run
    it (give hydra.run.dir)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            # what a real run's ${hydra:runtime.output_dir} would be; the hydra node itself is Hydra's, not ours
            cfg.paths.output_dir = cfg.hydra.run.dir
            del cfg["hydra"]
        try:
            return fn(cfg)
        finally:
            HydraConfig.instance().cfg = None


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` (with an identity, for commits) and return its output."""
    cmd = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def git_repo(folder: Path) -> Path:
    """A real git checkout with one committed file, `a.py`."""
    folder.mkdir(parents=True, exist_ok=True)
    git(folder, "init", "-q")
    (folder / "a.py").write_text("x = 1\n")
    git(folder, "add", "a.py")
    git(folder, "commit", "-q", "-m", "first")
    return folder


def free_port() -> int:
    """A TCP port free on loopback now (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sweep_overrides(source: Path, out: Path) -> list[str]:
    """tiny_overrides for `-m`: every job under out/sweep/<job>."""
    return [o for o in tiny_overrides(source, out) if not o.startswith("hydra.run.dir")] + [
        f"hydra.sweep.dir={out}/sweep"
    ]


def read_csv(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path) as f:
        return list(csv.DictReader(f))


def epochs_done(ckpt: dict) -> int:
    return ckpt["loops"]["fit_loop"]["epoch_progress"]["total"]["processed"]
