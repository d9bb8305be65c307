"""DP-SGD speed benchmark: one training step of each contender, interleaved round by round.

Not a test. Every contender trains its own copy of the same model (same initial weights, SGD
lr 0.01) on the same fixed random batch; a round runs one full step of each (forward,
backward, clipping, noise, ``optimizer.step``, ``zero_grad``) in an order that rotates from
round to round. The machine is assumed shared and noisy, so nothing rests on one absolute
time: each contender reports its median step time, and its speed relative to the
non-private step is the median over rounds of the paired per-round ratio
``t_non_private / t_contender``.

Contenders (DP ones with max_grad_norm S=1.0, noise_multiplier z=0.8):

- ``non-private``: ``CrossEntropyLoss()(model(x), y).backward(); opt.step(); opt.zero_grad()``.
- ``disparate``: ``disparate.privacy.DPOptimizer`` (one forward, one backward, book-keeping
  clipping).
- ``opacus-ghost``: Opacus ``grad_sample_mode="ghost"`` (the wrapped criterion runs the double
  backward of fast gradient / ghost clipping).
- ``opacus-hooks``: Opacus ``grad_sample_mode="hooks"`` (materialised per-example gradients).
- ``disparate-no-dp`` (on request): a ``--no-dp`` run's step with per-example statistics,
  ``DPOptimizer(max_grad_norm=None)`` (the engine computes the norms, nothing is clipped).
- ``disparate-plain`` (on request): the same run with ``training.per_example_stats: false``,
  ``disparate.training.plain_step`` (plain forward and backward, then the optimizer's update).
- ``noise-floor``: the non-private step with the DP step's Gaussian noise (std z*S/B, drawn by
  ``disparate.privacy.noise.parameter_noise`` from a secret generator, as ``DPOptimizer``
  draws it) added to its gradients before ``opt.step()``: what a DP-SGD step would cost if
  per-example clipping were free, the bound for any engine that draws noise this way.
- ``per-example-loop``: the paper's approach: forward and backward each example alone, clip
  its gradient, accumulate, add noise, step. Very slow, so it runs in only ``--loop-rounds``
  of the rounds, spread evenly and still interleaved with the others.

Opacus is a test extra: without it, its rows are skipped with a note. The benchmark runs in
the environment it is given: it sets no process-wide option (``OMP_WAIT_POLICY`` and the like)
that a user's training process would not have. It records the load average before and after
each row, the spread (interquartile range) of the paired ratios, and each contender's peak
memory of one step against the non-private step's.

    python benchmarks/dpsgd_speed.py --rounds 20
    python benchmarks/dpsgd_speed.py --models mlp --json --check
"""

from __future__ import annotations

import argparse
import copy
import gc
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from disparate.models import build_model, count_parameters
from disparate.privacy import DPOptimizer
from disparate.privacy.noise import make_generator, parameter_noise
from disparate.training import plain_step

LR = 0.01
MAX_GRAD_NORM = 1.0
NOISE_MULTIPLIER = 0.8
NUM_CLASSES = 10

NON_PRIVATE = "non-private"
DISPARATE = "disparate"
OPACUS_GHOST = "opacus-ghost"
OPACUS_HOOKS = "opacus-hooks"
LOOP = "per-example-loop"
NOISE_FLOOR = "noise-floor"
ENGINE_NO_DP = "disparate-no-dp"
PLAIN = "disparate-plain"
CONTENDERS = (NON_PRIVATE, DISPARATE, NOISE_FLOOR, OPACUS_GHOST, OPACUS_HOOKS, LOOP)
NO_DP_CONTENDERS = (ENGINE_NO_DP, PLAIN)  # run only when named in --contenders
MIN_ROUNDS = 30  # fewer rounds is a smoke run, not a measurement
OPACUS_CONTENDERS = (OPACUS_GHOST, OPACUS_HOOKS)


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelSpec:
    """One benchmark row: how to build the model, make a batch, and the default batch size.

    ``opacus_build``, if set, turns the Opacus contenders' copy of the model into one Opacus
    can wrap, computing the same function with the same weights (``nn.LSTM`` ->
    ``opacus.layers.DPLSTM``)."""

    description: str
    build: Callable[[], nn.Module]
    make_batch: Callable[[int, torch.Generator], tuple[Tensor, Tensor]]
    batch_size: int
    opacus_build: Callable[[nn.Module], nn.Module] | None = None


