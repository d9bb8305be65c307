"""One-run privacy auditing (Steinke, Nasr, Jagielski, NeurIPS 2023): a lower bound on epsilon.

Setting: ``m`` canaries, each included in the training set independently with probability
1/2; after one training run a guesser scores every canary, abstains on most and guesses
"in" or "out" on ``r`` of them; ``v`` of the guesses are correct. If the training algorithm
is (epsilon, delta)-DP, the paper's Theorem 3.1 (delta = 0) and its delta extension
(Theorem 3.3 / Proposition 5.1 with the algorithm of its Appendix) bound the chance of ``v``
or more correct guesses::

    p(eps, delta) = P[Binomial(r, q) >= v]
                    + 2 m delta max_{1<=i<=v} P[v > Binomial(r, q) >= v-i] / i
    q = e^eps / (1 + e^eps)

An observed ``v`` with ``p(eps, delta) <= beta`` rejects "(eps, delta)-DP" at confidence
``1 - beta``; the lower bound is the largest such eps (``p`` increases with eps). Written
from the paper's statement; numbers are checked in ``tests/audit/test_one_run.py``.

The guesser here (:func:`audit_scores`) fixes its guess counts in advance: for each ``r`` of
a small grid it guesses "in" for the ``ceil(r/2)`` highest scores and "out" for the
``floor(r/2)`` lowest, and the grid is paid for by a Bonferroni correction (each count is
tested at ``beta / len(grid)``), so taking the best count keeps the 95% statement valid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = [
    "DEFAULT_GUESS_FRACTIONS",
    "OneRunBound",
    "audit_scores",
    "check_guess_fractions",
    "epsilon_lower_bound",
    "p_value",
]

DEFAULT_GUESS_FRACTIONS: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0)
ERR_COUNTS = "m={m}, r={r}, v={v}: expected integers 0 <= v <= r <= m"
ERR_EPS = "eps={value!r}: expected a finite number >= 0"
ERR_DELTA = "delta={value!r}: expected 0 <= delta < 1"
ERR_BETA = "beta={value!r}: expected 0 < beta < 1"
ERR_FRACTIONS = "guess_fractions={value!r}: expected a non-empty sequence of numbers in (0, 1]"
ERR_SHAPES = "scores has {n} entries but included has {k}: expected one membership bit per score"
_EPS_MAX = 50.0  # far above any epsilon a guesser on <= 10^6 canaries can certify


def _check_counts(m: int, r: int, v: int) -> None:
    ints = all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in (m, r, v))
    if not ints or not 0 <= v <= r <= m:
        raise ValueError(ERR_COUNTS.format(m=m, r=r, v=v))


def p_value(m: int, r: int, v: int, eps: float, delta: float = 0.0) -> float:
    """P[>= ``v`` of ``r`` guesses on ``m`` canaries are correct] under (eps, delta)-DP."""
    _check_counts(m, r, v)
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
        raise ValueError(ERR_EPS.format(value=eps))
    if not (isinstance(delta, (int, float)) and 0 <= delta < 1):
        raise ValueError(ERR_DELTA.format(value=delta))
    q = 1.0 / (1.0 + math.exp(-eps))
    tail = float(stats.binom.sf(v - 1, r, q))  # P[Binomial(r, q) >= v]
    if delta == 0 or v == 0:
        return min(tail, 1.0)
    # P[v > Binomial(r, q) >= v - i] for i = 1..v, divided by i; the max over i.
    pmf = stats.binom.pmf(np.arange(v - 1, -1, -1), r, q)  # pmf(v-1), pmf(v-2), ..., pmf(0)
    alpha = float(np.max(np.cumsum(pmf) / np.arange(1, v + 1)))
    return min(tail + 2 * m * delta * alpha, 1.0)


def epsilon_lower_bound(m: int, r: int, v: int, *, delta: float = 0.0, beta: float = 0.05,
                        tolerance: float = 1e-6) -> float:
    """The largest eps with ``p_value(m, r, v, eps, delta) <= beta`` (0 if none), by bisection.

    E.g. ``epsilon_lower_bound(1000, 100, 100)`` = log(q/(1-q)) with ``q = 0.05 ** (1/100)``:
    100 of 100 correct guesses certify epsilon > 3.49 at 95% confidence.
    """
    _check_counts(m, r, v)
    if not (isinstance(beta, (int, float)) and 0 < beta < 1):
        raise ValueError(ERR_BETA.format(value=beta))
    if p_value(m, r, v, 0.0, delta) > beta:
        return 0.0
    lo, hi = 0.0, 1.0
    while p_value(m, r, v, hi, delta) <= beta:
        lo, hi = hi, 2 * hi
        if hi > _EPS_MAX:
            return math.inf
    while hi - lo > tolerance:
        mid = (lo + hi) / 2
        if p_value(m, r, v, mid, delta) <= beta:
            lo = mid
        else:
            hi = mid
    return lo


def check_guess_fractions(guess_fractions: Sequence[float]) -> tuple[float, ...]:
    """``guess_fractions`` as a tuple; ``ValueError`` unless all are in (0, 1]."""
    fractions = tuple(guess_fractions)
    if not fractions or not all(isinstance(f, (int, float)) and not isinstance(f, bool)
                                and 0 < f <= 1 for f in fractions):
        raise ValueError(ERR_FRACTIONS.format(value=guess_fractions))
    return fractions


@dataclass(frozen=True)
class OneRunBound:
    """The audit of one set of canaries: the bound and the guess that gave it."""

    epsilon: float  # the lower bound (0: nothing certified)
    canaries: int  # m
    included: int  # canaries that were in the training set
    guesses: int  # r of the best guess count
    correct: int  # v of the best guess count
    delta: float
    confidence: float  # 1 - beta
    grid: tuple[int, ...]  # the guess counts tried (Bonferroni over them)

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready fields."""
        return {"epsilon_lower_bound": self.epsilon, "canaries": self.canaries,
                "included": self.included, "guesses": self.guesses, "correct": self.correct,
                "delta": self.delta, "confidence": self.confidence, "guess_grid": list(self.grid)}


