"""Per-example gradient engine: layer rules, a vmap fallback, and the engine itself."""

from disparate.privacy.grad_sample import (  # noqa: F401  (register the LSTM and MHA rules)
    attention,
    recurrent,
)
from disparate.privacy.grad_sample.engine import GradSampleEngine, PerExampleGrads
from disparate.privacy.grad_sample.layers import register_rule

__all__ = ["GradSampleEngine", "PerExampleGrads", "register_rule"]