def image_batch(
    shape: tuple[int, ...], num_classes: int = NUM_CLASSES
) -> Callable[[int, torch.Generator], tuple[Tensor, Tensor]]:
    """A maker of random (B, *shape) float inputs and (B,) integer labels."""

    def make(batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        x = torch.randn((batch_size, *shape), generator=generator)
        y = torch.randint(num_classes, (batch_size,), generator=generator)
        return x, y

    return make


def _basic_block_forward(self: nn.Module, x: Tensor) -> Tensor:
    """torchvision's BasicBlock.forward with ``out = out + identity`` instead of ``+=``."""
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    return self.relu(out + identity)


def without_inplace_ops(model: nn.Module) -> nn.Module:
    """ResNet without in-place ops (ReLU(inplace=True), ``out += identity``): Opacus's
    backward hooks refuse in-place changes of a hooked layer's output. Same function, so
    the one model serves every contender."""
    import types

    from torchvision.models.resnet import BasicBlock

    for module in model.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
        if isinstance(module, BasicBlock):
            module.forward = types.MethodType(_basic_block_forward, module)
    return model


def token_batch(
    length: int, vocab_size: int, num_classes: int = 2
) -> Callable[[int, torch.Generator], tuple[Tensor, Tensor]]:
    """A maker of random (B, length) token ids in [1, vocab_size) and (B,) labels."""

    def make(batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        x = torch.randint(1, vocab_size, (batch_size, length), generator=generator)
        y = torch.randint(num_classes, (batch_size,), generator=generator)
        return x, y

    return make


def lstm_to_dplstm(model: nn.Module) -> nn.Module:
    """``model.lstm`` (an ``nn.LSTM``) replaced by Opacus's ``DPLSTM`` with the same weights
    (its parameters carry ``nn.LSTM``'s names); Opacus refuses ``nn.LSTM`` itself."""
    from opacus.layers import DPLSTM

    lstm = model.lstm
    dp = DPLSTM(lstm.input_size, lstm.hidden_size, num_layers=lstm.num_layers, bias=lstm.bias,
                batch_first=lstm.batch_first, bidirectional=lstm.bidirectional)
    dp.load_state_dict(lstm.state_dict())
    model.lstm = dp
    return model


class TransformerClassifier(nn.Module):
    """A Transformer encoder on (B, T, d) inputs, mean-pooled over T, then a linear head."""

    def __init__(self, d_model: int, heads: int, layers: int, num_classes: int = NUM_CLASSES):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=4 * d_model,
                                           dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x).mean(dim=1))  # (B, T, d) -> (B, d) -> (B, classes)


MNIST_SHAPE = (1, 28, 28)
TRANSFORMER_D, TRANSFORMER_HEADS, TRANSFORMER_LAYERS = 256, 4, 2
TRANSFORMER_LENGTHS = (16, 64, 256)
CNN_BATCHES = (64, 1024)  # besides the default row's 256
FACES_SHAPE = (3, 64, 64)  # the paper's face crops (Section 4.1)
TWEET_LENGTH, TWEET_VOCAB = 30, 20000  # the paper's tweet model (Section 4.2), 30 tokens

def mnist_cnn() -> nn.Module:
    return build_model("mnist-cnn", num_classes=NUM_CLASSES, input_shape=MNIST_SHAPE)


