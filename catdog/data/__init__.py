"""Finding, decoding, caching and serving images."""

from catdog.data.datamodule import ImageDataModule
from catdog.data.preprocess import prepare_dataset

__all__ = ["ImageDataModule", "prepare_dataset"]
