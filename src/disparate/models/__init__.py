"""Model registry and the built-in models: ``mnist-cnn``, ``digits-cnn``, ``mlp``, and
torchvision's classifiers (``resnet18``, ``torchvision:<name>``; see ``torchvision_models``),
and ``text-lstm`` (the paper's tweet model, see ``text``).

All models return logits (train with cross-entropy) and contain no BatchNorm in training mode.
Attributes are imported on first use and each built-in model when first built
(:data:`registry.BUILTIN`), so that listing the models and their options imports no torch.
"""

from __future__ import annotations

from disparate.lazy import lazy_exports

_EXPORTS = {
    "MLP": "disparate.models.mlp",
    "DigitsCNN": "disparate.models.cnn",
    "MnistCNN": "disparate.models.cnn",
    "ModelBuilder": "disparate.models.registry",
    "build_model": "disparate.models.registry",
    "count_parameters": "disparate.models.registry",
    "list_models": "disparate.models.registry",
    "model_options": "disparate.models.registry",
    "register_model": "disparate.models.registry",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