# Add rows here (e.g. an LSTM with a token-batch maker).
MODEL_SPECS: dict[str, ModelSpec] = {
    "mnist-cnn": ModelSpec(
        description="the paper's MNIST CNN (conv 20, conv 50, fc 500, fc 10) on 1x28x28",
        build=mnist_cnn,
        make_batch=image_batch(MNIST_SHAPE),
        batch_size=256,
    ),
    **{
        f"mnist-cnn-b{batch}": ModelSpec(
            description=f"the paper's MNIST CNN at batch {batch}",
            build=mnist_cnn,
            make_batch=image_batch(MNIST_SHAPE),
            batch_size=batch,
        )
        for batch in CNN_BATCHES
    },
    "mlp": ModelSpec(
        description="MLP 784->512->256->10 (ReLU) on flattened 1x28x28",
        build=lambda: build_model(
            "mlp", num_classes=NUM_CLASSES, input_shape=MNIST_SHAPE, hidden_sizes=(512, 256)
        ),
        make_batch=image_batch(MNIST_SHAPE),
        batch_size=256,
    ),
    "mlp-2048": ModelSpec(
        description="MLP 784->2048->2048->10 (ReLU) on flattened 1x28x28",
        build=lambda: build_model(
            "mlp", num_classes=NUM_CLASSES, input_shape=MNIST_SHAPE, hidden_sizes=(2048, 2048)
        ),
        make_batch=image_batch(MNIST_SHAPE),
        batch_size=256,
    ),
    **{
        f"transformer-{length}": ModelSpec(
            description=f"Transformer encoder ({TRANSFORMER_LAYERS} layers, d {TRANSFORMER_D}, "
            f"{TRANSFORMER_HEADS} heads, FF {4 * TRANSFORMER_D}, no dropout) on {length} "
            f"random {TRANSFORMER_D}-d tokens, mean pooling, Linear({TRANSFORMER_D}, 10)",
            build=lambda: TransformerClassifier(TRANSFORMER_D, TRANSFORMER_HEADS,
                                                TRANSFORMER_LAYERS),
            make_batch=image_batch((length, TRANSFORMER_D)),
            batch_size=32,
        )
        for length in TRANSFORMER_LENGTHS
    },
    "resnet18": ModelSpec(
        description="torchvision ResNet18 (BatchNorm -> GroupNorm, no in-place ops, random "
        "init) on 3x64x64, the paper's face model",
        build=lambda: without_inplace_ops(
            build_model("resnet18", num_classes=2, input_shape=FACES_SHAPE, batchnorm="groupnorm")
        ),
        make_batch=image_batch(FACES_SHAPE, num_classes=2),
        batch_size=64,
    ),
    "lstm": ModelSpec(
        description="Embedding(20000, 300) -> 2-layer bidirectional nn.LSTM(200) -> max "
        "pooling -> Linear(400, 2) (text-lstm, the paper's tweet model) on 30 tokens; Opacus "
        "runs it with DPLSTM",
        build=lambda: build_model(
            "text-lstm", num_classes=2, input_shape=(TWEET_LENGTH,), vocab_size=TWEET_VOCAB,
            embeddings="random"
        ),
        make_batch=token_batch(TWEET_LENGTH, TWEET_VOCAB),
        batch_size=64,
        opacus_build=lstm_to_dplstm,
    ),
}


# --------------------------------------------------------------------------- contenders


class Contender:
    """One way to take a training step. ``update`` leaves the final gradient in ``p.grad``."""

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor):
        self.model = model  # the plain module; its parameters are the ones trained
        self.x = x
        self.y = y

    def update(self) -> None:
        """Everything up to and including ``optimizer.step()``."""
        raise NotImplementedError

    def zero_grad(self) -> None:
        raise NotImplementedError

    def step(self) -> None:
        """One full training step (what is timed)."""
        self.update()
        self.zero_grad()

    def close(self) -> None:
        """Release hooks."""


class NonPrivate(Contender):
    def __init__(
        self, model: nn.Module, x: Tensor, y: Tensor, *, noise_multiplier: float, lr: float
    ):
        super().__init__(model, x, y)
        self.opt = torch.optim.SGD(model.parameters(), lr=lr)
        self.criterion = nn.CrossEntropyLoss()

    def update(self) -> None:
        self.criterion(self.model(self.x), self.y).backward()
        self.perturb()
        self.opt.step()

    def perturb(self) -> None:
        """Change the gradients between the backward and the step (here: not at all)."""

    def zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=True)


class NoiseFloor(NonPrivate):
    """The non-private step plus the DP step's noise: clipping for free."""

    def __init__(
        self, model: nn.Module, x: Tensor, y: Tensor, *, noise_multiplier: float, lr: float
    ):
        super().__init__(model, x, y, noise_multiplier=noise_multiplier, lr=lr)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.noise_std = noise_multiplier * MAX_GRAD_NORM / x.shape[0]
        self.generator = make_generator(None)

    def perturb(self) -> None:
        noise = parameter_noise(self.params, self.noise_std, self.generator)
        for param, drawn in zip(self.params, noise, strict=True):
            param.grad.add_(drawn)


