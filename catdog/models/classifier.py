"""The LightningModule: a network of model.arch's kind, its loss and metrics, optimiser and schedule from config."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics import MaxMetric, MeanMetric, SumMetric
from torchmetrics.classification import MulticlassAccuracy

from catdog.errors import CatdogError
from catdog.models.arch import DEFAULT, build_network, network_settings
from catdog.models.augment import augment_batch
from catdog.models.freeze import freeze_stages, hold_frozen
from catdog.models.resize import resize_batch, resolution_at
from catdog.models.rng_state import RNG_KEY, rng_states, set_rng_states
from catdog.models.schedule import build_scheduler, replan_schedules
from catdog.models.settings import ModelSettings
from catdog.models.shards import real_photos, split_order
from catdog.models.temperature import calibrate
from catdog.models.whiten import freeze_first_conv

log = logging.getLogger(__name__)


def flip_tta_probabilities(net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Flip test-time augmentation: the mean of the class probabilities of the images and of their mirrors."""
    return (net(x).softmax(1) + net(x.flip(3)).softmax(1)) / 2


def with_temperature(state_dict: dict) -> dict:
    """A checkpoint's weights; those written before calibration existed get T = 1 (uncalibrated)."""
    return {"temperature": torch.ones(()), **state_dict}


class ImageClassifier(pl.LightningModule):
    """Everything needed to rebuild the network and its preprocessing is a hyperparameter, stored in checkpoints:
    `arch` names the network's kind (models/arch.py; checkpoints without it hold a convnet) and `**net` are that
    kind's keys of `model` (its settings' fields: channels, kernel, ...), the input's channels and resolution come
    from `data`."""

    # Declared for the type checker: Module.__getattr__ types buffers as `Tensor | Module`, and forward_net lives in
    # __dict__ (see __init__); hparams is Lightning's `AttributeDict | MutableMapping`, read here by attribute.
    temperature: torch.Tensor
    class_weights: torch.Tensor | None
    forward_net: Callable[[torch.Tensor], torch.Tensor]
    if TYPE_CHECKING:

        @property
        def hparams(self) -> Any: ...

    def __init__(
        self,
        in_channels: int,
        resolution: int,
        classes: Sequence[str] = ("cat", "dog"),
        normalize: bool = False,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        fast_decode: bool = False,
        resize: str = "squash",
        loss: str = "cross_entropy",
        label_smoothing: float = 0.0,
        class_weights: Sequence[float] | None = None,
        augment: dict | None = None,
        progressive_resize: dict | None = None,
        whiten: bool = False,
        freeze: int = 0,
        tta: bool = False,
        channels_last: bool = False,
        compile: bool = False,
        optimizer: Callable | None = None,
        scheduler: Callable | None = None,
        arch: str = DEFAULT,
        **net: Any,
    ):
        super().__init__()
        if normalize and mean is None:
            raise CatdogError(
                "model.normalize=true needs the training data's mean/std (training.train passes them)."
            )
        if "auto" in (channels_last, compile):  # catdog.run.speed settles it first in train.py
            raise CatdogError(
                "model.channels_last and model.compile=auto are measured by train.py; give true or false."
            )
        # logged by catdog.run.hparams as the flat config keys; here only stored in checkpoints
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        spec = ModelSettings(
            network_settings({**net, "arch": arch}, in_channels, resolution),
            loss=loss,
            label_smoothing=label_smoothing,
            augment=augment,
            progressive_resize=progressive_resize,
            whiten=whiten,
            freeze=freeze,
        )
        self.augment_settings = spec.augmentation
        self.net = build_network(spec.net, len(classes), mean, std)
        if whiten:
            freeze_first_conv(self.net)
        self.frozen = freeze_stages(self.net.stages(), freeze)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        # kept out of the module tree, so state_dict and checkpoints hold the weights once, compiled or not
        self.__dict__["forward_net"] = torch.compile(self.net) if compile else self.net
        # Lightning's model summary counts FLOPs and sizes on an example (without one: "Total FLOPs: 0"). Not for a
        # compiled net: run first under Lightning's FLOP counter, torch.compile then compiled nothing for the whole
        # fit (torch 2.13: no graph, eager speed)
        if not compile:
            self.example_input_array = torch.zeros(1, in_channels, resolution, resolution, dtype=torch.uint8)
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("class_weights", weights, persistent=False)
        n = len(classes)
        self.train_acc, self.val_acc, self.test_acc = (
            MulticlassAccuracy(n, average="micro") for _ in range(3)
        )
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        # how many images val/acc and test/acc rest on: fewer than the split under limit_*_batches
        self.val_n_images, self.test_n_images = SumMetric(), SumMetric()
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # saved in checkpoints: the best stays the best across a resume
        # softmax(logits / temperature) are the calibrated probabilities; refitted on each validation epoch, so
        # every checkpoint holds the temperature of its own weights
        self.register_buffer("temperature", torch.ones(()))
        self._val_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._calibration_warned: set[str] = set()  # a warning per kind of untrusted fit, not one per epoch

    def train(self, mode: bool = True) -> ImageClassifier:
        super().train(mode)
        hold_frozen(self.frozen)  # model.freeze's stages keep their batch-norm statistics
        return self

    def on_fit_start(self) -> None:
        if self.hparams.compile and self.trainer.is_global_zero:
            log.info(
                "model.compile=true: torch.compile compiles the network on its first batches (validation's and "
                "training's), which can take a minute (45 s for the default model on a CPU) before the first step "
                "moves. (The summary's FLOPs are not counted for a compiled network.)"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for uint8 images (N, C, H, W)."""
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.forward_net(x)

    def train_resolution(self, epoch: int) -> int:
        """The side of the training images in `epoch`: data.resolution, or less early on with progressive_resize."""
        schedule = self.hparams.progressive_resize
        return (
            resolution_at(epoch, self.hparams.resolution, **schedule) if schedule else self.hparams.resolution
        )

    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for evaluation: with tta, the mean of the image's and its mirror's probabilities, as log-probs."""
        if not self.hparams.tta:
            return self(x)
        return flip_tta_probabilities(self, x).clamp_min(1e-12).log()

    def loss_fn(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The loss against labels (N,) or, after mixup/cutmix, soft targets (N, classes); label smoothing is
        applied to either, and class weights weigh each class's term (the mean is then over images)."""
        if self.hparams.loss == "mse":  # the tutorial's softmax + MSE on one-hot targets
            target = F.one_hot(y, logits.shape[1]).float() if y.ndim == 1 else y
            return F.mse_loss(logits.softmax(1), target)
        return F.cross_entropy(
            logits, y, weight=self.class_weights, label_smoothing=self.hparams.label_smoothing
        )

    def training_step(self, batch, batch_idx):
        x, y = batch
        target = None
        if self.augment_settings:
            spec = self.augment_settings.for_epoch(self.current_epoch, self.trainer.max_epochs or -1)
            x, target = augment_batch(x, y, spec, len(self.hparams.classes))
        if self.hparams.progressive_resize:
            x = resize_batch(x, self.train_resolution(self.current_epoch))
            self.log("train/resolution", float(x.shape[-1]), on_step=False, on_epoch=True)
        logits = self(x)
        loss = self.loss_fn(logits, y if target is None else target)
        self.train_loss(loss)
        # with mixed labels, against each image's larger share: its own label unless the partner's dominates
        self.train_acc(logits, y if target is None else target.argmax(1))
        self.log("train/loss", self.train_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/batch_loss", loss.detach(), on_step=True, on_epoch=False)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def _evaluate(self, batch, stage: str, batch_idx: int):
        """Logits of every photo of the batch (SavePredictions drops DDP's padding itself); the metrics count the
        split's photos once (catdog.models.shards)."""
        x, y = batch
        logits = self.predict_logits(x)
        loader = getattr(self.trainer, f"{stage}_dataloaders", None) if self._trainer is not None else None
        keep = real_photos(loader, batch_idx, len(y))
        counter = getattr(self, f"{stage}_n_images")
        if keep:  # a batch of padding alone (batch size 1) adds nothing
            getattr(self, f"{stage}_loss")(self.loss_fn(logits[:keep], y[:keep]))
            getattr(self, f"{stage}_acc")(logits[:keep], y[:keep])
            counter(torch.tensor(float(keep), device=y.device))
        self.log(f"{stage}/loss", getattr(self, f"{stage}_loss"), on_epoch=True, prog_bar=True)
        self.log(f"{stage}/acc", getattr(self, f"{stage}_acc"), on_epoch=True, prog_bar=True)
        self.log(f"{stage}/n_images", counter, on_step=False, on_epoch=True)
        return logits

    def validation_step(self, batch, batch_idx):
        logits = self._evaluate(batch, "val", batch_idx)
        self._val_outputs.append((logits.detach(), batch[1]))
        return logits

    def on_validation_epoch_end(self) -> None:
        outputs, self._val_outputs = self._val_outputs, []
        if self.trainer.sanity_checking:
            return
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True)
        if outputs:
            logits, labels = (torch.cat(t) for t in zip(*outputs))
            if self.trainer.world_size > 1:
                n = len(self.trainer.val_dataloaders.dataset)  # type: ignore[union-attr]  # one val loader
                logits, labels = (
                    split_order(cast(torch.Tensor, self.all_gather(t)), n) for t in (logits, labels)
                )
            fit = calibrate(logits, labels)
            self.temperature.fill_(fit.temperature)
            self.log("val/temperature", self.temperature)
            if fit.problem and fit.problem not in self._calibration_warned and self.trainer.is_global_zero:
                self._calibration_warned.add(fit.problem)
                log.warning(
                    "Calibration left at T = 1 (uncalibrated probabilities) in epoch %d: %s. More val photos "
                    "(data.val_fraction) or a trained net make the fit possible; evaluate reports the ECE.",
                    self.current_epoch,
                    fit.detail,
                )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[RNG_KEY] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "state_dict" in checkpoint:
            checkpoint["state_dict"] = with_temperature(checkpoint["state_dict"])
        if (
            RNG_KEY in checkpoint and self._trainer is not None
        ):  # resuming a fit, not loading for evaluate/predict
            set_rng_states(checkpoint[RNG_KEY])

    def test_step(self, batch, batch_idx):
        return self._evaluate(batch, "test", batch_idx)

    def configure_optimizers(self):
        if self.optimizer_factory is None:
            raise CatdogError(
                "model.optimizer is not set: give e.g. model.optimizer._target_=torch.optim.Adam."
            )
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        total = int(self.trainer.estimated_stepping_batches)
        return {
            "optimizer": optimizer,
            "lr_scheduler": build_scheduler(self.scheduler_factory, optimizer, total),
        }

    def on_train_start(self) -> None:
        replan_schedules(self.trainer, self.scheduler_factory)  # a resume with another trainer.max_epochs
