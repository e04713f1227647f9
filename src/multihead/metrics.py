"""Classification metrics: accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix.

Generation metrics (BLEU, chrF, ROUGE, perplexity) join this module with the generation tasks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["accuracy", "classification_report", "confusion_matrix", "macro_f1", "per_class_scores"]


def _as_tensor(values: Sequence[int] | Tensor) -> Tensor:
    return values.detach().cpu().long().flatten() if isinstance(values, Tensor) else torch.tensor(values).long()


def confusion_matrix(predictions: Sequence[int] | Tensor, targets: Sequence[int] | Tensor, n_classes: int) -> Tensor:
    """``(C, C)`` counts; row = true class, column = predicted class (scikit-learn's convention)."""
    predicted, true = _as_tensor(predictions), _as_tensor(targets)
    if predicted.shape != true.shape:
        raise ValueError(f"predictions and targets differ in length: {predicted.numel()} vs {true.numel()}")
    for name, values in (("predictions", predicted), ("targets", true)):
        if values.numel() and (int(values.min()) < 0 or int(values.max()) >= n_classes):
            raise ValueError(f"{name} hold class ids outside 0..{n_classes - 1}")
    return torch.bincount(true * n_classes + predicted, minlength=n_classes * n_classes).view(n_classes, n_classes)


def accuracy(predictions: Sequence[int] | Tensor, targets: Sequence[int] | Tensor) -> float:
    """Share of predictions equal to their target (0.0 for no examples)."""
    predicted, true = _as_tensor(predictions), _as_tensor(targets)
    return float((predicted == true).float().mean()) if true.numel() else 0.0


def per_class_scores(matrix: Tensor) -> dict[str, Tensor]:
    """Precision, recall, F1 and support per class from a confusion matrix; 0 where undefined."""
    matrix = matrix.double()
    true_positive = matrix.diagonal()
    predicted = matrix.sum(dim=0)
    support = matrix.sum(dim=1)
    precision = torch.where(predicted > 0, true_positive / predicted.clamp(min=1), 0.0)
    recall = torch.where(support > 0, true_positive / support.clamp(min=1), 0.0)
    total = precision + recall
    f1 = torch.where(total > 0, 2 * precision * recall / total.clamp(min=1e-300), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.long()}


def macro_f1(predictions: Sequence[int] | Tensor, targets: Sequence[int] | Tensor, n_classes: int) -> float:
    """Unweighted mean of per-class F1 over all ``n_classes`` classes."""
    return float(per_class_scores(confusion_matrix(predictions, targets, n_classes))["f1"].mean())


def classification_report(
    predictions: Sequence[int] | Tensor, targets: Sequence[int] | Tensor, label_names: Sequence[str]
) -> dict[str, object]:
    """Accuracy, macro-F1, per-class scores (by label name) and the confusion matrix, JSON-ready."""
    n_classes = len(label_names)
    matrix = confusion_matrix(predictions, targets, n_classes)
    scores = per_class_scores(matrix)
    return {
        "accuracy": accuracy(predictions, targets),
        "macro_f1": float(scores["f1"].mean()),
        "per_class": {
            name: {key: float(scores[key][index]) if key != "support" else int(scores[key][index]) for key in scores}
            for index, name in enumerate(label_names)
        },
        "confusion_matrix": matrix.tolist(),
        "labels": list(label_names),
    }