class Disparate(Contender):
    def __init__(
        self, model: nn.Module, x: Tensor, y: Tensor, *, noise_multiplier: float, lr: float
    ):
        super().__init__(model, x, y)
        self.opt = DPOptimizer(
            torch.optim.SGD(model.parameters(), lr=lr),
            model,
            expected_batch_size=x.shape[0],
            max_grad_norm=MAX_GRAD_NORM,
            noise_multiplier=noise_multiplier,
        )
        self.loss_fn = nn.CrossEntropyLoss(reduction="none")

    def update(self) -> None:
        self.opt.step(self.loss_fn, self.x, self.y)

    def zero_grad(self) -> None:
        self.opt.zero_grad()

    def close(self) -> None:
        self.opt.close()


class DisparateNoDP(Contender):
    """A non-private run of the training loop: through the engine (per-example norms) or,
    ``plain``, through :func:`disparate.training.plain_step`."""

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor, *, noise_multiplier: float,
                 lr: float, plain: bool):
        super().__init__(model, x, y)
        self.opt = DPOptimizer(torch.optim.SGD(model.parameters(), lr=lr), model,
                               expected_batch_size=x.shape[0], max_grad_norm=None)
        self.plain = plain
        if plain:
            self.opt.close()  # plain_step's model carries no engine hooks
        self.loss_fn = nn.CrossEntropyLoss(reduction="none")

    def update(self) -> None:
        if self.plain:
            plain_step(self.model, self.opt.optimizer, self.loss_fn, self.x, self.y,
                       expected_batch_size=self.opt.expected_batch_size, noise_std=0.0,
                       generator=self.opt.noise_generator)
        else:
            self.opt.step(self.loss_fn, self.x, self.y)

    def zero_grad(self) -> None:
        self.opt.zero_grad()

    def close(self) -> None:
        self.opt.close()


class Opacus(Contender):
    """Opacus ``PrivacyEngine.make_private`` in ``hooks`` or ``ghost`` mode, fixed-size batches."""

    def __init__(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        *,
        noise_multiplier: float,
        lr: float,
        mode: str,
    ):
        super().__init__(model, x, y)
        from opacus import PrivacyEngine
        from torch.utils.data import DataLoader, TensorDataset

        self.mode = mode
        loader = DataLoader(TensorDataset(x, y), batch_size=x.shape[0])
        engine = PrivacyEngine()
        common = dict(
            module=model,
            optimizer=torch.optim.SGD(model.parameters(), lr=lr),
            data_loader=loader,
            noise_multiplier=noise_multiplier,
            max_grad_norm=MAX_GRAD_NORM,
            poisson_sampling=False,
            grad_sample_mode=mode,
            noise_generator=torch.Generator().manual_seed(0),
        )
        if mode == "ghost":
            # Returns a criterion whose loss.backward() runs both backward passes.
            self.wrapped, self.opt, self.criterion, _ = engine.make_private(
                criterion=nn.CrossEntropyLoss(), **common
            )
        else:
            self.wrapped, self.opt, _ = engine.make_private(**common)
            self.criterion = nn.CrossEntropyLoss()

    def update(self) -> None:
        loss = self.criterion(self.wrapped(self.x), self.y)
        loss.backward()
        self.opt.step()

    def zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=True)

    def close(self) -> None:
        cleanup = getattr(self.wrapped, "cleanup", None)
        if callable(cleanup):
            cleanup()


