"""Accuracy, per-class accuracy, confusion matrix and predictions, all from one pass over the test set."""

from __future__ import annotations

import torch
import torch.nn as nn

from core.data import Normalizer


@torch.inference_mode()
def infer(model: nn.Module, images: torch.Tensor, normalize: Normalizer, batch_size: int = 1000) -> torch.Tensor:
    """Logits for uint8 images (already on the model's device), as float32 on the CPU."""
    was_training = model.training
    model.eval()
    out = [model(normalize(images[i:i + batch_size])).float() for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(out).cpu()


def confusion_matrix(predicted: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """counts[true, predicted]."""
    flat = labels.cpu().long() * num_classes + predicted.cpu().long()
    return torch.bincount(flat, minlength=num_classes**2).view(num_classes, num_classes)


def summarize(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
    """test_accuracy, per_class_accuracy and the confusion matrix from logits."""
    confusion = confusion_matrix(logits.argmax(1), labels, num_classes)
    per_class_total = confusion.sum(1)
    correct = confusion.diag()
    per_class = (correct.double() / per_class_total.clamp(min=1)).tolist()
    return dict(test_accuracy=correct.sum().item() / max(1, len(labels)),
                per_class_accuracy=per_class,
                per_class_correct=correct.tolist(),
                per_class_total=per_class_total.tolist(),
                confusion=confusion.tolist())
