"""The ``federated`` section of an experiment config (DP-FedAvg, paper Section 3.3).

An experiment with a ``federated`` section is a federated run: the other sections keep their
meaning, read at the level of participants instead of examples::

    section      federated meaning
    data         the participants and their data (``data.dataset: reddit``, options below)
    model        the model every participant trains (``model.name: word-lstm``)
    training     LOCAL training of one participant: optimizer (plain SGD in the paper), lr,
                 batch_size, epochs (= local epochs per round), seed (init, sampling, noise)
    privacy      DP-FedAvg on whole participant updates: clipping bound S of one update,
                 noise_multiplier z of the AVERAGED update, delta, accountant, and
                 ``sampling``: how participants are drawn each round (below)
    federated    this section: rounds, participants per round, server learning rate, ...

Privacy at the participant level (McMahan et al. 2018, fixed-denominator estimator): each
round the server averages the clipped updates with the FIXED denominator C =
``participants_per_round`` and adds N(0, sigma^2 I) with ``sigma = z * S / C``; adding or
removing one participant moves that average by at most S / C, so z is exactly the noise
multiplier of a subsampled Gaussian mechanism with sampling rate q = C / N, composed over
``rounds``. The paper's ``sigma = 0.001`` with S = 10 and C = 100 is z = 0.01.

``privacy.sampling`` in a federated run:

- ``"poisson"``: every participant joins each round independently with probability C / N
  (the expected count is C; the denominator stays C). What the accountant assumes.
- ``"shuffle"``: exactly C participants drawn uniformly without replacement, independently
  in every round (the paper's released code). Only ``privacy.shuffle_accounting: poisson``
  is accepted for private runs and the epsilon is flagged as an approximation.

Its values are checked by :mod:`disparate.validation`, as those of every other section.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from disparate.validation import (
    MSG_RANGE,
    ConfigError,
    check_choice,
    check_float,
    check_int,
    check_range,
    frozen_map,
    type_error,
)

__all__ = ["CLIP_MODES", "DEFAULT_VOCAB_BUCKETS", "FederatedConfig"]

#: ``update``: clip the whole update L_i - G once after local training (paper Section 3.3).
#: ``local_projection``: project the local model onto the S-ball around G after every local
#: SGD step (what the paper's released code did); the final update has norm <= S as well.
CLIP_MODES: tuple[str, ...] = ("update", "local_projection")

#: Lower edges of the participant vocabulary-size buckets (Figure 3b); the last is open.
DEFAULT_VOCAB_BUCKETS: tuple[int, ...] = (0, 100, 250, 500, 1000, 2000)

_VARIANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _check_variant(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise type_error(key, value, "a list of KEY=VALUE override strings")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(MSG_RANGE.format(
                key=f"{key}[{i}]", value=item,
                expected="a KEY=VALUE override string, e.g. privacy.max_grad_norm=8"))
        out.append(item)
    return tuple(out)


@dataclass(frozen=True, kw_only=True)
class FederatedConfig:
    """DP-FedAvg rounds: who takes part, how updates are combined, when to evaluate.

    Attributes:
        rounds: Number of rounds T (>= 1); the paper trains DP models for 2,000 (S = 10) and
            3,000 (S = 8) rounds and reports the non-private model after 1,000.
        participants_per_round: C (>= 1), the (expected) number of participants per round and
            the fixed denominator of the average. Must be <= the number of participants N.
        server_lr: eta, the server learning rate: G <- G + eta * (average + noise). The paper
            writes G + eta_g / N * sum with eta_g = 800 and N = 80,000, i.e. eta_g / N = 1 / C
            for C = 100: a plain average, ``server_lr = eta_g * C / N = 1.0``. The noise is
            added to the average before scaling, so eta does not change the privacy.
        clip_mode: One of :data:`CLIP_MODES`.
        local_grad_clip: Clip each local mini-batch gradient to this L2 norm before the SGD
            step (the PyTorch word-language-model example's 0.25, which the released code used
            in non-private runs); ``None``: no local gradient clipping. Not a privacy
            mechanism.
        eval_every: Evaluate the global model every this many rounds (>= 1); the last round is
            always evaluated on every participant.
        eval_participants: Interim evaluations use a fixed, seeded subset of this many
            participants (``None``: all); the final evaluation always uses all.
        checkpoint_every: Save a checkpoint every this many rounds (>= 1) and at the end.
        vocab_buckets: Increasing lower edges (>= 0) of the vocabulary-size buckets that
            participants are grouped by (Figure 3b); the last bucket is open-ended.
        variants: Runs compared by ``disparate federated compare``: name -> list of
            ``KEY=VALUE`` overrides applied to this config (e.g. the paper's non-private,
            S = 10 and S = 8 models). Empty: compare the config with its non-private version.
            Cleared in the configs of the runs themselves.
    """

    rounds: int
    participants_per_round: int
    server_lr: float = 1.0
    clip_mode: str = "update"
    local_grad_clip: float | None = None
    eval_every: int = 10
    eval_participants: int | None = None
    checkpoint_every: int = 50
    vocab_buckets: tuple[int, ...] = DEFAULT_VOCAB_BUCKETS
    variants: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_int("federated.rounds", self.rounds, minimum=1)
        check_int("federated.participants_per_round", self.participants_per_round,
                     minimum=1)
        lr = check_float("federated.server_lr", self.server_lr)
        check_range("federated.server_lr", lr, gt=0.0, expected="> 0")
        object.__setattr__(self, "server_lr", lr)
        check_choice("federated.clip_mode", self.clip_mode, CLIP_MODES)
        clip = check_float("federated.local_grad_clip", self.local_grad_clip, optional=True)
        check_range("federated.local_grad_clip", clip, gt=0.0, expected="> 0 or null")
        object.__setattr__(self, "local_grad_clip", clip)
        check_int("federated.eval_every", self.eval_every, minimum=1)
        check_int("federated.eval_participants", self.eval_participants, minimum=1,
                     optional=True)
        check_int("federated.checkpoint_every", self.checkpoint_every, minimum=1)
        buckets = self.vocab_buckets
        if isinstance(buckets, str) or not isinstance(buckets, list | tuple) or not buckets:
            raise type_error("federated.vocab_buckets", buckets,
                                "a non-empty list of increasing integers >= 0")
        for i, edge in enumerate(buckets):
            check_int(f"federated.vocab_buckets[{i}]", edge, minimum=0)
            if i and edge <= buckets[i - 1]:
                raise ConfigError(MSG_RANGE.format(
                    key="federated.vocab_buckets", value=list(buckets),
                    expected="strictly increasing lower edges"))
        object.__setattr__(self, "vocab_buckets", tuple(buckets))
        variants = frozen_map("federated.variants", self.variants, _check_variant)
        for name in variants:
            if not _VARIANT_NAME.match(name):
                raise ConfigError(MSG_RANGE.format(
                    key="federated.variants", value=name,
                    expected="names of letters, digits, '.', '_' or '-'"))
        object.__setattr__(self, "variants", variants)

    def bucket_names(self) -> list[str]:
        """Names of the vocabulary buckets: ``"0-99"``, ..., ``"2000+"``."""
        edges = self.vocab_buckets
        names = [f"{lo}-{hi - 1}" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
        return names + [f"{edges[-1]}+"]

    def describe(self) -> str:
        """One line for logs and report headers."""
        clip = ("whole update clipped once" if self.clip_mode == "update"
                else "projected onto the S-ball after every local step")
        return (f"DP-FedAvg: {self.rounds} rounds, C={self.participants_per_round} per round, "
                f"server lr {self.server_lr:g}, {clip}")