class PerExampleLoop(Contender):
    """Per example: forward, backward, clip to S, accumulate; then noise, / B, step."""

    def __init__(
        self, model: nn.Module, x: Tensor, y: Tensor, *, noise_multiplier: float, lr: float
    ):
        super().__init__(model, x, y)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.SGD(self.params, lr=lr)
        self.criterion = nn.CrossEntropyLoss()
        self.noise_std = noise_multiplier * MAX_GRAD_NORM
        self.generator = torch.Generator().manual_seed(0)

    def update(self) -> None:
        batch = self.x.shape[0]
        summed = [torch.zeros_like(p) for p in self.params]
        for i in range(batch):
            loss = self.criterion(self.model(self.x[i : i + 1]), self.y[i : i + 1])
            grads = torch.autograd.grad(loss, self.params)
            with torch.no_grad():
                norm = torch.stack([g.pow(2).sum() for g in grads]).sum().sqrt()
                factor = (MAX_GRAD_NORM / norm.clamp_min(1e-12)).clamp_max(1.0)
                for s, g in zip(summed, grads, strict=True):
                    s.add_(g * factor)
        with torch.no_grad():
            for p, s in zip(self.params, summed, strict=True):
                if self.noise_std > 0:
                    s.add_(torch.randn(s.shape, generator=self.generator), alpha=self.noise_std)
                p.grad = s / batch
        self.opt.step()

    def zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=True)


def make_contender(
    name: str, model: nn.Module, x: Tensor, y: Tensor, *, noise_multiplier: float, lr: float
) -> Contender:
    kwargs: dict[str, Any] = dict(noise_multiplier=noise_multiplier, lr=lr)
    if name == NON_PRIVATE:
        return NonPrivate(model, x, y, **kwargs)
    if name == DISPARATE:
        return Disparate(model, x, y, **kwargs)
    if name == NOISE_FLOOR:
        return NoiseFloor(model, x, y, **kwargs)
    if name == OPACUS_GHOST:
        return Opacus(model, x, y, mode="ghost", **kwargs)
    if name == OPACUS_HOOKS:
        return Opacus(model, x, y, mode="hooks", **kwargs)
    if name == LOOP:
        return PerExampleLoop(model, x, y, **kwargs)
    if name in NO_DP_CONTENDERS:
        return DisparateNoDP(model, x, y, plain=name == PLAIN, **kwargs)
    raise ValueError(f"contender={name!r}: expected one of "
                     f"{list(CONTENDERS + NO_DP_CONTENDERS)}")


# --------------------------------------------------------------------------- helpers


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def opacus_version() -> str | None:
    if importlib.util.find_spec("opacus") is None:
        return None
    import opacus

    return str(opacus.__version__)


def short_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
    return text if len(text) <= 200 else text[:197] + "..."


def warning_texts(caught: Sequence[warnings.WarningMessage]) -> list[str]:
    seen: dict[str, None] = {}
    for w in caught:
        text = f"{w.category.__name__}: {str(w.message).strip().splitlines()[0]}"
        seen[text[:200]] = None
    return list(seen)


