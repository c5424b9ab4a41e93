"""The network builder and the LightningModule."""

from catdog.models.classifier import ImageClassifier
from catdog.models.convnet import build_convnet

__all__ = ["ImageClassifier", "build_convnet"]
