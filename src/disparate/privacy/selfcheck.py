"""The step-1 self-check: the engine's gradients are the model's, and the examples are independent.

DP-SGD's guarantee rests on two facts about the model that no list of layer types can
establish: the per-example gradients are complete (every parameter, every use, once),
and one example moves nothing but its own loss. On one batch :func:`self_check` tests

- the static rules of :func:`~disparate.privacy.validate.check_model`;
- buffers: none changes during a training-mode forward (a buffer written from the data
  stores private examples outside the mechanism);
- independence: changing example 0 leaves every other example's output and loss as they
  were (catches batch statistics computed functionally, batch centering, attention fed
  the wrong layout);
- completeness: the engine's sum of per-example gradients (all weights 1) equals
  autograd's gradient of the summed loss for every trainable parameter, within
  ``||sum_i g_i - grad|| <= rtol * (sum_i ||g_i|| + ||grad||)`` per parameter (catches a
  parameter missed or counted twice, whatever the layer).

The model, its buffers, its parameters' ``.grad`` and every global RNG stream are left as
they were; each forward replays the same RNG state, so dropout draws the same masks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten

from disparate.privacy.grad_sample.engine import GradSampleEngine, LossFn
from disparate.privacy.validate import check_model

# rtol of the completeness check: float64 is exact up to summation order; lower precisions
# leave room for TF32 convolutions on GPUs. A missed parameter scores 1, a doubled one 1/3.
GRAD_SUM_RTOL = {torch.float64: 1e-9}
GRAD_SUM_RTOL_DEFAULT = 5e-3
# the checks run on the batch's first examples, at most this many: what they catch does
# not depend on the batch size, and the check stays well under the cost of one step
CHECK_EXAMPLES = 64

GRAD_SUM_ERROR = (
    "self-check failed for parameter {param}: the engine's sum of per-example gradients "
    "differs from autograd's gradient of the summed loss by {error:.3g} (relative; tolerance "
    "{rtol:g}), so its per-example gradients are {what}: clipping would not bound what one "
    "example adds. Fix: register a per-example rule for the module that uses it "
    "(disparate.privacy.grad_sample.register_rule), or use it only through its own module's "
    "forward."
)
MIXES_ERROR = (
    "self-check failed: {module} mixes the examples of a batch: changing example 0 changed "
    "the {what} of example {other}, so per-example gradients, and the DP guarantee, do not "
    "exist. Fix: compute statistics per example, never over the batch dimension (GroupNorm "
    "or LayerNorm instead of batch normalisation or batch centering){layout}."
)
LAYOUT_HINT = (
    "; {module} has batch_first={batch_first}: feed it {layout} (batch, sequence, features "
    "as B, T, E)"
)
BUFFER_ERROR = (
    "self-check failed: buffer {buffer} of {module} ({kind}) changed during a training-mode "
    "forward: it records the private batch outside the DP mechanism. Fix: update it only "
    "in eval mode (model.eval()) or from public data, or make it a constant."
)


class SelfCheckError(ValueError):
    """The model fails the step-1 self-check; the message names the part and the fix."""


@dataclass(frozen=True)
class SelfCheckResult:
    """What :func:`self_check` measured (it raises instead of returning a failure)."""

    passed: bool
    seconds: float
    examples: int  # how many examples of the batch were checked
    max_grad_sum_error: float  # worst per-parameter relative error of the completeness check
    grad_sum_rtol: float
    independence: str  # "checked" or why it was skipped

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _devices(model: nn.Module, inputs: Tensor) -> list[int]:
    tensors = [inputs, *model.parameters(), *model.buffers()]
    return sorted({t.device.index or 0 for t in tensors if t.device.type == "cuda"})


@contextmanager
def _preserved(model: nn.Module, inputs: Tensor
               ) -> Iterator[tuple[Callable[[], None], dict[str, Tensor]]]:
    """Restore buffers and RNG streams on exit. Yield ``replay``, which resets the RNG
    streams to their state on entry (the same dropout masks for every forward), and the
    buffers on entry."""
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    devices = _devices(model, inputs)
    with torch.random.fork_rng(devices=devices):
        cpu = torch.get_rng_state()
        cuda = [torch.cuda.get_rng_state(d) for d in devices]

        def replay() -> None:
            torch.set_rng_state(cpu)
            for d, state in zip(devices, cuda, strict=True):
                torch.cuda.set_rng_state(state, d)

        try:
            yield replay, buffers
        finally:
            _restore_buffers(model, buffers)


def _restore_buffers(model: nn.Module, saved: dict[str, Tensor]) -> None:
    with torch.no_grad():
        for name, b in model.named_buffers():
            b.copy_(saved[name])


def _changed(before: Tensor, after: Tensor) -> bool:
    if before.shape != after.shape:
        return True
    differ = before != after
    if before.is_floating_point():
        differ &= ~(before.isnan() & after.isnan())
    return bool(differ.any())


def _check_buffers(model: nn.Module, saved: dict[str, Tensor]) -> None:
    for name, b in model.named_buffers():
        if _changed(saved[name], b):
            owner = name.rpartition(".")[0]
            module = model.get_submodule(owner)
            raise SelfCheckError(BUFFER_ERROR.format(
                buffer=name, module=owner or type(model).__name__, kind=type(module).__name__))


def _perturbed(inputs: Tensor) -> Tensor | None:
    """``inputs`` with example 0 changed, or None if it cannot be (an integer batch whose
    examples are all equal)."""
    out = inputs.clone()
    if inputs.is_floating_point():
        out[0] = 1 - 3 * inputs[0]
        return out
    differs = (inputs != inputs[:1]).reshape(inputs.shape[0], -1).any(1).nonzero()
    if differs.numel() == 0:
        return None
    out[0] = inputs[differs[0, 0]]
    return out


def _batch_rows(t: Tensor, batch: int, module: nn.Module | None) -> Tensor | None:
    """``t`` with the batch first, or None if no dimension of it is the batch."""
    if module is not None and getattr(module, "batch_first", True) is False and t.dim() > 1:
        return t.transpose(0, 1) if t.shape[1] == batch else None
    return t if t.dim() > 0 and t.shape[0] == batch else None


def _others_differ(a: Tensor, b: Tensor) -> int | None:
    """The first example j >= 1 whose rows of a and b differ beyond rounding, if any."""
    a, b = a[1:].reshape(a.shape[0] - 1, -1), b[1:].reshape(b.shape[0] - 1, -1)
    if not a.is_floating_point():
        bad = (a != b).any(1)
    else:
        scale = a.abs().nan_to_num(0.0, 0.0, 0.0).amax() if a.numel() else 0.0
        tol = 1000 * torch.finfo(a.dtype).eps * (1 + scale)
        diff = (a - b).abs()
        bad = ((diff > tol) | (a.isnan() != b.isnan())).any(1)
    hits = bad.nonzero()
    return int(hits[0, 0]) + 1 if hits.numel() else None


def _culprit(model: nn.Module, x: Tensor, perturbed: Tensor, replay: Callable[[], None]
             ) -> tuple[str, nn.Module] | None:
    """The first module (in the order calls finish) whose output mixes the examples."""
    names = {id(m): name or type(model).__name__ for name, m in model.named_modules()}
    records: list[list[tuple[nn.Module, Tensor]]] = [[], []]
    current: list[list[tuple[nn.Module, Tensor]]] = []

    def hook(module: nn.Module, args: tuple, output: Any) -> None:
        flat = [t for t in tree_flatten(output)[0] if isinstance(t, Tensor)]
        if flat:
            current[0].append((module, flat[0]))

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        for record, batch in zip(records, (x, perturbed), strict=True):
            current[:] = [record]
            replay()
            with torch.no_grad():
                model(batch)
    finally:
        for h in handles:
            h.remove()
    for (module, a), (_, b) in zip(*records, strict=False):
        rows_a, rows_b = (_batch_rows(t, x.shape[0], module) for t in (a, b))
        if rows_a is not None and rows_b is not None and _others_differ(rows_a, rows_b):
            return names[id(module)], module
    return None


def _check_independence(model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor,
                        replay: Callable[[], None], buffers: dict[str, Tensor]) -> str:
    if inputs.shape[0] < 2:
        return "skipped: a batch of one example"
    x, y = inputs, targets
    perturbed = _perturbed(x)
    if perturbed is None:
        return "skipped: all examples of the batch are equal"
    found = []
    with torch.no_grad():
        for batch in (x, perturbed):
            replay()
            out = model(batch)
            _check_buffers(model, buffers)
            found.append((out, loss_fn(out, y)))
    (out_a, loss_a), (out_b, loss_b) = found
    for what, a, b in (("output", out_a, out_b), ("loss", loss_a, loss_b)):
        other = _others_differ(a, b)
        if other is not None:
            culprit = _culprit(model, x, perturbed, replay) if what == "output" else None
            module, layout = "the model's loss_fn" if what == "loss" else "the model", ""
            if culprit is not None:
                name, m = culprit
                module = f"{name} ({type(m).__name__})"
                if hasattr(m, "batch_first"):
                    layout = LAYOUT_HINT.format(
                        module=name, batch_first=m.batch_first,
                        layout="(B, T, E)" if m.batch_first else "(T, B, E)")
            raise SelfCheckError(MIXES_ERROR.format(module=module, what=what, other=other,
                                                    layout=layout))
    return "checked"


def _check_grad_sum(model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor,
                    replay: Callable[[], None], buffers: dict[str, Tensor]) -> tuple[float, float]:
    """Worst per-parameter relative error and the tolerance; raises above it."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    with GradSampleEngine(model) as engine:
        replay()
        per_example = engine.compute(loss_fn, inputs, targets)
    _restore_buffers(model, buffers)
    rtol = GRAD_SUM_RTOL.get(per_example.losses.dtype, GRAD_SUM_RTOL_DEFAULT)
    keep = torch.isfinite(per_example.norms)
    if not params or not bool(keep.any()):
        return 0.0, rtol
    if not bool(keep.all()):  # the engine drops these examples; compare on the others
        inputs, targets = inputs[keep], targets[keep]
    replay()
    losses = loss_fn(model(inputs), targets)
    _check_buffers(model, buffers)
    grads = torch.autograd.grad(losses.sum(), list(params.values()), allow_unused=True)
    summed = per_example.weighted_sum(keep.to(per_example.norms.dtype))
    worst = 0.0
    with torch.no_grad():
        for (name, p), expected in zip(params.items(), grads, strict=True):
            expected = torch.zeros_like(p) if expected is None else expected
            got = summed.get(name, torch.zeros_like(p))
            sq = per_example.param_sq_norms.get(name)
            scale = float(torch.linalg.vector_norm(expected))
            if sq is not None:
                scale += float(sq[keep].sqrt().sum())
            error = float(torch.linalg.vector_norm(got - expected))
            relative = error / scale if scale > 0 else 0.0
            if not relative <= rtol:
                what = "missing" if name not in summed else "wrong (a use missed or counted twice)"
                raise SelfCheckError(GRAD_SUM_ERROR.format(param=name, error=relative, rtol=rtol,
                                                           what=what))
            worst = max(worst, relative)
    return worst, rtol


def self_check(model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor
               ) -> SelfCheckResult:
    """Check, on one batch, that DP-SGD's per-example gradients exist and are complete.

    ``loss_fn(outputs, targets)`` returns one loss per example. The checks use the first
    :data:`CHECK_EXAMPLES` examples of the batch. Raises
    :class:`SelfCheckError` (a ``ValueError``) naming the parameter, module or buffer and
    the fix; returns what was measured, including the seconds the check took.
    """
    start = time.perf_counter()
    check_model(model)
    inputs, targets = inputs[:CHECK_EXAMPLES], targets[:CHECK_EXAMPLES]
    with _preserved(model, inputs) as (replay, buffers):
        independence = _check_independence(model, loss_fn, inputs, targets, replay, buffers)
        _restore_buffers(model, buffers)
        error, rtol = _check_grad_sum(model, loss_fn, inputs, targets, replay, buffers)
    return SelfCheckResult(
        passed=True,
        seconds=time.perf_counter() - start,
        examples=int(inputs.shape[0]),
        max_grad_sum_error=error,
        grad_sum_rtol=rtol,
        independence=independence,
    )