def loop_schedule(rounds: int, loop_rounds: int) -> set[int]:
    """Measured-round indices in which the per-example loop runs, spread evenly."""
    n = max(0, min(loop_rounds, rounds))
    return {(i * rounds) // n for i in range(n)} if n else set()


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def paired_ratios(rounds: list[dict[str, float]], fast: str, slow: str) -> list[float]:
    """t_slow / t_fast (= speed of fast / speed of slow) of every round where both ran."""
    return [r[slow] / r[fast] for r in rounds if fast in r and slow in r]


def paired_ratio(rounds: list[dict[str, float]], fast: str, slow: str) -> float | None:
    """Median over rounds where both ran of t_slow / t_fast (= speed of fast / speed of slow)."""
    ratios = paired_ratios(rounds, fast, slow)
    return statistics.median(ratios) if ratios else None


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (``None`` where the system has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def peak_step_memory(contender: Contender) -> int:
    """Peak bytes allocated on the CPU during one step, above what was allocated before it.

    Read from the profiler's memory events (``Total Allocated`` counts from the start of the
    profile), so persistent state (weights, the batch, optimizer state) is not counted, and
    what the step allocates and frees on the way (activations, per-example terms, gradients,
    noise) is.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        contender.step()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    totals = [e["args"]["Total Allocated"] for e in events
              if e.get("name") == "[memory]" and e["args"].get("Device Type") == 0]
    return max([0, *totals])


# --------------------------------------------------------------------------- benchmark


def build_contenders(
    names: Sequence[str],
    spec: ModelSpec,
    x: Tensor,
    y: Tensor,
    seed: int,
    *,
    noise_multiplier: float,
    lr: float,
) -> tuple[dict[str, Contender], dict[str, str], dict[str, list[str]]]:
    """Each contender on its own copy of one initial model. Returns (ok, skipped, warnings)."""
    torch.manual_seed(seed)
    base = spec.build()
    contenders: dict[str, Contender] = {}
    skipped: dict[str, str] = {}
    caught_by: dict[str, list[str]] = {}
    for name in names:
        if name in OPACUS_CONTENDERS and opacus_version() is None:
            skipped[name] = "opacus is not installed (pip install -e '.[test]')"
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                model = copy.deepcopy(base)
                if name in OPACUS_CONTENDERS and spec.opacus_build is not None:
                    model = spec.opacus_build(model)
                contenders[name] = make_contender(
                    name, model, x, y, noise_multiplier=noise_multiplier, lr=lr
                )
            except Exception as exc:  # a mode that cannot wrap this model is a result
                skipped[name] = f"setup failed: {short_error(exc)}"
        if caught:
            caught_by[name] = warning_texts(caught)
    return contenders, skipped, caught_by


def time_model(
    model_name: str, spec: ModelSpec, names: Sequence[str], args: argparse.Namespace
) -> dict[str, Any]:
    batch_size = args.batch_size or spec.batch_size
    generator = torch.Generator().manual_seed(args.seed)
    x, y = spec.make_batch(batch_size, generator)
    contenders, skipped, caught_by = build_contenders(
        names, spec, x, y, args.seed, noise_multiplier=NOISE_MULTIPLIER, lr=LR
    )
    n_params = count_parameters(next(iter(contenders.values())).model) if contenders else None
    log(
        f"[{model_name}] {spec.description}; {fmt(n_params, ',')} parameters; batch {batch_size}; "
        f"contenders {list(contenders)}"
    )
    for name, reason in skipped.items():
        log(f"[{model_name}] skipping {name}: {reason}")

    load_before = load_average()
    loop_rounds = loop_schedule(args.rounds, args.loop_rounds)
    times: list[dict[str, float]] = []
    peaks: dict[str, int] = {}
    total = args.warmup + args.rounds
    try:
        for r in range(total):
            measured = r >= args.warmup
            m = r - args.warmup
            active = [
                n for n in contenders if n != LOOP or (m in loop_rounds if measured else r == 0)
            ]
            if not active:
                continue
            shift = r % len(active)
            order = active[shift:] + active[:shift]
            gc.collect()
            gc.disable()
            row: dict[str, float] = {}
            try:
                for name in order:
                    contender = contenders[name]
                    with warnings.catch_warnings(record=True) as caught:
                        if not measured:
                            warnings.simplefilter("always")
                        try:
                            t0 = time.perf_counter()
                            contender.step()
                            dt = time.perf_counter() - t0
                        except Exception as exc:
                            skipped[name] = f"step failed: {short_error(exc)}"
                            log(f"[{model_name}] {name} dropped: {skipped[name]}")
                            contender.close()
                            del contenders[name]
                            continue
                    if caught:
                        caught_by[name] = list(
                            dict.fromkeys(caught_by.get(name, []) + warning_texts(caught))
                        )
                    row[name] = dt
            finally:
                gc.enable()
            if measured:
                times.append(row)
            phase = "warm-up" if not measured else "round"
            index = r + 1 if not measured else m + 1
            of = args.warmup if not measured else args.rounds
            log(
                f"[{model_name}] {phase} {index}/{of}: "
                + ", ".join(f"{n} {row[n] * 1e3:.1f} ms" for n in order if n in row)
            )
        if args.memory:  # after the timed rounds, so the profiler cannot slow them
            for name, contender in contenders.items():
                if name != LOOP:
                    peaks[name] = peak_step_memory(contender)
    finally:
        for contender in contenders.values():
            contender.close()

    results: dict[str, Any] = {}
    for name in names:
        samples = [row[name] for row in times if name in row]
        if name not in contenders or not samples:
            continue
        med = statistics.median(samples)
        ratios = paired_ratios(times, name, NON_PRIVATE)
        peak = peaks.get(name)
        results[name] = {
            "median_ms": med * 1e3,
            "q25_ms": quantile(samples, 0.25) * 1e3,
            "q75_ms": quantile(samples, 0.75) * 1e3,
            "steps_per_s": 1.0 / med,
            "ratio_to_non_private": statistics.median(ratios),
            "ratio_q25": quantile(ratios, 0.25),
            "ratio_q75": quantile(ratios, 0.75),
            "rounds": len(samples),
            "peak_mb": None if peak is None else peak / 2**20,
            "peak_to_non_private": (peak / peaks[NON_PRIVATE]
                                    if peak is not None and peaks.get(NON_PRIVATE) else None),
        }
    comparisons = {
        f"{DISPARATE}/{other}": paired_ratio(times, DISPARATE, other)
        for other in (NOISE_FLOOR, OPACUS_GHOST, OPACUS_HOOKS, LOOP)
        if DISPARATE in results and other in results
    }
    return {
        "description": spec.description,
        "parameters": n_params,
        "batch_size": batch_size,
        "contenders": results,
        "speedup_of_disparate": comparisons,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "skipped": skipped,
        "warnings": caught_by,
    }


def check_model(
    model_name: str, spec: ModelSpec, names: Sequence[str], args: argparse.Namespace
) -> dict[str, Any]:
    """Clipped gradient sums with noise off and lr 0, against the per-example loop."""
    batch_size = args.batch_size or spec.batch_size
    x, y = spec.make_batch(batch_size, torch.Generator().manual_seed(args.seed))
    wanted = [n for n in (LOOP, DISPARATE, OPACUS_GHOST, OPACUS_HOOKS) if n in names or n == LOOP]
    contenders, skipped, _ = build_contenders(
        wanted, spec, x, y, args.seed, noise_multiplier=0.0, lr=0.0
    )
    sums: dict[str, dict[str, Tensor]] = {}  # by parameter name (opacus_build keeps names)
    for name, contender in contenders.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # reported by the timing run
            try:
                contender.update()
                sums[name] = {n: p.grad.detach() * batch_size
                              for n, p in contender.model.named_parameters()}
            except Exception as exc:
                skipped[name] = f"step failed: {short_error(exc)}"
            finally:
                contender.close()
    reference = sums.pop(LOOP)
    scale = max(r.abs().max().item() for r in reference.values())
    out: dict[str, Any] = {"reference": LOOP, "reference_max_abs": scale, "max_abs_diff": {}}
    for name, grads in sums.items():
        diff = max((grads[n] - r).abs().max().item() for n, r in reference.items())
        out["max_abs_diff"][name] = diff
        log(
            f"[{model_name}] check: {name} clipped sum vs {LOOP}: max abs diff {diff:.3g} "
            f"(max abs value {scale:.3g})"
        )
    out["skipped"] = skipped
    return out


# --------------------------------------------------------------------------- output


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        f"DP-SGD step speed: torch {s['torch']}, opacus {s['opacus'] or 'not installed'}, "
        f"{s['threads']} threads (OMP_WAIT_POLICY {s['omp_wait_policy']}, "
        f"{s['cpu_count']} CPUs), "
        f"{s['rounds']} rounds after {s['warmup']} warm-up "
        f"({LOOP}: {s['loop_rounds']} of them), S={s['max_grad_norm']}, "
        f"z={s['noise_multiplier']}, SGD lr {s['lr']}.",
        "Ratios are medians of paired per-round ratios of steps/s (IQR: their spread); "
        "peak MB: the most memory one step allocates above what was allocated before it.",
    ]
    if s["rounds"] < MIN_ROUNDS:
        lines.append(f"Only {s['rounds']} rounds (< {MIN_ROUNDS}): a smoke run, not a "
                     "measurement.")
    for name, m in report["models"].items():
        lines += [
            "",
            f"### {name}: {m['description']}; {fmt(m['parameters'], ',')} parameters, "
            f"batch {m['batch_size']}; load average (1, 5, 15 min) "
            f"{m['load_average_before']} before, {m['load_average_after']} after",
            "",
            "| contender | rounds | median ms/step | IQR ms | steps/s | x non-private | "
            "IQR of ratio | peak MB | peak x non-private |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for c, r in m["contenders"].items():
            lines.append(
                f"| {c} | {r['rounds']} | {r['median_ms']:.1f} | "
                f"{r['q25_ms']:.1f}-{r['q75_ms']:.1f} | {r['steps_per_s']:.2f} | "
                f"{fmt(r['ratio_to_non_private'], '.3f')} | "
                f"{r['ratio_q25']:.3f}-{r['ratio_q75']:.3f} | {fmt(r['peak_mb'], '.1f')} | "
                f"{fmt(r['peak_to_non_private'], '.2f')} |"
            )
        lines.append("")
        for key, value in m["speedup_of_disparate"].items():
            lines.append(f"- steps/s {key}: {fmt(value, '.2f')}x")
        for c, reason in m["skipped"].items():
            lines.append(f"- skipped {c}: {reason}")
        for c, texts in m["warnings"].items():
            for text in texts:
                lines.append(f"- warning from {c}: {text}")
        check = report.get("check", {}).get(name)
        if check:
            for c, diff in check["max_abs_diff"].items():
                lines.append(
                    f"- check (noise off): {c} clipped sum vs {LOOP}: max abs diff {diff:.3g} "
                    f"(values up to {check['reference_max_abs']:.3g})"
                )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Interleaved DP-SGD step-time benchmark (median and paired ratios).",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(MODEL_SPECS),
        help=f"models (space or comma separated) from {list(MODEL_SPECS)}",
    )
    parser.add_argument(
        "--contenders",
        nargs="+",
        default=list(CONTENDERS),
        help=f"contenders from {list(CONTENDERS + NO_DP_CONTENDERS)} (default: "
        f"{list(CONTENDERS)}); {NON_PRIVATE} always runs",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="batch size for every model (default: each model's own, 256)",
    )
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS,
                        help=f"measured rounds (default {MIN_ROUNDS}; fewer is a smoke run)")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured rounds (default 3)")
    parser.add_argument(
        "--loop-rounds",
        type=int,
        default=5,
        help=f"measured rounds in which {LOOP} runs (default 5)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--check",
        action="store_true",
        help="first compare clipped sums (noise off) with the per-example loop",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.add_argument(
        "--no-memory",
        dest="memory",
        action="store_false",
        help="skip the peak memory of each step (one profiled step per contender)",
    )
    args = parser.parse_args(argv)

    def split(values: list[str]) -> list[str]:
        return list(dict.fromkeys(v for item in values for v in item.split(",") if v))

    args.models = split(args.models)
    bad = [m for m in args.models if m not in MODEL_SPECS]
    if bad:
        parser.error(f"--models {bad}: unknown; valid choices are {list(MODEL_SPECS)}")
    chosen = split(args.contenders)
    every = CONTENDERS + NO_DP_CONTENDERS
    bad = [c for c in chosen if c not in every]
    if bad:
        parser.error(f"--contenders {bad}: unknown; valid choices are {list(every)}")
    args.contenders = [c for c in every if c in chosen or c == NON_PRIVATE]
    for name in ("rounds", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}={getattr(args, name)}: expected >= 1")
    for name in ("warmup", "loop_rounds"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')}={getattr(args, name)}: expected >= 0")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error(f"--batch-size={args.batch_size}: expected >= 1")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark; return the report (what ``--json`` prints)."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        report: dict[str, Any] = {
            "settings": {
                "threads": args.threads,
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
                "cpu_count": os.cpu_count(),
                "load_average_start": load_average(),
                "batch_size": args.batch_size,
                "rounds": args.rounds,
                "warmup": args.warmup,
                "loop_rounds": min(args.loop_rounds, args.rounds),
                "seed": args.seed,
                "max_grad_norm": MAX_GRAD_NORM,
                "noise_multiplier": NOISE_MULTIPLIER,
                "lr": LR,
                "torch": torch.__version__,
                "opacus": opacus_version(),
                "python": platform.python_version(),
                "machine": platform.machine(),
            },
            "models": {},
        }
        if args.check:
            report["check"] = {
                m: check_model(m, MODEL_SPECS[m], args.contenders, args) for m in args.models
            }
        for m in args.models:
            report["models"][m] = time_model(m, MODEL_SPECS[m], args.contenders, args)
        return report
    finally:
        torch.set_num_threads(previous_threads)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    print(json.dumps(report, indent=2) if args.json else markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
