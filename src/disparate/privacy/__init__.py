"""DP mechanisms: per-example gradients, clipping, noise, sampling, accounting, optimizers.

The library API, Opacus-shaped (see ``docs/library.md``)::

    from disparate.privacy import make_private
    private = make_private(model, optimizer, train_loader, noise_multiplier=1.1,
                           max_grad_norm=1.0)
    model, optimizer, train_loader = private.model, private.optimizer, private.data_loader
    ...  # the usual loop: loss = criterion(model(x), y); loss.backward(); optimizer.step()
    private.accountant.get_epsilon(delta=1e-5)

Pieces: ``DPOptimizer`` (a ``torch.optim.Optimizer``), ``DPDataLoader`` (Poisson
batches), ``PrivacyAccountant`` (counts steps), ``compute_epsilon`` and
``calibrate_noise_multiplier`` (stateless accounting), ``check_model`` and
``replace_batchnorm`` (models that mix examples), ``GradSampleEngine`` (per-example
gradient norms and clipped sums), ``DPPlan`` / ``build_plan`` (sampler, clipping policy, noise
and their composed accounting as one object), ``ClippingPolicy`` / ``build_policy`` (DP-SGD,
DPSGD-F, DPSGD-Global(-Adapt), adaptive quantile clipping: ``docs/mitigations.md``).

Attributes are imported on first use, so that torch-free parts (the accountant behind
``disparate epsilon``) load without importing torch; ``dir()`` and ``help()`` list them.
"""

from __future__ import annotations

from disparate.lazy import lazy_exports

_EXPORTS = {
    "DPOptimizer": "disparate.privacy.optimizer",
    "StepResult": "disparate.privacy.optimizer",
    "DPDataLoader": "disparate.privacy.data_loader",
    "PoissonBatchSampler": "disparate.privacy.data_loader",
    "PrivacyAccountant": "disparate.privacy.accountant",
    "PrivateTraining": "disparate.privacy.private",
    "make_private": "disparate.privacy.private",
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
    "DPPlan": "disparate.privacy.plan",
    "build_plan": "disparate.privacy.plan",
    "ClippingPolicy": "disparate.privacy.policies.base",
    "build_policy": "disparate.privacy.policies",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
