"""Test helpers: small generated datasets (two learnable classes of real JPEG/PNG files), running train.py as a
user would, and a tiny real checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def make_image(label: int, seed: int, size=(40, 32)) -> np.ndarray:
    """Class 0: horizontal stripes, class 1: vertical stripes, with noise: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    h, w = size[1], size[0]
    stripes = (np.arange(h if label == 0 else w) // 4 % 2 * 160 + 40).astype(np.uint8)
    img = np.broadcast_to(stripes[:, None] if label == 0 else stripes[None, :], (h, w))
    img = np.clip(img + rng.normal(0, 20, (h, w)), 0, 255).astype(np.uint8)
    return np.dstack([img, np.roll(img, 1, 0), img])


def write_class_folders(root: Path, per_class: int = 20, classes=("Cat", "Dog"), ext=".jpg") -> Path:
    for label, name in enumerate(classes):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            cv2.imwrite(str(d / f"{i}{ext}"), make_image(label, seed=label * 1000 + i))
    return root


def write_kaggle(folder: Path, per_class: int = 6) -> Path:
    """Kaggle's flat layout: folder/cat.N.jpg and folder/dog.N.jpg."""
    folder.mkdir(parents=True)
    for label, name in enumerate(("cat", "dog")):
        for i in range(per_class):
            cv2.imwrite(str(folder / f"{name}.{i}.jpg"), make_image(label, seed=label * 1000 + i))
    return folder


def zip_tree(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder.parent).as_posix())
    return archive


def run_train(*overrides: str, cwd: Path = ROOT, env_extra: dict | None = None, check: bool = True):
    """Run `python train.py` in a subprocess, as a user would."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *overrides], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
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


def train_checkpoint(source: Path, out: Path, channels: int = 3, **model_kwargs) -> Path:
    """A real checkpoint in a second or two: a tiny net fitted in-process for one epoch on `source`."""
    from functools import partial

    import pytorch_lightning as pl
    import torch

    from catdog.data import ImageDataModule
    from catdog.models import ImageClassifier

    dm = ImageDataModule(str(source), resolution=16, channels=channels, cache_dir=str(out / "cache"),
                         val_fraction=0.25, batch_size=8, num_workers=1, progress=False)  # fmt: skip
    dm.setup("fit")
    net = {"channels": [4, 8], "kernel": 3, "hidden": [16], **model_kwargs}
    model = ImageClassifier(
        channels, 16, classes=dm.classes, optimizer=partial(torch.optim.Adam, lr=0.01), **net
    )
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=out)  # fmt: skip
    trainer.fit(model, datamodule=dm)
    path = out / "tiny.ckpt"
    trainer.save_checkpoint(path)
    return path


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
