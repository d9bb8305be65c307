"""Per-example gradient norms and weighted gradient sums from one forward and one backward.

The forward pass records each parameterised layer's inputs; one backward pass of
the summed per-example losses asks autograd only for the gradients with respect to
those layers' outputs (no parameter gradients are formed). Each layer rule turns
(input, output gradient) into per-example contributions, from which come the
per-example norms and then any weighted sum sum_i w_i g_i, e.g. the clipped sum
with w_i = min(1, S / ||g_i||) ("book-keeping": no second backward pass).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.autograd.graph import GradientEdge, Node, get_gradient_edge
from torch.utils._pytree import tree_flatten

from disparate.privacy.grad_sample.contributions import Contribution, Materialized, ParamGrads
from disparate.privacy.grad_sample.fallback import vmap_contributions
from disparate.privacy.grad_sample.layers import rule_for
from disparate.privacy.validate import check_model

LossFn = Callable[[Tensor, Tensor], Tensor]

LOSS_SHAPE_ERROR = (
    "loss_fn must return one loss per example, shape ({batch},); got shape {shape}. "
    "Use a per-example loss, e.g. nn.CrossEntropyLoss(reduction='none')."
)


NOT_PER_EXAMPLE_ERROR = (
    "per-example gradients of {param} from {module} ({kind}) came out for {got} examples, "
    "expected the batch ({batch}): the layer does not keep the batch where its rule expects "
    "it (e.g. nn.MultiheadAttention with batch_first={batch_first} fed another layout). "
    "Feed it the layout it was constructed for."
)


TIED_USE_ERROR = (
    "{param} is used by {module} directly (e.g. through F.linear) and, in the same call, by "
    "{child} as a module: per-example gradients of such a tied use are not supported. Use "
    "the parameter one way within the call: call the module, or only the functional form."
)


@dataclass
class _Call:
    module_name: str
    module: nn.Module
    args: tuple
    kwargs: dict
    output_positions: list[int]
    outputs: list[Tensor]
    edges: list[GradientEdge]
    # names (relative to the module) the vmap fallback differentiates; None: the rule decides
    fallback_params: list[str] | None


def _nodes(tensors: list) -> list[Node]:
    """The autograd nodes (grad_fn, or the accumulator of a leaf) of the tensors needing grad."""
    return [get_gradient_edge(t).node for t in tensors
            if isinstance(t, Tensor) and t.requires_grad]


@dataclass
class _Span:
    """A finished module call as seen from the autograd graph: its inputs and outputs."""

    inputs: list[Node]
    outputs: list[Node]
    module_name: str
    params: frozenset[int]  # the module's trainable parameters, its children's included


def _directly_used(outputs: list[Node], inputs: list[Node], nested: list[_Span]) -> set[int]:
    """ids of the leaves (parameters) a call used itself, not through nested module calls.

    Walks the graph back from the call's outputs to its inputs, jumping over each nested
    call from its outputs to its inputs.
    """
    jumps: dict[Node, list[Node]] = {}
    for span in nested:
        for node in span.outputs:
            jumps.setdefault(node, []).extend(span.inputs)
    stop = set(inputs)
    found: set[int] = set()
    seen: set[Node] = set()
    stack = list(outputs)
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen or fn in stop:
            continue
        seen.add(fn)
        if fn in jumps:
            stack.extend(jumps[fn])
            continue
        variable = getattr(fn, "variable", None)
        if variable is not None:
            found.add(id(variable))
        stack.extend(next_fn for next_fn, _ in fn.next_functions)
    return found


def _batch_size(c: Contribution) -> int:
    if isinstance(c, Materialized):
        return c.grads.shape[c.batch_dim]
    return c.u.shape[0]


class PerExampleGrads:
    """Per-example gradients of one batch, kept in factored form.

    ``norms`` is each example's gradient norm over all trainable parameters, (B,), and
    ``param_sq_norms`` its squared norm per parameter name; ``losses`` each example's loss,
    (B,); ``outputs`` the model's outputs (detached). A parameter the batch did not use has
    no entry (its gradient is 0).
    """

    def __init__(self, params: dict[str, ParamGrads], losses: Tensor, outputs: Tensor):
        self._params = params
        self.losses = losses
        self.outputs = outputs
        with torch.no_grad():
            self.param_sq_norms = {name: pg.sq_norms() for name, pg in params.items()}
            sq = torch.zeros_like(losses)
            for param_sq in self.param_sq_norms.values():
                sq = sq + param_sq
        self.norms = sq.sqrt()

    def weighted_sum(self, weights: Tensor) -> dict[str, Tensor]:
        """sum_i weights_i g_i for every trainable parameter, by name.

        An example of weight 0 is left out entirely, so a non-finite gradient of weight 0
        adds nothing (not NaN * 0).
        """
        with torch.no_grad():
            weights = weights.to(self.losses.dtype)
            keep = weights != 0
            keep = None if bool(keep.all()) else keep
            return {name: pg.weighted_sum(weights, keep) for name, pg in self._params.items()}


class GradSampleEngine:
    """Computes :class:`PerExampleGrads` for a model; hooks stay until :meth:`close`.

    Every trainable parameter is accounted for once per use: each module is hooked once
    however many names it is registered under; a call with a rule accounts for what the
    rule returns, any other call for every parameter its own code uses (read from the
    autograd graph between its inputs and outputs, nested module calls jumped over): its
    own, and its children's used without calling them (``F.linear(x, self.head.weight)``).
    """

    def __init__(self, model: nn.Module):
        check_model(model)
        self.model = model
        self._names: dict[int, str] = {
            id(p): name for name, p in model.named_parameters() if p.requires_grad
        }
        self._calls: list[_Call] | None = None
        self._finished: list[_Span] = []  # every finished module call of this forward
        self._open: list[int] = []  # per running call, len(self._finished) when it started
        self._handles = []
        for module_name, module in model.named_modules():  # each module once, however named
            params = frozenset(id(p) for p in module.parameters() if p.requires_grad)
            if params:
                self._handles.append(module.register_forward_pre_hook(self._enter))
                self._handles.append(module.register_forward_hook(
                    self._make_hook(module_name or type(module).__name__, params),
                    with_kwargs=True,
                ))

    def _recording(self) -> bool:
        return self._calls is not None and torch.is_grad_enabled()

    def _enter(self, module: nn.Module, args: tuple) -> None:
        if self._recording():
            self._open.append(len(self._finished))

    def _make_hook(self, module_name: str, params: frozenset[int]):
        def hook(module: nn.Module, args: tuple, kwargs: dict, output) -> None:
            if not self._recording():
                return
            nested = self._finished[self._open.pop():]
            flat = [t for t in tree_flatten(output)[0] if isinstance(t, Tensor)]
            positions = [i for i, t in enumerate(flat) if t.requires_grad]
            outputs = [flat[i] for i in positions]
            span = _Span(_nodes(tree_flatten((args, kwargs))[0]), _nodes(outputs), module_name,
                         params)
            self._finished.append(span)
            found = rule_for(module)
            fallback_params = None
            if (
                found is None
                or (kwargs and not found.with_kwargs)
                or (not found.multi_output and len(outputs) != 1)
            ):
                used = _directly_used(span.outputs, span.inputs, nested)
                fallback_params = [name for name, p in module.named_parameters()
                                   if p.requires_grad and id(p) in used]
                self._refuse_tied_use(module_name, module, fallback_params, nested)
                if not fallback_params:
                    return
            self._calls.append(
                _Call(
                    module_name=module_name,
                    module=module,
                    args=tuple(a.detach() if isinstance(a, Tensor) else a for a in args),
                    kwargs=kwargs,
                    output_positions=positions,
                    outputs=outputs,
                    edges=[get_gradient_edge(t) for t in outputs],
                    fallback_params=fallback_params,
                )
            )

        return hook

    def _refuse_tied_use(
        self, module_name: str, module: nn.Module, names: list[str], nested: list[_Span]
    ) -> None:
        for name in names:
            p = module.get_parameter(name)
            for span in nested:
                if id(p) in span.params:
                    raise ValueError(TIED_USE_ERROR.format(
                        param=self._names[id(p)], module=module_name, child=span.module_name))

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> GradSampleEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def compute(self, loss_fn: LossFn, inputs: Tensor, targets: Tensor) -> PerExampleGrads:
        """Forward and backward once; return per-example norms and the means to sum."""
        check_model(self.model)
        batch = inputs.shape[0]
        self._calls, self._finished, self._open = [], [], []
        try:
            outputs = self.model(inputs)
        finally:
            calls, self._calls = self._calls, None
            self._finished, self._open = [], []
        losses = loss_fn(outputs, targets)
        if losses.shape != (batch,):
            raise ValueError(LOSS_SHAPE_ERROR.format(batch=batch, shape=tuple(losses.shape)))
        edges = [e for c in calls for e in c.edges]
        grads = torch.autograd.grad(losses.sum(), edges, allow_unused=True) if edges else ()
        contributions: dict[str, list[Contribution]] = {}
        with torch.no_grad():
            start = 0
            for call in calls:
                stop = start + len(call.outputs)
                grad_outputs = [
                    g if g is not None else torch.zeros_like(t)
                    for t, g in zip(call.outputs, grads[start:stop], strict=True)
                ]
                start = stop
                for attr, contribution in self._contributions(call, grad_outputs, batch).items():
                    param = call.module.get_parameter(attr)
                    if _batch_size(contribution) != batch:
                        raise ValueError(NOT_PER_EXAMPLE_ERROR.format(
                            param=self._names[id(param)], module=call.module_name,
                            kind=type(call.module).__name__, got=_batch_size(contribution),
                            batch=batch, batch_first=getattr(call.module, "batch_first", None),
                        ))
                    contributions.setdefault(self._names[id(param)], []).append(contribution)
            params = {name: ParamGrads(cs) for name, cs in contributions.items()}
        return PerExampleGrads(params, losses.detach(), outputs.detach())

    @staticmethod
    def _contributions(
        call: _Call, grad_outputs: list[Tensor], batch: int
    ) -> dict[str, Contribution]:
        if call.fallback_params is None:
            found = rule_for(call.module)
            by_position = dict(zip(call.output_positions, grad_outputs, strict=True))
            if found.with_kwargs:
                return found.rule(call.module, call.args, call.kwargs, by_position)
            if found.multi_output:
                return found.rule(call.module, call.args, by_position)
            return found.rule(call.module, call.args, grad_outputs[0])
        return vmap_contributions(
            call.module_name,
            call.module,
            call.args,
            call.kwargs,
            call.output_positions,
            grad_outputs,
            batch,
            call.fallback_params,
        )
