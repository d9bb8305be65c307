"""DP-SGD / DP-Adam: any torch optimizer fed privatised gradients.

Each step (Algorithm 1 of the paper): per-example gradients g_i, clipped to S,
summed, plus N(0, sigma^2) per coordinate, divided by the expected batch size,
then the wrapped optimizer steps (SGD -> DP-SGD, Adam -> DP-Adam).

The ablations of the paper's Figure 4 are modes of the same object:
``max_grad_norm=None`` turns clipping off; without clipping there is no
sensitivity, so noise is given as an explicit ``noise_std`` and nothing is private.

How each example is weighted is a clipping ``policy``
(:mod:`disparate.privacy.policies`; default: DP-SGD's flat clipping to ``max_grad_norm``):
it gets the per-example norms and group labels (``step(..., groups=g)``), may release noisy
auxiliary statistics of the batch drawn from the noise generator, and bounds what one
example adds; the noise std of each step is ``noise_multiplier`` times that bound.

It is a ``torch.optim.Optimizer`` sharing the wrapped optimizer's ``param_groups`` and
``state`` (LR schedulers, ``param_groups[0]["lr"]`` and step hooks work), and takes a
batch either way::

    loss = criterion(model(x), y)        # criterion of reduction loss_reduction
    loss.backward()
    optimizer.step()                     # per-example gradients captured in backward()

    optimizer.step(per_example_loss_fn, x, y)   # or: forward and backward done here
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from disparate import distributed
from disparate.privacy.clipping import clip_factors
from disparate.privacy.grad_sample.engine import (
    LOSS_REDUCTIONS,
    GradSampleEngine,
    Inputs,
    LossFn,
    LossReduction,
    PerExampleGrads,
    batch_size_of,
)
from disparate.privacy.noise import make_generator, parameter_noise
from disparate.privacy.policies.base import ClippingPolicy
from disparate.privacy.policies.flat import FlatClipping

ERR_DISTRIBUTED_POLICY = (
    "mitigation.method={method!r} releases private statistics of every batch, which are not yet "
    "gathered across processes: run it in one process (WORLD_SIZE={world}); flat DP-SGD "
    "(mitigation.method='dpsgd') runs distributed"
)
ERR_NO_BACKWARD = (
    "optimizer.step() without arguments needs loss.backward() on the model's outputs "
    "first (a forward pass with gradients enabled, then backward); or pass the batch: "
    "optimizer.step(loss_fn, inputs, targets) with a per-example loss_fn"
)
ERR_TWO_NOISE_SOURCES = (
    "noise_seed={seed!r} and noise_generator: give at most one (neither: a fresh secret)"
)
ERR_NOISE_DEVICE = (
    "noise_generator on {gen}: expected a generator on the parameters' device {device}"
)
ERR_STEP_ARGS = (
    "optimizer.step(loss_fn, inputs, targets): give all three or none; got "
    "loss_fn={loss_fn!r}, inputs of type {inputs}, targets of type {targets}"
)


@dataclass(frozen=True)
class StepResult:
    """Per-example quantities of one step, all (B,).

    ``losses`` and ``outputs`` are ``None`` after ``loss.backward(); step()``: the optimizer
    saw only the reduced loss.
    """

    losses: Tensor | None
    norms: Tensor  # gradient norm before clipping
    clip_weights: Tensor  # the policy's weights (flat: min(1, S/||g_i||)); 1 where clipping
    outputs: Tensor | None  # is off; 0 if not finite


class DPOptimizer(torch.optim.Optimizer):
    """Clip per example, sum, add Gaussian noise, divide by the expected batch size, step.

    The noise is drawn from ``noise_generator``, or from ``make_generator(noise_seed)``
    (reproducible), or, with neither, from a fresh 128-bit secret of the OS.

    ``loss_reduction`` declares how the loss given to ``loss.backward()`` combines the
    per-example losses ("mean", as torch's losses by default, or "sum"); it does not
    matter for ``step(loss_fn, inputs, targets)``, whose ``loss_fn`` is per example.

    In a ``torch.distributed`` process group each rank steps on its shard of the global batch:
    the clipped sums are summed over the ranks with the noise added once, by rank 0, and
    ``expected_batch_size`` is that of the global batch (``docs/distributed.md``).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        model: nn.Module,
        *,
        expected_batch_size: float,
        max_grad_norm: float | None,
        noise_multiplier: float = 0.0,
        noise_std: float | None = None,
        noise_seed: int | None = None,
        noise_generator: torch.Generator | None = None,
        loss_reduction: LossReduction = "mean",
        policy: ClippingPolicy | None = None,
    ):
        if not expected_batch_size > 0:
            raise ValueError(f"expected_batch_size={expected_batch_size!r}: expected > 0")
        if max_grad_norm is not None and not max_grad_norm > 0:
            raise ValueError(
                f"max_grad_norm={max_grad_norm!r}: expected > 0, or None for no clipping"
            )
        if not noise_multiplier >= 0:
            raise ValueError(f"noise_multiplier={noise_multiplier!r}: expected >= 0")
        if max_grad_norm is not None and noise_std is not None:
            raise ValueError(
                f"noise_std={noise_std!r} with clipping: the noise is noise_multiplier * "
                "max_grad_norm; give noise_std only without clipping"
            )
        if max_grad_norm is None and noise_multiplier > 0:
            raise ValueError(
                f"noise_multiplier={noise_multiplier!r} without clipping: there is no "
                "sensitivity to multiply; give noise_std instead"
            )
        if policy is not None and max_grad_norm is None:
            raise ValueError(f"policy={policy.name!r} without clipping (max_grad_norm=None): a "
                             "clipping policy needs clipping on")
        if policy is not None and policy.statistics and distributed.world_size() > 1:
            # each rank would release its shard's statistics: N noisy releases, not one
            raise ValueError(ERR_DISTRIBUTED_POLICY.format(method=policy.name,
                                                           world=distributed.world_size()))
        if noise_std is not None and not noise_std >= 0:
            raise ValueError(f"noise_std={noise_std!r}: expected >= 0")
        if loss_reduction not in LOSS_REDUCTIONS:
            raise ValueError(f"loss_reduction={loss_reduction!r}: expected one of "
                             + ", ".join(map(repr, LOSS_REDUCTIONS)))
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(f"optimizer of type {type(optimizer).__name__}: expected a "
                             "torch.optim.Optimizer over the model's parameters")
        super().__init__(optimizer.param_groups, optimizer.defaults)
        # One set of groups and state: schedulers and checkpoints see the wrapped optimizer's.
        self.param_groups = optimizer.param_groups
        self.state = optimizer.state
        self.optimizer = optimizer
        self.loss_reduction = loss_reduction
        self.model = model
        self.expected_batch_size = float(expected_batch_size)
        self.max_grad_norm = max_grad_norm
        self.noise_multiplier = float(noise_multiplier)
        self.noise_std = (
            self.noise_multiplier * max_grad_norm if max_grad_norm is not None else noise_std or 0.0
        )
        self.policy = (policy if policy is not None or max_grad_norm is None
                       else FlatClipping(max_grad_norm))
        self._params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        device = next(iter(self._params.values())).device
        if noise_generator is not None and noise_seed is not None:
            raise ValueError(ERR_TWO_NOISE_SOURCES.format(seed=noise_seed))
        if noise_generator is not None and noise_generator.device.type != device.type:
            raise ValueError(ERR_NOISE_DEVICE.format(gen=noise_generator.device, device=device))
        # neither: a generator from a fresh secret of the OS; the noise cannot be regenerated
        self.noise_generator = (noise_generator if noise_generator is not None
                                else make_generator(noise_seed, device))
        self.engine = GradSampleEngine(model, capture=True)

    @property
    def mode(self) -> str:
        """One of 'dp', 'clip-only', 'noise-only', 'non-private'."""
        noise = self.noise_std > 0
        if self.max_grad_norm is not None:
            return "dp" if noise else "clip-only"
        return "noise-only" if noise else "non-private"

    @property
    def is_private(self) -> bool:
        """True only with clipping and noise on: the only mode that has a DP guarantee."""
        return self.mode == "dp"

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the parameters' gradients and forget the forward passes recorded since."""
        self.optimizer.zero_grad(set_to_none=set_to_none)
        self.engine.clear()

    def step(
        self,
        loss_fn: LossFn | None = None,
        inputs: Inputs | None = None,
        targets: Tensor | None = None,
        *,
        groups: Tensor | None = None,
    ) -> StepResult:
        """One DP step, on the batch of the last ``loss.backward()`` or on ``inputs``.

        ``inputs`` is a tensor, a tuple or a mapping of tensors, batch dimension first;
        the batch may be empty under Poisson sampling (only noise is added). ``groups``
        (B,): the examples' group labels, for a policy that clips by group.
        """
        given = [a is not None for a in (loss_fn, inputs, targets)]
        if any(given) and not all(given):
            raise ValueError(ERR_STEP_ARGS.format(loss_fn=loss_fn, inputs=type(inputs).__name__,
                                                  targets=type(targets).__name__))
        if loss_fn is None:
            batch = self.engine.last_batch_size()
            per_example = self.engine.captured(self.loss_reduction)
            if per_example is None and batch != 0:
                raise ValueError(ERR_NO_BACKWARD)
        else:
            self.engine.clear()
            batch = batch_size_of(inputs)
            per_example = self.engine.compute(loss_fn, inputs, targets) if batch else None
        return self._privatise_and_step(per_example, groups)

    def _weights(self, norms: Tensor, groups: Tensor | None) -> tuple[Tensor, float]:
        """The policy's weights of the batch and the std of this step's gradient noise."""
        if self.policy is None:
            return clip_factors(norms, None), self.noise_std
        weights = self.policy.weights(norms, groups, self.noise_generator)
        return weights, self.noise_multiplier * self.policy.sensitivity

    def _privatise_and_step(self, per_example: PerExampleGrads | None,
                            groups: Tensor | None = None) -> StepResult:
        # the division by the expected global batch size, folded into the weights and noise
        scale = 1.0 / self.expected_batch_size
        if per_example is None:  # an empty batch: the policy's statistics are still released
            empty = next(iter(self._params.values())).new_zeros(0)
            _, std = self._weights(empty, None if groups is None else groups[:0].long())
            summed = None
            result = StepResult(empty, empty, empty, empty)
        else:
            weights, std = self._weights(per_example.norms, groups)
            # frees each layer's terms once summed
            summed = per_example.weighted_sums(weights * scale)
            result = StepResult(per_example.losses, per_example.norms, weights,
                                per_example.outputs)
        noise_std = distributed.noise_std_here(std) * scale  # once, on rank 0
        params = list(self._params.values())
        for param in params:
            param.grad = None  # their memory is free for the new sums
        noise = parameter_noise(params, noise_std, self.noise_generator) if noise_std > 0 else None
        for name, param in self._params.items():
            # the sum added into the noise's buffer (drawn as each parameter comes)
            grad = None if noise is None else next(noise)
            grad = grad if summed is None else summed(name, grad)
            param.grad = torch.zeros_like(param) if grad is None else grad
        distributed.all_reduce_sum([p.grad for p in self._params.values()])
        self.optimizer.step()
        return result

    def state_dict(self) -> dict:
        state = {
            "optimizer": self.optimizer.state_dict(),
            "noise_generator": self.noise_generator.get_state(),
        }
        policy_state = self.policy.state_dict() if self.policy is not None else {}
        if policy_state:  # an adaptive bound; flat clipping's checkpoints stay as they were
            state["policy"] = policy_state
        return state

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.noise_generator.set_state(state["noise_generator"])
        if "policy" in state and self.policy is not None:
            self.policy.load_state_dict(state["policy"])

    def close(self) -> None:
        """Remove the engine's hooks from the model."""
        self.engine.close()
