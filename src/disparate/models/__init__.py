"""Model registry and the built-in models: ``mnist-cnn``, ``digits-cnn``, ``mlp``.

All models return logits (train with cross-entropy) and contain no BatchNorm.
"""

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
