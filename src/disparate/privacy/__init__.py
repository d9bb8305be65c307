"""DP mechanisms: per-example gradients, clipping, noise, sampling, accounting, optimizers.

Attributes are imported on first use, so that torch-free parts (the accountant behind
``disparate epsilon``) load without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DPOptimizer": "disparate.privacy.optimizer",
    "StepResult": "disparate.privacy.optimizer",
    "GradSampleEngine": "disparate.privacy.grad_sample.engine",
    "PerExampleGrads": "disparate.privacy.grad_sample.engine",
    "clip_factors": "disparate.privacy.clipping",
    "clipped_grad_sum": "disparate.privacy.clipping",
    "check_model": "disparate.privacy.validate",
    "replace_batchnorm": "disparate.privacy.validate",
    "self_check": "disparate.privacy.selfcheck",
    "SelfCheckError": "disparate.privacy.selfcheck",
    "SelfCheckResult": "disparate.privacy.selfcheck",
    "EpsilonReport": "disparate.privacy.accounting",
    "compute_epsilon": "disparate.privacy.accounting",
    "compute_epsilons": "disparate.privacy.accounting",
    "calibrate_noise_multiplier": "disparate.privacy.accounting",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'disparate.privacy' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
