"""catdog: image classification experiments with PyTorch Lightning and Hydra."""

from catdog.errors import CatdogError

__all__ = ["CatdogError", "load"]


def __getattr__(name: str):
    """`catdog.__version__`, read on first use: importlib.metadata costs ~25 ms at every command's start."""
    if name == "__version__":
        from importlib.metadata import version

        return version("catdog")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load(ckpt_path, min_confidence: float = 0.0, device: str = "cpu"):
    """Load a trained checkpoint, or an `.onnx` written by `catdog.export` (run by `catdog.runtime`, without torch,
    on the CPU), as a predictor with its own preprocessing and calibration; a top probability below
    `min_confidence` is labelled "unsure". A checkpoint's network runs on `device` (cpu, cuda, or auto: the GPU
    where torch sees one)."""
    if str(ckpt_path).lower().endswith(".onnx"):
        from catdog.runtime import load as load_onnx

        return load_onnx(ckpt_path, min_confidence)
    from catdog.inference import Predictor

    return Predictor.from_checkpoint(ckpt_path, min_confidence, device)
