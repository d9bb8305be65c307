"""Model registry and the built-in models: ``mnist-cnn``, ``digits-cnn``, ``mlp``, and
torchvision's classifiers (``resnet18``, ``torchvision:<name>``; see ``torchvision_models``),
and ``text-lstm`` (the paper's tweet model, see ``text``).

All models return logits (train with cross-entropy) and contain no BatchNorm in training mode.
"""

from disparate.models import text as _text  # noqa: F401  (registers "text-lstm")
from disparate.models import torchvision_models as _torchvision_models  # noqa: F401
from disparate.models.cnn import DigitsCNN, MnistCNN
from disparate.models.mlp import MLP
from disparate.models.registry import (
    ModelBuilder,
    build_model,
    count_parameters,
    list_models,
    model_options,
    register_model,
)

__all__ = [
    "MLP",
    "DigitsCNN",
    "MnistCNN",
    "ModelBuilder",
    "build_model",
    "count_parameters",
    "list_models",
    "model_options",
    "register_model",
]
