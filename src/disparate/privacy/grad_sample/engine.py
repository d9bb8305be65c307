"""Per-example gradient norms and weighted gradient sums from one forward and one backward.

The forward pass records each parameterised layer's inputs; one backward pass of
the summed per-example losses asks autograd only for the gradients with respect to
those layers' outputs (no parameter gradients are formed). Each layer rule turns
(input, output gradient) into per-example contributions, from which come the
per-example norms and then any weighted sum sum_i w_i g_i, e.g. the clipped sum
with w_i = min(1, S / ||g_i||) ("book-keeping": no second backward pass).

Two ways to drive it, with the same result:

* :meth:`GradSampleEngine.compute` runs the forward and the backward itself from a
  per-example ``loss_fn``;
* with ``capture=True`` the engine records the user's own forward pass and receives the
  layers' output gradients from the user's ``loss.backward()`` (tensor hooks), then
  :meth:`GradSampleEngine.captured` rescales them by the loss' declared reduction
  (``"mean"``: times B; ``"sum"``: as they are).

In :meth:`GradSampleEngine.compute`, a call of a layer whose rule also gives its input's
gradient (``nn.LSTM``, self-attention) is cut out of the graph: its forward runs without one
(or is the rule's own replay, which the rule then reuses), and in the backward the rule
takes the place of the module's own backward.

Inputs are a tensor, a tuple of tensors (``model(*inputs)``) or a mapping of tensors
(``model(**inputs)``), batch dimension first.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.autograd.graph import GradientEdge, Node, get_gradient_edge
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from disparate.privacy.grad_sample.contributions import Contribution, ParamGrads
from disparate.privacy.grad_sample.fallback import vmap_contributions
from disparate.privacy.grad_sample.layers import rule_for
from disparate.privacy.validate import check_model

LossFn = Callable[[Any, Tensor], Tensor]
Inputs = Tensor | tuple[Tensor, ...] | Mapping[str, Tensor]
LossReduction = Literal["mean", "sum"]
LOSS_REDUCTIONS: tuple[str, ...] = ("mean", "sum")

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

INPUTS_ERROR = (
    "inputs of type {kind}: expected a tensor, a tuple of tensors or a mapping of "
    "tensors, batch dimension first"
)
BATCH_ERROR = "inputs: every tensor needs the same batch size (dimension 0); got sizes {sizes}"
ACCUMULATION_ERROR = (
    "{passes} forward/backward passes since the last step(): DPOptimizer clips each "
    "example of ONE batch, so call optimizer.step() (or zero_grad()) after each "
    "loss.backward(); to use larger batches, raise the batch size"
)


def batch_size_of(inputs: Any) -> int:
    """The common size of dimension 0 of the tensors in ``inputs`` (any nesting)."""
    sizes = [t.shape[0] for t in tree_flatten(inputs)[0] if isinstance(t, Tensor) and t.dim()]
    if not sizes:
        raise ValueError(INPUTS_ERROR.format(kind=type(inputs).__name__))
    if len(set(sizes)) > 1:
        raise ValueError(BATCH_ERROR.format(sizes=sorted(set(sizes))))
    return sizes[0]


def call_model(model: nn.Module, inputs: Inputs) -> Any:
    """``model(x)``, ``model(*x)`` for a tuple/list, ``model(**x)`` for a mapping."""
    if isinstance(inputs, Tensor):
        return model(inputs)
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, tuple | list):
        return model(*inputs)
    raise ValueError(INPUTS_ERROR.format(kind=type(inputs).__name__))


def _store_grad(store: dict[int, Tensor], position: int, grad: Tensor) -> None:
    store[position] = grad


def _detach(tree: Any) -> Any:
    return tree_map(lambda t: t.detach() if isinstance(t, Tensor) else t, tree)


def _detach_args(args: tuple) -> tuple:
    """``args`` with each tensor detached, one detached tensor per tensor given more than
    once (self-attention's query, key and value stay one tensor: a rule shares their work)."""
    done: dict[int, Tensor] = {}
    return tuple(done.setdefault(id(a), a.detach()) if isinstance(a, Tensor) else a
                 for a in args)


@dataclass
class _Call:
    module_name: str
    module: nn.Module
    args: tuple
    kwargs: dict
    output_positions: list[int]
    # (shape, dtype, device) of each output needing a gradient: the zeros of one that got
    # none; the outputs themselves are not kept (a layer's output is often not saved by
    # autograd, and would otherwise live until its rule ran)
    output_meta: list[tuple[torch.Size, torch.dtype, torch.device]]
    edges: list[GradientEdge]
    # names (relative to the module) the vmap fallback differentiates; None: the rule decides
    fallback_params: list[str] | None
    grads: dict[int, Tensor] = field(default_factory=dict)  # output gradients, by position
    # a call whose graph was cut (_CutBackward): the rule's contributions, once it ran
    cut: dict[str, dict[str, Contribution]] | None = None


@dataclass
class _Pass:
    """One forward pass of the model recorded for a later ``loss.backward()``."""

    batch: int | None  # None: the inputs had no common batch dimension
    calls: list[_Call] = field(default_factory=list)

    @property
    def backwarded(self) -> bool:
        return any(c.grads for c in self.calls)


class _CutBackward(torch.autograd.Function):
    """The outputs of a call of a graph-cutting rule's module, whose backward is the rule's:
    from the output gradients it computes the call's contributions (kept in ``cut``) and the
    gradient of the call's first input; the module's own backward never runs."""

    @staticmethod
    def forward(ctx: Any, call: tuple, x: Tensor, *outputs: Tensor) -> tuple[Tensor, ...]:
        ctx.call = call  # (rule, module, detached args, kwargs, positions, cut)
        return tuple(o.view_as(o) for o in outputs)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> tuple[Tensor | None, ...]:
        found, module, args, kwargs, positions, cut = ctx.call
        cut["contributions"], d_x = _run_cutting_rule(
            found, module, args, kwargs, dict(zip(positions, grads, strict=True)),
            ctx.needs_input_grad[1], cut)
        return (None, d_x, *(None for _ in grads))


def _run_cutting_rule(found: Any, module: nn.Module, args: tuple, kwargs: dict,
                      grads: dict[int, Tensor], input_grad: bool, cut: dict | None = None
                      ) -> tuple[dict[str, Contribution], Tensor | None]:
    """The rule of a call whose graph was cut (``cut``: what its forward kept, dropped once
    the rule has it) or not."""
    more = {"replay": cut.pop("replay")} if cut and "replay" in cut else {}
    if found.with_kwargs:
        return found.rule(module, args, kwargs, grads, input_grad, **more)
    return found.rule(module, args, grads, input_grad, **more)


def _cut_output(found: Any, module: nn.Module, args: tuple, kwargs: dict, output: Any,
                cut: dict) -> Any:
    """``output`` (computed without a graph) with its floating-point tensors behind one
    :class:`_CutBackward`, whose input is the call's first argument; one that needs no
    gradient is replaced by an empty leaf (the outputs need gradients, the rule's backward
    never runs: the rule does, after the backward)."""
    flat, spec = tree_flatten(output)
    where = [i for i, t in enumerate(flat) if isinstance(t, Tensor)]  # leaf of each tensor
    positions = [k for k, i in enumerate(where) if flat[i].is_floating_point()]
    first = args[0] if args[0].requires_grad else args[0].new_empty(0).requires_grad_()
    cut_outputs = _CutBackward.apply(
        (found, module, _detach_args(args), kwargs, positions, cut), first,
        *(flat[where[k]] for k in positions))
    for k, t in zip(positions, cut_outputs, strict=True):
        flat[where[k]] = t
    return tree_unflatten(flat, spec)


def _cuttable(found: Any, args: tuple, kwargs: dict) -> bool:
    """Whether a call's graph can be cut: a cutting rule (taking keyword arguments, if there
    are any), a floating-point first argument, and no other tensor argument needing a
    gradient (the rule gives only the first one's)."""
    if found is None or not found.cuts_graph or (kwargs and not found.with_kwargs) or not args:
        return False
    first = args[0]
    rest = [t for t in tree_flatten((args[1:], kwargs))[0]
            if isinstance(t, Tensor) and t.requires_grad and t is not first]
    return isinstance(first, Tensor) and first.is_floating_point() and not rest


def _leaves(tree: Any) -> list:
    """``tree_flatten(tree)[0]``, without its cost for a tensor or a plain tuple of tensors
    (every layer's call, in every forward)."""
    if isinstance(tree, Tensor):
        return [tree]
    if type(tree) is tuple and all(isinstance(t, Tensor) for t in tree):
        return list(tree)
    return tree_flatten(tree)[0]


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


class PerExampleGrads:
    """Per-example gradients of one batch, kept in factored form.

    ``norms`` is each example's gradient norm over all trainable parameters, (B,), and
    ``param_sq_norms`` its squared norm per parameter name; ``losses`` each example's loss,
    (B,), and ``outputs`` the model's outputs (detached), both ``None`` when the gradients
    were captured from the user's own backward pass. A parameter the batch did not use has
    no entry (its gradient is 0).
    """

    def __init__(self, params: dict[str, ParamGrads], batch: int, losses: Tensor | None,
                 outputs: Any):
        self._params = params
        self.batch = batch
        self.losses = losses
        self.outputs = outputs
        with torch.no_grad():
            self.param_sq_norms = {name: pg.sq_norms() for name, pg in params.items()}
            sq_norms = list(self.param_sq_norms.values())
            sq = sq_norms[0] if sq_norms else torch.zeros(batch)
            for more in sq_norms[1:]:
                sq = sq + more
        self.norms = sq.sqrt()

    def weighted_sum(self, weights: Tensor) -> dict[str, Tensor]:
        """sum_i weights_i g_i for every trainable parameter, by name.

        An example of weight 0 is left out entirely, so a non-finite gradient of weight 0
        adds nothing (not NaN * 0).
        """
        take = self.weighted_sums(weights, release=False)
        return {name: take(name) for name in list(self._params)}

    def weighted_sums(self, weights: Tensor, *, release: bool = True
                      ) -> Callable[[str, Tensor | None], Tensor | None]:
        """A function: (parameter name, ``out``) -> that parameter's sum_i weights_i g_i as in
        :meth:`weighted_sum` (``None``: unused, gradient 0), in any order; given ``out``, a
        contiguous tensor of the parameter's shape, the sum is added into it (and ``out`` is
        returned, unused or not). ``release``: each parameter's per-example terms are
        dropped once its sum is formed, so the memory of the batch is freed layer by layer
        (then each name can be asked once)."""
        weights = weights.to(self.norms.dtype)
        keep = weights != 0
        keep = None if bool(keep.all()) else keep

        @torch.no_grad()
        def take(name: str, out: Tensor | None = None) -> Tensor | None:
            pg = self._params.pop(name, None) if release else self._params.get(name)
            return out if pg is None else pg.weighted_sum(weights, keep, out)

        return take


class GradSampleEngine:
    """Computes :class:`PerExampleGrads` for a model; hooks stay until :meth:`close`.

    Every trainable parameter is accounted for once per use: each module is hooked once
    however many names it is registered under; a call with a rule accounts for what the
    rule returns, any other call for every parameter its own code uses (read from the
    autograd graph between its inputs and outputs, nested module calls jumped over): its
    own, and its children's used without calling them (``F.linear(x, self.head.weight)``).

    ``capture=True`` also records every forward pass of ``model`` run with gradients
    enabled, for :meth:`captured` after the user's ``loss.backward()``.
    """

    def __init__(self, model: nn.Module, *, capture: bool = False):
        check_model(model)
        self.model = model
        self._names: dict[int, str] = {
            id(p): name for name, p in model.named_parameters() if p.requires_grad
        }
        self._calls: list[_Call] | None = None
        self._finished: list[_Span] = []  # every finished module call of this forward
        self._open: list[int] = []  # per running call, len(self._finished) when it started
        # the calls running without a graph, to be cut when they finish (compute() only), each
        # with the dict its _CutBackward will hold
        self._cutting: list[tuple[nn.Module, dict]] = []
        self._hooked: list[nn.Module] = []
        self._passes: list[_Pass] = []
        self._pass: _Pass | None = None  # the pass being recorded for captured()
        self._handles = []
        for module_name, module in model.named_modules():  # each module once, however named
            params = frozenset(id(p) for p in module.parameters() if p.requires_grad)
            if params:
                self._hooked.append(module)
                self._handles.append(module.register_forward_pre_hook(self._enter,
                                                                      with_kwargs=True))
                self._handles.append(module.register_forward_hook(
                    self._make_hook(module_name or type(module).__name__, params),
                    with_kwargs=True,
                ))
        if capture:  # opened before, closed after every module hook of the pass
            self._handles.append(model.register_forward_pre_hook(
                self._open_pass, with_kwargs=True, prepend=True))
            self._handles.append(model.register_forward_hook(self._close_pass))

    def _open_pass(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if self._calls is None and torch.is_grad_enabled():
            try:
                batch = batch_size_of((args, kwargs))
            except ValueError:  # reported by captured(), not by the user's forward pass
                batch = None
            self._pass = _Pass(batch=batch)
            self._passes.append(self._pass)
            self._finished, self._open = [], []

    def _close_pass(self, *_: Any) -> None:
        self._pass = None
        self._finished, self._open = [], []

    def _target(self) -> list[_Call] | None:
        """Where a finished call is recorded: compute()'s list, a captured pass, or nowhere."""
        if not torch.is_grad_enabled():
            return None
        if self._calls is not None:
            return self._calls
        return self._pass.calls if self._pass is not None else None

    def _recording(self) -> bool:
        return self._target() is not None

    def _enter(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if not self._recording():
            return
        self._open.append(len(self._finished))
        # compute() only: a user's own backward (captured) may want the module's gradients.
        # A call whose graph is cut builds none: its rule computes what its backward would.
        if self._calls is not None and _cuttable(rule_for(module), args, kwargs):
            self._cutting.append((module, {}))
            torch.set_grad_enabled(False)

    def _rule_forwards(self) -> Callable[[], None]:
        """Until the returned undo is called: a module whose rule has its own forward runs it
        in a call whose graph is cut (its own forward in any other call)."""
        patched = []
        for module in self._hooked:
            found = rule_for(module)
            if found is None or found.forward is None:
                continue
            had = module.__dict__.get("forward")  # an instance attribute of the user's: kept
            module.forward = functools.partial(self._forward, module, found.forward,
                                               module.forward)
            patched.append((module, had))

        def undo() -> None:
            for module, had in patched:
                if had is None:
                    del module.forward
                else:
                    module.forward = had

        return undo

    def _forward(self, module: nn.Module, rule_forward: Callable, own: Callable, *args: Any,
                 **kwargs: Any) -> Any:
        if not (self._cutting and self._cutting[-1][0] is module):
            return own(*args, **kwargs)
        output, self._cutting[-1][1]["replay"] = rule_forward(module, _detach_args(args),
                                                              kwargs)
        return output

    def _make_hook(self, module_name: str, params: frozenset[int]):
        def hook(module: nn.Module, args: tuple, kwargs: dict, output) -> None:
            cut = None
            if self._cutting and self._cutting[-1][0] is module:
                cut = self._cutting.pop()[1]
                torch.set_grad_enabled(True)
            if not self._recording():
                return None
            nested = self._finished[self._open.pop():]
            found = rule_for(module)
            if cut is not None:
                output = _cut_output(found, module, args, kwargs, output, cut)
            flat = [t for t in _leaves(output) if isinstance(t, Tensor)]
            positions = [i for i, t in enumerate(flat) if t.requires_grad]
            outputs = [flat[i] for i in positions]
            inputs = _leaves(args) + _leaves(kwargs) if kwargs else _leaves(args)
            span = _Span(_nodes(inputs), _nodes(outputs), module_name, params)
            self._finished.append(span)
            fallback_params = None
            if (
                found is None
                or (kwargs and not found.with_kwargs)
                or (not found.multi_output and len(outputs) != 1)
            ):
                used = _directly_used(span.outputs, span.inputs, nested)
                if used.isdisjoint(params):  # a container whose children did all the work
                    return None
                fallback_params = [name for name, p in module.named_parameters()
                                   if p.requires_grad and id(p) in used]
                self._refuse_tied_use(module_name, module, fallback_params, nested)
                if not fallback_params:
                    return None
            call = _Call(
                module_name=module_name,
                module=module,
                args=_detach_args(args),
                kwargs=kwargs,
                output_positions=positions,
                output_meta=[(t.shape, t.dtype, t.device) for t in outputs],
                edges=[get_gradient_edge(t) for t in outputs],
                fallback_params=fallback_params,
                cut=cut,
            )
            target = self._target()
            if target is not self._calls:  # captured: the user's backward fills call.grads
                for i, t in enumerate(outputs):
                    t.register_hook(functools.partial(_store_grad, call.grads, i))
            target.append(call)
            return output if cut is not None else None

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
        self.clear()

    def clear(self) -> None:
        """Forget the forward passes recorded for :meth:`captured`."""
        self._passes.clear()
        self._pass = None

    def __enter__(self) -> GradSampleEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def compute(self, loss_fn: LossFn, inputs: Inputs, targets: Tensor) -> PerExampleGrads:
        """Forward and backward once; return per-example norms and the means to sum."""
        check_model(self.model)
        batch = batch_size_of(inputs)
        self._calls, self._finished, self._open, self._cutting = [], [], [], []
        grad_enabled = torch.is_grad_enabled()
        undo = self._rule_forwards()
        try:
            outputs = call_model(self.model, inputs)
        finally:
            undo()
            calls, self._calls = self._calls, None
            self._finished, self._open, self._cutting = [], [], []
            torch.set_grad_enabled(grad_enabled)  # also after a cut call that raised
        losses = loss_fn(outputs, targets)
        if losses.shape != (batch,):
            raise ValueError(LOSS_SHAPE_ERROR.format(batch=batch, shape=tuple(losses.shape)))
        edges = [e for c in calls for e in c.edges]
        grads = torch.autograd.grad(losses.sum(), edges, allow_unused=True) if edges else ()
        start = 0
        for call in calls:
            count = len(call.output_meta)
            call.grads = {i: g for i, g in enumerate(grads[start:start + count]) if g is not None}
            start += count
        del grads  # the calls hold them now, and let each go once its layer is done
        return self._per_example(calls, batch, 1.0, losses.detach(), _detach(outputs))

    def last_batch_size(self) -> int | None:
        """Batch size of the last recorded forward pass (``None``: none recorded)."""
        return self._passes[-1].batch if self._passes else None

    def captured(self, loss_reduction: LossReduction) -> PerExampleGrads | None:
        """Per-example gradients of the forward pass that ``loss.backward()`` reached.

        ``loss_reduction`` says how the backwarded loss combined the per-example losses:
        ``"mean"`` (output gradients are multiplied by B) or ``"sum"``. Returns ``None``
        when no pass was backwarded or its batch was empty; raises ``ValueError`` when
        several were (gradient accumulation). The recorded passes are cleared.
        """
        if loss_reduction not in LOSS_REDUCTIONS:
            raise ValueError(
                f"loss_reduction={loss_reduction!r}: expected one of "
                + ", ".join(map(repr, LOSS_REDUCTIONS)))
        done = [p for p in self._passes if p.backwarded]
        self.clear()
        if len(done) > 1:
            raise ValueError(ACCUMULATION_ERROR.format(passes=len(done)))
        if not done or done[0].batch == 0:
            return None
        (recorded,) = done
        if recorded.batch is None:
            raise ValueError(INPUTS_ERROR.format(kind="without a common batch dimension"))
        scale = float(recorded.batch) if loss_reduction == "mean" else 1.0
        return self._per_example(recorded.calls, recorded.batch, scale, None, None)

    def _per_example(self, calls: list[_Call], batch: int, scale: float,
                     losses: Tensor | None, outputs: Any) -> PerExampleGrads:
        contributions: dict[str, list[Contribution]] = {}
        with torch.no_grad():
            for call in calls:
                grad_outputs = [
                    (call.grads[i] if scale == 1.0 else call.grads[i] * scale)
                    if i in call.grads else torch.zeros(shape, dtype=dtype, device=device)
                    for i, (shape, dtype, device) in enumerate(call.output_meta)
                ]
                for attr, contribution in self._contributions(call, grad_outputs, batch).items():
                    param = call.module.get_parameter(attr)
                    if contribution.batch != batch:
                        raise ValueError(NOT_PER_EXAMPLE_ERROR.format(
                            param=self._names[id(param)], module=call.module_name,
                            kind=type(call.module).__name__, got=contribution.batch,
                            batch=batch, batch_first=getattr(call.module, "batch_first", None),
                        ))
                    contributions.setdefault(self._names[id(param)], []).append(contribution)
                # the call is done: what its contributions do not hold is freed now, not
                # after the last layer (the calls are not used again)
                call.args, call.kwargs, call.grads = (), {}, {}
                del grad_outputs
            params = {name: ParamGrads(cs) for name, cs in contributions.items()}
        return PerExampleGrads(params, batch, losses, outputs)

    @staticmethod
    def _contributions(
        call: _Call, grad_outputs: list[Tensor], batch: int
    ) -> dict[str, Contribution]:
        if call.cut is not None and "contributions" in call.cut:
            return call.cut["contributions"]  # the rule ran as the call's backward
        if call.fallback_params is None:
            found = rule_for(call.module)
            by_position = dict(zip(call.output_positions, grad_outputs, strict=True))
            if found.cuts_graph:
                return _run_cutting_rule(found, call.module, call.args, call.kwargs,
                                         by_position, False, call.cut)[0]
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
