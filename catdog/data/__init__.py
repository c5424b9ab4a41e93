"""Finding, decoding, caching and serving images."""

from catdog.data.dataset import prepare_dataset

__all__ = ["ImageDataModule", "prepare_dataset"]


def __getattr__(name: str):
    """ImageDataModule imports Lightning and torch (seconds); loaded on first use so `catdog.prepare` starts fast."""
    if name == "ImageDataModule":
        from catdog.data.datamodule import ImageDataModule

        return ImageDataModule
    raise AttributeError(f"module 'catdog.data' has no attribute {name!r}")
