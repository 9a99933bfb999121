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


# -- choosing what to show ---------------------------------------------------------------------

def select_examples(labels: torch.Tensor, predicted: torch.Tensor, count: int, seed: int = 0,
                    only_mistakes: bool = False, true_class: int | None = None,
                    predicted_class: int | None = None) -> torch.Tensor:
    """Indices of up to `count` test images matching the filters, in a seeded random order."""
    keep = torch.ones(len(labels), dtype=torch.bool)
    if only_mistakes:
        keep &= predicted != labels
    if true_class is not None:
        keep &= labels == true_class
    if predicted_class is not None:
        keep &= predicted == predicted_class
    candidates = keep.nonzero().squeeze(1)
    order = torch.randperm(len(candidates), generator=torch.Generator().manual_seed(seed))
    return candidates[order[:count]]


def top_losses(probs: torch.Tensor, labels: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the wrong predictions the network was most confident about (largest loss first)."""
    loss = -torch.log(probs[torch.arange(len(labels)), labels].clamp(min=1e-12))
    wrong = probs.argmax(1) != labels
    loss = torch.where(wrong, loss, torch.full_like(loss, -1.0))
    order = torch.argsort(loss, descending=True)
    return order[: min(count, int(wrong.sum()))]


def caption(classes: list[str], true: int, probs: torch.Tensor) -> str:
    """'true: cat' / 'pred: dog 87%'."""
    guess = int(probs.argmax())
    return f"true: {classes[true]}\npred: {classes[guess]} {float(probs[guess]):.0%}"


# -- a user's own image ------------------------------------------------------------------------------

MAX_UPLOAD_BYTES = 8 * 1024 * 1024
MAX_UPLOAD_PIXELS = 40_000_000


class UploadError(ValueError):
    """An uploaded file cannot be used; the message says why."""


def prepare_upload(data: bytes, image_size: int, channels: int) -> torch.Tensor:
    """A PNG/JPEG file -> uint8 (1, C, S, S) as the network sees it (centre-cropped square, resized)."""
    from PIL import Image

    from core.untrusted import open_image

    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadError(f"the file is {len(data) / 1e6:.1f} MB; please upload an image under "
                          f"{MAX_UPLOAD_BYTES // 1024 // 1024} MB")
    img = open_image(data, "the file", MAX_UPLOAD_PIXELS, formats=("PNG", "JPEG"), error=UploadError)
    img = img.convert("RGB" if channels == 3 else "L")
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    img = img.crop((left, top, left + side, top + side)).resize((image_size, image_size), Image.BILINEAR)
    pixels = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    return pixels.view(image_size, image_size, channels).permute(2, 0, 1).unsqueeze(0).contiguous()


def predict(model: nn.Module, images: torch.Tensor, normalize: Normalizer) -> torch.Tensor:
    """Class probabilities for uint8 images."""
    return torch.softmax(infer(model, images, normalize), 1)