def audit_scores(scores: Sequence[float] | np.ndarray, included: Sequence[bool] | np.ndarray,
                 *, delta: float, beta: float = 0.05,
                 guess_fractions: Sequence[float] = DEFAULT_GUESS_FRACTIONS) -> OneRunBound:
    """Guess membership from ``scores`` (higher: "in") and bound epsilon at ``1 - beta``.

    For each fraction f, ``r = max(1, round(f * m))`` guesses: "in" on the ``ceil(r/2)``
    highest scores, "out" on the ``floor(r/2)`` lowest. Ties are broken by canary order.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    inc = np.asarray(included, dtype=bool).reshape(-1)
    if s.shape != inc.shape:
        raise ValueError(ERR_SHAPES.format(n=s.size, k=inc.size))
    fractions = check_guess_fractions(guess_fractions)
    m = int(s.size)
    order = np.argsort(-s, kind="stable")  # most "in"-like first
    grid = tuple(sorted({max(1, round(f * m)) for f in fractions})) if m else ()
    level = beta / max(len(grid), 1)
    tried = []
    for r in grid:
        k_in = (r + 1) // 2
        k_out = r - k_in
        v = int(inc[order[:k_in]].sum()) + int((~inc[order[m - k_out:]]).sum())
        tried.append((epsilon_lower_bound(m, r, v, delta=delta, beta=level), r, v))
    best = max(tried, key=lambda t: t[0]) if tried else (0.0, 0, 0)  # first of the best
    return OneRunBound(epsilon=best[0], canaries=m, included=int(inc.sum()), guesses=best[1],
                       correct=best[2], delta=float(delta), confidence=1 - beta, grid=grid)
