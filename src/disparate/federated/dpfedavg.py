"""DP-FedAvg (McMahan et al. 2018; paper Section 3.3): local training, clipping, aggregation.

One round t::

    sample participants (Poisson with q = C / N, or exactly C uniformly)   fl_participants, t
    for each sampled participant i:                                       fl_local, (t, i)
        L_i <- local SGD from G_t on i's training data (E epochs, batch B, lr)
        Delta_i <- L_i - G_t                      over the DISTINCT parameters (tied once)
        server: clip Delta_i to norm S and add it to a running sum         (memory O(model))
    average  = sum / C                                       fixed denominator C, not |sample|
    G_{t+1}  = G_t + eta * (average + N(0, sigma^2 I)),  sigma = z * S / C   fl_noise, t

Adding or removing one participant changes ``sum`` by at most S, the average by S / C, so the
noise multiplier of the mechanism is ``sigma / (S / C) = z`` and the privacy of T rounds is
that of T compositions of a Poisson-subsampled Gaussian with q = C / N and noise multiplier z
(:func:`participant_epsilons`). The paper writes the noise std on the average: its
``sigma = 0.001`` with ``S = 10``, ``C = 100`` is ``z = sigma * C / S = 0.01``.

Clipping modes (``federated.clip_mode``): ``update`` clips the finished update once (paper
Section 3.3); ``local_projection`` projects the local model onto the S-ball around G_t after
every local SGD step (the released code). In both the server also clips the final update, so
the sensitivity bound holds whatever the client did.

Randomness: every random choice is drawn from its own stream of the seed tree
(:mod:`disparate.randomness`: ``fl_participants`` and ``fl_noise`` by round, ``fl_local`` by
round and participant). In a DP run the participant sampling and the noise are rooted in the
run's secret (:class:`~disparate.randomness.SeedTree`, never sent to participants), the local
training in ``training.seed``. A round's result does not depend on the order in
which participants are trained -- in-process or by Flower workers in any order -- except for the
floating-point order of the float64 running sum (differences far below float32 resolution).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from disparate.config import ExperimentConfig
from disparate.federated.model import set_parameters
from disparate.privacy.accounting import (
    EpsilonReport,
    bounded_epsilons,
)
from disparate.privacy.clipping import clip_factors
from disparate.privacy.noise import add_gaussian_noise
from disparate.privacy.plan import DPPlan
from disparate.randomness import SeedTree, stream_seed

__all__ = [
    "DPFedAvgSettings",
    "LocalUpdate",
    "ParticipantStats",
    "StreamingAggregator",
    "calibrate_participant_noise",
    "initial_parameters",
    "local_update",
    "participant_epsilon",
    "participant_plan",
    "participant_epsilons",
    "privacy_statement",
    "sample_participants",
    "server_step",
    "update_norm",
]


#: Above this epsilon the privacy statement says that there is no meaningful guarantee.
MEANINGLESS_EPSILON = 100.0

ERR_WITHOUT_REPLACEMENT = (
    "privacy.shuffle_accounting='without_replacement' is not supported for federated runs: "
    "dp_accounting's sampling-without-replacement event is for the replace-one relation, "
    "under which one participant can move the sum of clipped updates by 2S, not S; use "
    "privacy.sampling='poisson' (exact accounting) or shuffle_accounting='poisson' (an "
    "approximation, flagged as such)"
)
ERR_TOO_MANY = (
    "federated.participants_per_round={c}: expected <= the number of participants N={n}"
)


# --------------------------------------------------------------------------------- settings


@dataclass(frozen=True, kw_only=True)
class DPFedAvgSettings:
    """Everything a round needs, resolved from an :class:`ExperimentConfig` and N.

    ``noise_std`` is the std sigma of the noise added to the AVERAGED update
    (``z * S / C`` in mode ``dp``; ``privacy.noise_std / C`` in mode ``noise-only``, where
    ``privacy.noise_std`` is, as for DP-SGD, the std on the sum).
    """

    num_participants: int
    participants_per_round: int
    sampling: str  # "poisson" or "uniform"
    rounds: int
    server_lr: float
    clip_norm: float | None
    clip_mode: str
    noise_multiplier: float | None
    noise_std: float
    local_lr: float
    local_batch_size: int
    local_epochs: int
    local_optimizer: str
    local_momentum: float
    local_grad_clip: float | None
    seq_len: int
    seed: int

    @classmethod
    def from_config(cls, config: ExperimentConfig, num_participants: int, *,
                    seq_len: int = 64) -> DPFedAvgSettings:
        fed = config.federated
        if fed is None:
            raise ValueError("config has no 'federated' section: not a federated experiment")
        p, t = config.privacy, config.training
        c = fed.participants_per_round
        if c > num_participants:
            raise ValueError(ERR_TOO_MANY.format(c=c, n=num_participants))
        if p.sampling == "shuffle" and p.shuffle_accounting == "without_replacement":
            raise ValueError(ERR_WITHOUT_REPLACEMENT)
        if p.target_epsilon is not None:
            raise ValueError("privacy.target_epsilon: resolve it with "
                             "calibrate_participant_noise() first")
        mode = p.mode
        z = p.noise_multiplier if mode == "dp" else None
        if mode == "dp":
            std = z * p.max_grad_norm / c
        elif mode == "noise-only":
            std = p.noise_std / c
        else:
            std = 0.0
        return cls(
            num_participants=num_participants, participants_per_round=c,
            sampling="poisson" if p.sampling == "poisson" else "uniform",
            rounds=fed.rounds, server_lr=fed.server_lr,
            clip_norm=p.max_grad_norm if p.clipping else None, clip_mode=fed.clip_mode,
            noise_multiplier=z, noise_std=std,
            local_lr=t.lr, local_batch_size=t.batch_size, local_epochs=t.epochs,
            local_optimizer=t.optimizer, local_momentum=t.momentum,
            local_grad_clip=fed.local_grad_clip, seq_len=seq_len, seed=t.seed,
        )

    @property
    def sampling_rate(self) -> float:
        return self.participants_per_round / self.num_participants

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DPFedAvgSettings:
        return cls(**json.loads(text))


def sample_participants(settings: DPFedAvgSettings, round_index: int,
                        seeds: SeedTree | None = None) -> list[int]:
    """The participants of a round (sorted), from the ``fl_participants`` stream of the round
    (``seeds``: the run's seed tree; ``None``: rooted in ``settings.seed``, reproducible)."""
    g = (seeds or SeedTree(settings.seed)).generator("fl_participants", round_index)
    n = settings.num_participants
    if settings.sampling == "poisson":
        chosen = torch.nonzero(torch.rand(n, generator=g) < settings.sampling_rate).flatten()
    else:
        chosen = torch.randperm(n, generator=g)[: settings.participants_per_round]
    return sorted(int(i) for i in chosen)


# --------------------------------------------------------------------------------- local


@dataclass(frozen=True)
class LocalUpdate:
    """A participant's update ``L_i - G`` (distinct parameters, by name) and how it went."""

    delta: dict[str, Tensor]
    loss: float | None
    steps: int
    tokens: int
    projections: int  # local_projection steps that actually projected


def update_norm(delta: Mapping[str, Tensor]) -> float:
    """L2 norm of an update over all its tensors (computed in float64)."""
    total = 0.0
    for t in delta.values():
        total += float(t.double().pow(2).sum())
    return math.sqrt(total)


def _batchify(tokens: Tensor, batch_size: int) -> Tensor:
    """(T, B) columns of a token stream (the PyTorch example's batchify); B shrinks for tiny
    streams so that there are at least two rows."""
    b = max(1, min(batch_size, (len(tokens) - 1) // 2)) if len(tokens) > 2 else 1
    rows = len(tokens) // b
    return tokens[: rows * b].view(b, rows).t().contiguous()


def _optimizer(settings: DPFedAvgSettings, params: list[Tensor]) -> torch.optim.Optimizer:
    if settings.local_optimizer == "adam":
        return torch.optim.Adam(params, lr=settings.local_lr)
    return torch.optim.SGD(params, lr=settings.local_lr, momentum=settings.local_momentum)


@torch.no_grad()
def _project(named: Sequence[tuple[str, Tensor]], global_params: Mapping[str, Tensor],
             bound: float) -> bool:
    """Project the parameters onto the ball of radius ``bound`` around ``global_params``."""
    sq = 0.0
    for name, p in named:
        sq += float((p - global_params[name]).double().pow(2).sum())
    dist = math.sqrt(sq)
    if dist <= bound:
        return False
    scale = bound / dist
    for name, p in named:
        g = global_params[name]
        p.copy_(g + (p - g) * scale)
    return True


def local_update(model: nn.Module, global_params: Mapping[str, Tensor], tokens: Tensor,
                 settings: DPFedAvgSettings, *, round_index: int, participant: int
                 ) -> LocalUpdate:
    """Train ``model`` from ``global_params`` on one participant's tokens; return L - G.

    Plain local SGD (the PyTorch word-language-model loop): the stream is cut into
    ``local_batch_size`` columns, read in windows of ``seq_len`` with the hidden state carried
    (detached) between windows, for ``local_epochs`` epochs. Dropout is drawn from a generator
    from the ``fl_local`` stream of (round, participant). ``model`` is overwritten.
    """
    device = next(model.parameters()).device
    global_params = {n: t.to(device) for n, t in global_params.items()}
    set_parameters(model, global_params)
    model.train()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer = _optimizer(settings, [p for _, p in named])
    loss_fn = nn.CrossEntropyLoss()
    loss_sum, steps, projections, n_tokens = 0.0, 0, 0, 0
    bound = settings.clip_norm if settings.clip_mode == "local_projection" else None
    if len(tokens) >= 2:
        source = _batchify(tokens.to(device), settings.local_batch_size)
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(stream_seed(settings.seed, "fl_local", round_index, participant))
            for _epoch in range(settings.local_epochs):
                hidden = model.init_hidden(source.size(1))
                for i in range(0, source.size(0) - 1, settings.seq_len):
                    length = min(settings.seq_len, source.size(0) - 1 - i)
                    data = source[i:i + length]
                    target = source[i + 1:i + 1 + length].reshape(-1)
                    hidden = tuple(h.detach() for h in hidden)
                    output, hidden = model(data, hidden)
                    loss = loss_fn(output.reshape(-1, output.size(-1)), target)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if settings.local_grad_clip is not None:
                        nn.utils.clip_grad_norm_([p for _, p in named],
                                                 settings.local_grad_clip)
                    optimizer.step()
                    if bound is not None:
                        projections += int(_project(named, global_params, bound))
                    loss_sum += float(loss.detach()) * target.numel()
                    n_tokens += target.numel()
                    steps += 1
    with torch.no_grad():
        delta = {n: (p.detach() - global_params[n]).clone() for n, p in named}
    return LocalUpdate(delta=delta, loss=loss_sum / n_tokens if n_tokens else None,
                       steps=steps, tokens=n_tokens, projections=projections)


# --------------------------------------------------------------------------------- server


@dataclass(frozen=True)
class ParticipantStats:
    """What the server records of one participant's update (scalars only)."""

    participant: int
    norm: float  # before the server's clipping
    clip_factor: float  # min(1, S / norm), 1 without clipping; 0 for a non-finite update
    clipped: bool  # the update was scaled down (by the server or by local projection)
    loss: float | None
    steps: int
    tokens: int


class StreamingAggregator:
    """Running float64 sum of clipped updates: memory O(model), whatever the number of updates.

    ``add`` clips one update (to ``clip_norm`` when set) and adds it; ``average`` divides by the
    fixed ``denominator`` C.
    """

    def __init__(self, template: Mapping[str, Tensor], *, denominator: int,
                 clip_norm: float | None) -> None:
        if denominator < 1:
            raise ValueError(f"denominator={denominator!r}: expected >= 1")
        self.names = list(template)
        self.sum = {n: torch.zeros_like(t, dtype=torch.float64) for n, t in template.items()}
        self.denominator = denominator
        self.clip_norm = clip_norm
        self.stats: list[ParticipantStats] = []

    def add(self, participant: int, update: LocalUpdate | Mapping[str, Tensor], *,
            loss: float | None = None, steps: int = 0, tokens: int = 0, projections: int = 0
            ) -> ParticipantStats:
        if isinstance(update, LocalUpdate):
            delta = update.delta
            loss, steps, tokens, projections = (update.loss, update.steps, update.tokens,
                                                update.projections)
        else:
            delta = update
        if set(delta) != set(self.names):
            raise KeyError(f"update of participant {participant} has parameters "
                           f"{sorted(delta)}; expected {sorted(self.names)}")
        norm = update_norm(delta)
        # 0 for a non-finite update (dropped: NaN * 0 would still be NaN), with or without S
        factor = float(clip_factors(torch.tensor([norm], dtype=torch.float64),
                                    self.clip_norm)[0])
        for name in self.names if factor else ():
            self.sum[name].add_(delta[name].to(self.sum[name].device, torch.float64),
                                alpha=factor)
        stat = ParticipantStats(participant=participant, norm=norm, clip_factor=factor,
                                clipped=factor < 1.0 or projections > 0, loss=loss,
                                steps=steps, tokens=tokens)
        self.stats.append(stat)
        return stat

    def average(self) -> dict[str, Tensor]:
        """The sum divided by the fixed denominator, as float32."""
        return {n: (s / self.denominator).to(torch.float32) for n, s in self.sum.items()}


@torch.no_grad()
def server_step(global_params: Mapping[str, Tensor], average: Mapping[str, Tensor],
                settings: DPFedAvgSettings, round_index: int, seeds: SeedTree | None = None
                ) -> dict[str, Tensor]:
    """``G + eta * (average + N(0, sigma^2 I))`` with the noise of the round's ``fl_noise``
    stream (``seeds`` as in :func:`sample_participants`).

    Noise is drawn parameter by parameter in the order of ``global_params`` (the model's
    ``named_parameters`` order) from one generator on the parameters' device.
    """
    out: dict[str, Tensor] = {}
    generator = None
    if settings.noise_std > 0:
        device = next(iter(global_params.values())).device
        generator = (seeds or SeedTree(settings.seed)).generator("fl_noise", round_index,
                                                                 device=device)
    for name, g in global_params.items():
        step = average[name].to(g.device, g.dtype)
        if generator is not None:
            step = add_gaussian_noise(step, settings.noise_std, generator)
        out[name] = g + settings.server_lr * step
    return out


def initial_parameters(model: nn.Module) -> dict[str, Tensor]:
    """The model's distinct parameters as the global model G_0."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


# --------------------------------------------------------------------------------- accounting


def _participant_report(report: EpsilonReport, settings: DPFedAvgSettings,
                        sampling_text: str, approximate: bool, note: str) -> EpsilonReport:
    mapping = (f"z = sigma * C / S = {settings.noise_std:g} * {settings.participants_per_round}"
               f" / {settings.clip_norm:g} = {settings.noise_multiplier:g}: the noise std on "
               f"the average divided by its sensitivity S / C (fixed denominator C)")
    return dataclasses.replace(
        report,
        sampling=sampling_text,
        neighboring_relation="add or remove one participant (all of their data)",
        approximate=approximate,
        note=(note + " " if note else "") + mapping,
    )


def participant_epsilons(settings: DPFedAvgSettings, *, delta: float, rounds: int | None = None,
                         methods: Sequence[str] | None = None
                         ) -> tuple[dict[str, EpsilonReport], dict[str, str]]:
    """Participant-level epsilon of ``rounds`` rounds by several accountants.

    The same subsampled-Gaussian accounting as DP-SGD with N participants, "batch" C,
    noise multiplier z and one step per round. Returns (reports, skipped) where ``skipped``
    says why a method was not computed (the PLD beyond the accountant's memory bound,
    :data:`~disparate.privacy.accounting.MAX_PLD_POINTS`).
    """
    z = settings.noise_multiplier
    if z is None or settings.clip_norm is None:
        raise ValueError("participant_epsilons: the run is not in privacy mode 'dp'")
    rounds = settings.rounds if rounds is None else rounds
    requested = list(methods) if methods is not None else ["rdp", "rdp_classic", "pld"]
    reports, skipped = bounded_epsilons(
        dataset_size=settings.num_participants, batch_size=settings.participants_per_round,
        noise_multiplier=z, steps=rounds, delta=delta, sampling="poisson", methods=requested)
    q = settings.sampling_rate
    if settings.sampling == "poisson":
        text = (f"Poisson sampling of participants, each in each round with probability "
                f"q=C/N={q:.6g} (expected C={settings.participants_per_round} of "
                f"N={settings.num_participants})")
        approximate, note = False, ""
    else:
        text = (f"exactly C={settings.participants_per_round} of N="
                f"{settings.num_participants} participants per round, uniformly without "
                f"replacement, accounted as Poisson sampling with q=C/N={q:.6g}")
        approximate = True
        note = ("APPROXIMATION: rounds draw a fixed-size uniform sample of participants but "
                "the epsilon is accounted as if participants were Poisson sampled; "
                "amplification by subsampling is only proven here for Poisson sampling.")
    return ({m: _participant_report(r, settings, text, approximate, note)
             for m, r in reports.items()}, skipped)


def participant_plan(settings: DPFedAvgSettings, *, delta: float, accountant: str = "rdp"
                     ) -> DPPlan:
    """The participant-level mechanism as a :class:`~disparate.privacy.plan.DPPlan`: N
    participants, "batch" C, z on the averaged update, one step per round; a round of exactly
    C participants ("shuffle") is accounted as Poisson sampling and marked approximate."""
    z = settings.noise_multiplier
    if z is None or settings.clip_norm is None:
        raise ValueError("participant_plan: the run is not in privacy mode 'dp'")
    shuffle = settings.sampling != "poisson"
    return DPPlan(setting="dp", dataset_size=settings.num_participants,
                  batch_size=settings.participants_per_round,
                  sampling="shuffle" if shuffle else "poisson",
                  shuffle_accounting="poisson" if shuffle else None, delta=delta,
                  accountant=accountant, max_grad_norm=settings.clip_norm, noise_multiplier=z)


def participant_epsilon(settings: DPFedAvgSettings, *, delta: float, rounds: int,
                        method: str = "rdp") -> tuple[float, bool]:
    """(epsilon after ``rounds`` rounds by one method, whether it is approximate -- rounds of
    exactly C participants); PLD falls back to RDP beyond its bound."""
    if rounds < 1:
        raise ValueError("participant_epsilon: the run is not in privacy mode 'dp'")
    epsilon, approximate = participant_plan(settings, delta=delta,
                                            accountant=method).epsilon(rounds)
    return float(epsilon), bool(approximate)


def privacy_statement(settings: DPFedAvgSettings, report: EpsilonReport | None, *,
                      mode: str, delta: float | None) -> str:
    """One honest sentence about the participant-level privacy of the run."""
    if report is None:
        what = {"clip-only": "updates clipped, no noise", "noise-only": "noise without "
                "clipping (no sensitivity bound)", "non-private": "plain FedAvg"}.get(mode, mode)
        return f"not differentially private: {what}"
    eps = report.epsilon
    eps_text = f"{eps:.4g}" if math.isfinite(eps) else "inf"
    approx = "approximately " if report.approximate else ""
    text = (f"{approx}({eps_text}, {delta:g})-DP at the participant level for "
            f"{report.steps} rounds of DP-FedAvg (S={settings.clip_norm:g}, "
            f"z={settings.noise_multiplier:g}, noise std on the average "
            f"sigma={settings.noise_std:g}) with {report.sampling}; accountant: "
            f"{report.accountant}; conversion: {report.conversion}")
    if not math.isfinite(eps) or eps > MEANINGLESS_EPSILON:
        text += (f". WARNING: epsilon = {eps_text} is far beyond any meaningful privacy "
                 "guarantee (e^epsilon bounds the likelihood ratio); the paper notes that its "
                 "federated settings give a large epsilon. These runs measure the effect of "
                 "clipping and noise on accuracy, not a useful privacy level")
    return text


def calibrate_participant_noise(config: ExperimentConfig, num_participants: int
                                ) -> tuple[float, dict[str, Any]]:
    """The z reaching ``privacy.target_epsilon`` after ``federated.rounds`` rounds."""
    from disparate.privacy.accounting import calibrate_noise_multiplier

    p, fed = config.privacy, config.federated
    if fed is None or p.target_epsilon is None:
        raise ValueError("calibrate_participant_noise: needs privacy.target_epsilon and a "
                         "federated section")
    method = p.accountant
    z = calibrate_noise_multiplier(target_epsilon=p.target_epsilon,
                                   dataset_size=num_participants,
                                   batch_size=fed.participants_per_round, steps=fed.rounds,
                                   delta=p.delta, method=method, sampling="poisson")
    return z, {"target_epsilon": p.target_epsilon, "method": method, "steps": fed.rounds,
               "noise_multiplier": z, "level": "participant"}
