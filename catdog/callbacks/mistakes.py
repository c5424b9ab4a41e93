"""At the end of training: the validation confusion matrix and the most confidently misclassified images, each
beside its Grad-CAM heatmap (where the net saw the class it wrongly chose)."""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import multiclass_confusion_matrix

from catdog.callbacks.periodic import PeriodicImages, first_val_loader
from catdog.callbacks.predictions import probabilities
from catdog.explain.gradcam import gradcam
from catdog.visualize import confusion_figure, mistakes_figure


class ValidationMistakes(PeriodicImages):
    """Logs `val/confusion_matrix` and `val/misclassified` (the `top_k` most confident wrong guesses, with
    Grad-CAM at layer `explain_layer` of the net unless `explain` is false)."""

    def __init__(
        self,
        top_k: int = 16,
        every_n_epochs: int = 0,
        explain: bool = True,
        explain_layer: int | str | None = None,
    ):
        super().__init__(every_n_epochs)
        self.top_k = top_k
        self.explain, self.explain_layer = explain, explain_layer
        # the last validation epoch's (probabilities, images, labels) batches and the step whose weights scored them
        self._scored: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._scored_step: int | None = None

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._scored, self._scored_step = [], None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking and dataloader_idx == 0:  # validation_step returns predict_logits
            self._scored.append((probabilities(outputs), batch[0].cpu(), batch[1].cpu()))

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._scored_step = trainer.global_step
        super().on_validation_epoch_end(trainer, pl_module)

    def scored(self, trainer, pl_module) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The validation split's probabilities, images and labels for the net's current weights: what its last
        validation epoch scored when nothing trained since (no second pass: 2.5 s of the fast preset's 4 minutes
        on a 2-core CPU), else scored again."""
        if self._scored and self._scored_step == trainer.global_step:
            return self._scored
        loader = first_val_loader(trainer)
        # the tensor loader's batches already live on the training device (a GPU): collect them on the CPU
        return [
            (pl_module.predict_logits(x.to(pl_module.device)).softmax(1).cpu(), x.cpu(), y.cpu())
            for x, y in (loader if loader is not None else [])
        ]

    def draw(self, writer, trainer, pl_module, step: int) -> None:
        batches = self.scored(trainer, pl_module)
        if not batches:
            return
        probs, images, labels = (torch.cat(parts) for parts in zip(*batches))
        classes = list(pl_module.hparams.classes)
        matrix = multiclass_confusion_matrix(probs, labels, len(classes))
        writer.add_figure(
            "val/confusion_matrix", confusion_figure(matrix.numpy(), classes, "Validation"), step
        )
        confidence, pred = probs.max(1)
        wrong = torch.nonzero(pred != labels).flatten()
        worst = wrong[confidence[wrong].argsort(descending=True)[: self.top_k]]
        heatmaps = None
        if self.explain and len(worst):
            x = images[worst].to(pl_module.device)
            heatmaps = gradcam(pl_module.net, x, self.explain_layer, pred[worst]).cpu().numpy()
        figure = mistakes_figure(
            images[worst].permute(0, 2, 3, 1).numpy(),
            labels[worst].tolist(),
            pred[worst].tolist(),
            confidence[worst].tolist(),
            classes,
            heatmaps,
        )
        writer.add_figure("val/misclassified", figure, step)
