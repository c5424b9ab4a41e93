"""At the end of training: the validation confusion matrix and the most confidently misclassified images, each
beside its Grad-CAM heatmap (where the net saw the class it wrongly chose)."""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import multiclass_confusion_matrix

from catdog.callbacks.periodic import PeriodicImages, first_val_loader
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

    def draw(self, writer, trainer, pl_module, step: int) -> None:
        loader = first_val_loader(trainer)
        if loader is None:
            return
        image_batches: list[torch.Tensor] = []
        label_batches: list[torch.Tensor] = []
        prob_batches: list[torch.Tensor] = []
        # the tensor loader's batches already live on the training device (a GPU): collect them on the CPU
        for x, y in loader:
            prob_batches.append(pl_module.predict_logits(x.to(pl_module.device)).softmax(1).cpu())
            image_batches.append(x.cpu())
            label_batches.append(y.cpu())
        if not label_batches:
            return
        images, labels, probs = torch.cat(image_batches), torch.cat(label_batches), torch.cat(prob_batches)
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
