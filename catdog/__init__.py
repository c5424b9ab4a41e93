"""catdog: image classification experiments with PyTorch Lightning and Hydra."""

from importlib.metadata import version

from catdog.errors import CatdogError

__all__ = ["CatdogError", "load"]
__version__ = version("catdog")


def load(ckpt_path, min_confidence: float = 0.0):
    """Load a trained checkpoint as a predictor with its own preprocessing and calibration (see
    `catdog.inference`); a top probability below `min_confidence` is labelled "unsure"."""
    from catdog.inference import Predictor

    return Predictor.from_checkpoint(ckpt_path, min_confidence)
