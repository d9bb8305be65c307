"""Privacy accounting for DP-SGD through Google's ``dp_accounting`` library.

Three ways to turn (dataset size N, batch size b, noise multiplier z, steps, delta)
into an epsilon, all on the same DP event (``steps`` compositions of a subsampled
Gaussian mechanism with sampling rate q = b/N):

``rdp``
    ``dp_accounting.rdp.RdpAccountant`` with the library's default orders and its
    current (tight) RDP -> (epsilon, delta) conversion.
``rdp_classic``
    The same RDP curve evaluated at the orders TF Privacy used in 2019 and converted
    with the classic formula ``eps = min_a rdp(a) + log(1/delta) / (a - 1)``
    (Mironov 2017, Prop. 3). This is what the paper reports (6.23 for MNIST,
    N=60000, b=256, z=0.8, 60 epochs, delta=1e-6); a valid but looser bound.
``pld``
    ``dp_accounting.pld.PLDAccountant`` (privacy loss distributions, pessimistic
    discretisation with interval ``PLD_VALUE_DISCRETIZATION``); the tightest bound.

A clipping policy with private auxiliary statistics (noisy counts, noisy quantile
indicators: :mod:`disparate.privacy.policies`) adds Gaussian mechanisms on the same sampled
batch: each step is then one ``PoissonSampledDpEvent`` over a ``ComposedDpEvent`` of the
gradient's Gaussian and the statistics' Gaussians (``aux_noise_multipliers``, each the std of
a statistic's noise over its L2 sensitivity), composed by dp_accounting.

Amplification by subsampling assumes Poisson sampling. The paper trains on shuffled
fixed-size batches and accounts as if batches were Poisson sampled; that number is
reported with ``approximate=True`` and a note saying why.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import dp_accounting
import numpy as np
from dp_accounting.pld import common as pld_common
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.pld import privacy_loss_distribution as pld_distribution
from dp_accounting.rdp import rdp_privacy_accountant

from disparate.privacy.choices import SAMPLINGS as SAMPLINGS  # re-exported: callers
from disparate.privacy.choices import SHUFFLE_ACCOUNTINGS as SHUFFLE_ACCOUNTINGS
from disparate.validation import ERR_CHOICE as ERR_CHOICE  # re-exported: tests and callers
from disparate.validation import ERR_INTEGER as ERR_INTEGER
from disparate.validation import check_integer, check_one_of

__all__ = [
    "METHODS",
    "SAMPLINGS",
    "SHUFFLE_ACCOUNTINGS",
    "TF_PRIVACY_2019_ORDERS",
    "PLD_VALUE_DISCRETIZATION",
    "MAX_NOISE_MULTIPLIER",
    "MAX_PLD_POINTS",
    "AccountantBoundError",
    "EpsilonReport",
    "effective_noise_multiplier",
    "bounded_epsilons",
    "pld_points",
    "steps_per_epoch",
    "total_steps",
    "supported_methods",
    "compute_epsilon",
    "compute_epsilons",
    "calibrate_noise_multiplier",
    "quiet_accountant",
]

METHODS: tuple[str, ...] = ("rdp", "rdp_classic", "pld")

#: RDP orders of TF Privacy's ``compute_dp_sgd_privacy`` (2019), used by the paper.
TF_PRIVACY_2019_ORDERS: tuple[float, ...] = tuple(
    [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
)

#: Width of the privacy-loss buckets of the PLD accountant (the library default).
#: Discretisation is pessimistic, so the PLD epsilon is an upper bound whose slack
#: shrinks with the interval: for the paper's MNIST setting 1e-2 gives 5.74, 1e-3
#: 5.153 (0.06 s) and 1e-4 5.148 (about 0.6 s for 14100 steps).
PLD_VALUE_DISCRETIZATION: float = 1e-4

#: Largest composed PLD (points of its loss grid) the accountant may build: about 130 bytes
#: and 2 us a point, so about 0.5 GB and 10 s. The paper's MNIST setting needs 3e5 points;
#: z = 0.1 over 14100 steps would need 6e7 (the 18.6 GB that exhausted memory).
MAX_PLD_POINTS: int = 4_000_000

#: Largest noise multiplier tried by :func:`calibrate_noise_multiplier`.
MAX_NOISE_MULTIPLIER: float = 1e4

# Error texts (tests assert them). Fields are filled with ``str.format``.
ERR_BATCH_GT_DATASET = (
    "batch_size={batch_size!r}: expected <= dataset_size={dataset_size!r} "
    "(valid range: 1 <= batch_size <= dataset_size)"
)
ERR_NOISE_NEGATIVE = "noise_multiplier={value!r}: expected a finite number >= 0"
ERR_NOT_DP = (
    "noise_multiplier=0: no noise means no differential privacy (epsilon is infinite); "
    "expected noise_multiplier > 0"
)
ERR_DELTA = "delta={value!r}: expected 0 < delta < 1"
ERR_PLD_WITHOUT_REPLACEMENT = (
    "method='pld' does not support sampling='shuffle' with "
    "shuffle_accounting='without_replacement': dp_accounting's PLDAccountant has no "
    "SampledWithoutReplacementDpEvent. Valid choices: method='rdp' or 'rdp_classic' "
    "with shuffle_accounting='without_replacement', or method='pld' with "
    "shuffle_accounting='poisson'"
)
ERR_AUX_NOISE = "aux_noise_multipliers={value!r}: expected finite numbers > 0"
ERR_AUX_WITHOUT_REPLACEMENT = (
    "aux_noise_multipliers={value!r} with shuffle_accounting='without_replacement': the "
    "auxiliary statistics are accounted only under the add/remove-one relation; valid "
    "choices: sampling='poisson', or shuffle_accounting='poisson'"
)
ERR_AUX_UNREACHABLE = (
    "target_epsilon={target!r} cannot be reached with method={method!r}: the auxiliary "
    "statistics alone (noise multipliers {aux}) spend epsilon={epsilon:.4g} even with "
    "noise_multiplier={max_z:g} on the gradient; give the statistics more noise or use a "
    "larger target_epsilon"
)
ERR_TARGET_EPSILON = "target_epsilon={value!r}: expected a finite number > 0"
ERR_TOLERANCE = "tolerance={value!r}: expected a finite number > 0"
ERR_DISCRETIZATION = "pld_discretization={value!r}: expected a finite number > 0"
ERR_PLD_TOO_LARGE = (
    "method='pld' with noise_multiplier={z:g} over {steps} steps needs about {points:.3g} "
    "points (> MAX_PLD_POINTS={limit:g}, about {gb:.3g} GB): use method='rdp' or "
    "'rdp_classic', or a coarser pld_discretization (now {discretization:g})"
)
ERR_UNREACHABLE = (
    "target_epsilon={target!r} cannot be reached with method={method!r}: even "
    "noise_multiplier={max_z:g} gives epsilon={epsilon:.4g}. RDP conversions have a "
    "floor set by the largest order; use a larger target_epsilon (or method='pld')"
)

_NEIGHBOURING_DESCRIPTIONS = {
    dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE: "add or remove one example",
    dp_accounting.NeighboringRelation.REPLACE_ONE: "replace one example",
}


@dataclass(frozen=True, kw_only=True)
class EpsilonReport:
    """An epsilon together with everything needed to say how it was computed.

    ``approximate`` is True when the accounting does not match the sampling actually
    used in training (so ``epsilon`` is not a proven bound for it); ``note`` says why.
    """

    epsilon: float
    delta: float
    method: str
    accountant: str
    conversion: str
    sampling: str
    neighboring_relation: str
    steps: int
    dataset_size: int
    batch_size: int
    noise_multiplier: float
    sampling_probability: float
    approximate: bool
    note: str
    optimal_order: float | None = None
    #: Noise multipliers of the auxiliary statistics composed with the gradient's Gaussian
    #: in every step (empty for DP-SGD's flat clipping).
    aux_noise_multipliers: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of all fields (JSON-serialisable except a possible ``inf``); without
        auxiliary statistics, ``aux_noise_multipliers`` is left out (the format of DP-SGD)."""
        out = asdict(self)
        if not self.aux_noise_multipliers:
            del out["aux_noise_multipliers"]
        else:
            out["aux_noise_multipliers"] = list(self.aux_noise_multipliers)
        return out


# --------------------------------------------------------------------------- validation


def _check_sizes(dataset_size: Any, batch_size: Any) -> tuple[int, int]:
    dataset_size = check_integer("dataset_size", dataset_size, 1)
    batch_size = check_integer("batch_size", batch_size, 1)
    if batch_size > dataset_size:
        raise ValueError(
            ERR_BATCH_GT_DATASET.format(batch_size=batch_size, dataset_size=dataset_size)
        )
    return dataset_size, batch_size


def _check_noise(noise_multiplier: Any) -> float:
    try:
        z = float(noise_multiplier)
    except (TypeError, ValueError):
        raise ValueError(ERR_NOISE_NEGATIVE.format(value=noise_multiplier)) from None
    if not math.isfinite(z) or z < 0:
        raise ValueError(ERR_NOISE_NEGATIVE.format(value=noise_multiplier))
    if z == 0:
        raise ValueError(ERR_NOT_DP)
    return z


def _check_aux(aux: Any) -> tuple[float, ...]:
    try:
        values = tuple(float(a) for a in aux)
    except (TypeError, ValueError):
        raise ValueError(ERR_AUX_NOISE.format(value=aux)) from None
    if not all(math.isfinite(a) and a > 0 for a in values):
        raise ValueError(ERR_AUX_NOISE.format(value=aux))
    return values


def _step_mechanism(noise_multiplier: float, aux: tuple[float, ...]) -> dp_accounting.DpEvent:
    """The Gaussian of the gradient, composed with those of the auxiliary statistics."""
    gaussian = dp_accounting.GaussianDpEvent(noise_multiplier)
    if not aux:
        return gaussian
    return dp_accounting.ComposedDpEvent(
        [gaussian, *(dp_accounting.GaussianDpEvent(a) for a in aux)])


def effective_noise_multiplier(noise_multiplier: float,
                               aux_noise_multipliers: Sequence[float] = ()) -> float:
    """The noise multiplier of the one Gaussian equivalent to the composed step mechanism.

    Computed by dp_accounting (Gaussian queries on the same data are one query with pre- and
    post-processing: Mirshani et al. 2019, section 3), which is how its RDP accountant composes
    a ``PoissonSampledDpEvent`` over a ``ComposedDpEvent``.
    """
    event = _step_mechanism(_check_noise(noise_multiplier), _check_aux(aux_noise_multipliers))
    return float(rdp_privacy_accountant._effective_gaussian_noise_multiplier(event))


def _check_delta(delta: Any) -> float:
    try:
        d = float(delta)
    except (TypeError, ValueError):
        raise ValueError(ERR_DELTA.format(value=delta)) from None
    if not 0 < d < 1:  # also rejects NaN
        raise ValueError(ERR_DELTA.format(value=delta))
    return d


def _check_positive(template: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(template.format(value=value)) from None
    if not math.isfinite(v) or v <= 0:
        raise ValueError(template.format(value=value))
    return v


class AccountantBoundError(ValueError):
    """The PLD accountant would exceed :data:`MAX_PLD_POINTS` (memory and time bound)."""


#: ln of the mass dp_accounting truncates off a Gaussian (``log_mass_truncation_bound``).
_GAUSSIAN_LOG_TAIL = 50.0
#: Points of the coarse one-step PLD from which the composed size is estimated.
_ESTIMATE_POINTS = 20_000
#: Tail mass the PLD accountant truncates when it self-composes (dp_accounting default).
_COMPOSE_TAIL = 1e-15


@functools.lru_cache(maxsize=1024)
def pld_points(noise_multiplier: float, sampling_probability: float, steps: int,
               discretization: float = PLD_VALUE_DISCRETIZATION) -> float:
    """Estimated length of the loss grid of the PLD of ``steps`` subsampled Gaussians.

    Built from the analytic width of one Gaussian's truncated privacy loss,
    ``(1 + 2 t z) / z^2`` with ``t = sqrt(2 * 50)``: if even that width is beyond
    :data:`MAX_PLD_POINTS`, it is returned; else a coarse one-step PLD (20,000 points, about
    0.1 s) is built and the Chernoff truncation bounds dp_accounting itself uses for the
    composition give the composed width (within about 30% of the real size).
    """
    z, q = float(noise_multiplier), float(sampling_probability)
    width = (1 + 2 * math.sqrt(2 * _GAUSSIAN_LOG_TAIL) * z) / z**2
    one_step = width / discretization
    if one_step * steps <= MAX_PLD_POINTS or one_step > MAX_PLD_POINTS:
        return one_step * steps if one_step <= MAX_PLD_POINTS else one_step
    coarse = max(discretization, width / _ESTIMATE_POINTS)
    pld = pld_distribution.from_gaussian_mechanism(
        z, value_discretization_interval=coarse, sampling_prob=q)
    spans = []
    for pmf in (pld._pmf_remove, pld._pmf_add):  # private: dp_accounting has no accessor
        probs = pmf.to_dense_pmf()._probs
        lower, upper = pld_common.compute_self_convolve_bounds(probs, steps, _COMPOSE_TAIL)
        spans.append((upper - lower + 1) * coarse / discretization)
    return max(spans)


def _check_pld_size(z: float, q: float, steps: int, discretization: float) -> None:
    points = pld_points(z, q, steps, discretization)
    if points > MAX_PLD_POINTS:
        raise AccountantBoundError(ERR_PLD_TOO_LARGE.format(
            z=z, steps=steps, points=points, limit=MAX_PLD_POINTS, gb=points * 130 / 1e9,
            discretization=discretization))


# --------------------------------------------------------------------------- steps


def steps_per_epoch(dataset_size: int, batch_size: int) -> int:
    """Number of batches in one pass over the data: ``ceil(N / b)``."""
    dataset_size, batch_size = _check_sizes(dataset_size, batch_size)
    return -(-dataset_size // batch_size)


def total_steps(dataset_size: int, batch_size: int, epochs: int) -> int:
    """Number of DP-SGD steps of ``epochs`` epochs: ``epochs * ceil(N / b)``."""
    per_epoch = steps_per_epoch(dataset_size, batch_size)
    return check_integer("epochs", epochs, 1) * per_epoch


# --------------------------------------------------------------------------- accounting


@dataclass(frozen=True)
class _Event:
    """The DP event to account for (``steps`` compositions of ``step``) and how it relates to
    the training sampler."""

    step: dp_accounting.DpEvent
    steps: int
    relation: dp_accounting.NeighboringRelation
    sampling: str
    approximate: bool
    note: str

    @property
    def event(self) -> dp_accounting.DpEvent:
        return dp_accounting.SelfComposedDpEvent(self.step, self.steps)


def _build_event(
    dataset_size: int,
    batch_size: int,
    noise_multiplier: float,
    steps: int,
    sampling: str,
    shuffle_accounting: str,
    aux: tuple[float, ...] = (),
) -> _Event:
    q = batch_size / dataset_size
    gaussian = _step_mechanism(noise_multiplier, aux)
    full_batch = batch_size == dataset_size
    if sampling == "poisson":
        step = dp_accounting.PoissonSampledDpEvent(q, gaussian)
        return _Event(
            step=step, steps=steps,
            relation=dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE,
            sampling=(
                f"Poisson sampling, each example in each step with probability "
                f"q=b/N={q:.6g} (expected batch size {batch_size})"
            ),
            approximate=False,
            note="",
        )
    if shuffle_accounting == "poisson":
        step = dp_accounting.PoissonSampledDpEvent(q, gaussian)
        note = (
            ""
            if full_batch
            else (
                "APPROXIMATION: training uses shuffled fixed-size batches but the "
                "epsilon is accounted as if batches were Poisson sampled with q=b/N "
                "(as in the paper); amplification by subsampling is only proven for "
                "Poisson sampling, and shuffling can leak more."
            )
        )
        return _Event(
            step=step, steps=steps,
            relation=dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE,
            sampling=(
                f"shuffled fixed-size batches of b={batch_size}, accounted as Poisson "
                f"sampling with q=b/N={q:.6g}"
            ),
            approximate=not full_batch,
            note=note,
        )
    if aux:
        raise ValueError(ERR_AUX_WITHOUT_REPLACEMENT.format(value=list(aux)))
    # Replacing one example moves the sum of clipped gradients by up to 2S, so the Gaussian
    # has noise multiplier sigma / (2S) = z / 2 with respect to that sensitivity.
    replace_one = dp_accounting.GaussianDpEvent(noise_multiplier / 2)
    step = dp_accounting.SampledWithoutReplacementDpEvent(dataset_size, batch_size, replace_one)
    note = (
        "Replace-one neighbouring relation (the only one dp_accounting supports for "
        "sampling without replacement), under which the sum of clipped gradients has "
        "sensitivity 2S (noise multiplier z/2): not comparable with add/remove-one epsilons."
    )
    if not full_batch:
        note = (
            "APPROXIMATION: training uses shuffled fixed-size batches (a partition per "
            "epoch) but the epsilon is accounted as independent uniform samples of b "
            "out of N without replacement in every step. " + note
        )
    return _Event(
        step=step, steps=steps,
        relation=dp_accounting.NeighboringRelation.REPLACE_ONE,
        sampling=(
            f"shuffled fixed-size batches of b={batch_size}, accounted as sampling "
            f"b out of N={dataset_size} without replacement in each step (q={q:.6g})"
        ),
        approximate=not full_batch,
        note=note,
    )


@contextlib.contextmanager
def quiet_accountant() -> Iterator[None]:
    """dp-accounting's absl warnings off for a while: one per RDP order whose series did not
    converge, which is then left out of the minimum over orders (the epsilon stays a valid
    bound; the order shows as ``inf`` in the curve)."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


#: One step's RDP by (repr of the step's DP event, relation, order): see :func:`_step_rdp`.
_STEP_RDP: dict[tuple[str, dp_accounting.NeighboringRelation, float], float] = {}
_STEP_RDP_LIMIT = 1 << 16
#: dp_accounting's default RDP orders (those of ``method="rdp"``).
_DEFAULT_ORDERS: np.ndarray = rdp_privacy_accountant.RdpAccountant().orders


def _step_rdp(step: dp_accounting.DpEvent, relation: dp_accounting.NeighboringRelation,
              order: float) -> float:
    """RDP at ``order`` of one step, by dp_accounting's RdpAccountant.

    dp_accounting computes each order on its own and composes ``steps`` steps as ``steps``
    times one step's RDP, so this cache (one entry per order, shared by the two order sets,
    the bisection of :func:`calibrate_noise_multiplier` and every later report of the same
    step) gives its numbers bit for bit; it saves recomputing the slow fractional orders.
    The key is the event's repr (attrs: every field, floats exactly), as a composed event
    holds a list and is not hashable."""
    key = (repr(step), relation, order)
    if key not in _STEP_RDP:
        if len(_STEP_RDP) >= _STEP_RDP_LIMIT:
            _STEP_RDP.clear()
        accountant = rdp_privacy_accountant.RdpAccountant(orders=[order],
                                                          neighboring_relation=relation)
        with quiet_accountant():
            accountant.compose(step)
        _STEP_RDP[key] = float(accountant.rdp[0])
    return _STEP_RDP[key]


def _rdp_curve(ev: _Event, orders: np.ndarray) -> np.ndarray:
    """RDP of the whole event at ``orders``: ``steps`` times one step's."""
    return ev.steps * np.array([_step_rdp(ev.step, ev.relation, float(a)) for a in orders])


def _rdp_tight(ev: _Event, delta: float) -> tuple[float, float | None, str, str]:
    orders = _DEFAULT_ORDERS
    epsilon, order = rdp_privacy_accountant.compute_epsilon(orders, _rdp_curve(ev, orders), delta)
    return (
        float(epsilon),
        float(order),
        "dp_accounting.rdp.RdpAccountant (library default orders 1.1-10.9, 11-63, "
        "128, 256, 512, 1024)",
        "tight RDP -> (epsilon, delta) conversion of dp_accounting "
        "(Balle et al. 2020, Prop. 12; Canonne et al. 2020, Eq. 20), minimised over orders",
    )


def _rdp_classic(ev: _Event, delta: float) -> tuple[float, float | None, str, str]:
    orders = np.asarray(TF_PRIVACY_2019_ORDERS, dtype=float)
    with np.errstate(invalid="ignore", over="ignore"):
        candidates = _rdp_curve(ev, orders) + math.log(1 / delta) / (orders - 1)
    candidates = np.where(np.isnan(candidates), np.inf, candidates)
    index = int(np.argmin(candidates))
    epsilon = float(candidates[index])
    return (
        epsilon,
        float(orders[index]) if math.isfinite(epsilon) else None,
        "dp_accounting.rdp.RdpAccountant at the TF Privacy 2019 orders (1.1-10.9 step 0.1, 12-63)",
        "classic conversion eps = min_a rdp(a) + log(1/delta)/(a-1) (Mironov 2017, "
        "Prop. 3), as reported in the paper; looser than 'rdp'",
    )


def _pld(ev: _Event, delta: float, discretization: float) -> tuple[float, None, str, str]:
    accountant = pld_privacy_accountant.PLDAccountant(
        neighboring_relation=ev.relation, value_discretization_interval=discretization
    )
    accountant.compose(ev.event)
    return (
        float(accountant.get_epsilon(delta)),
        None,
        f"dp_accounting.pld.PLDAccountant (pessimistic discretisation, "
        f"value_discretization_interval={discretization:g})",
        "privacy loss distribution composed by FFT, epsilon read off for delta "
        "(an upper bound; discretisation error only makes it larger)",
    )


def supported_methods(
    sampling: str = "poisson", shuffle_accounting: str = "poisson"
) -> tuple[str, ...]:
    """Methods that can account for this sampling (PLD lacks sampling w/o replacement)."""
    check_one_of("sampling", sampling, SAMPLINGS)
    check_one_of("shuffle_accounting", shuffle_accounting, SHUFFLE_ACCOUNTINGS)
    if sampling == "shuffle" and shuffle_accounting == "without_replacement":
        return ("rdp", "rdp_classic")
    return METHODS


def compute_epsilon(
    *,
    dataset_size: int,
    batch_size: int,
    noise_multiplier: float,
    steps: int,
    delta: float,
    method: str = "rdp",
    sampling: str = "poisson",
    shuffle_accounting: str = "poisson",
    pld_discretization: float = PLD_VALUE_DISCRETIZATION,
    aux_noise_multipliers: Sequence[float] = (),
) -> EpsilonReport:
    """Epsilon of ``steps`` DP-SGD steps, with a description of how it was computed.

    ``shuffle_accounting`` only matters for ``sampling="shuffle"``. ``aux_noise_multipliers``:
    the Gaussians of a clipping policy's auxiliary statistics, composed with the gradient's in
    every step (the PLD accountant, which takes only a Gaussian under Poisson sampling, gets
    the equivalent one: :func:`effective_noise_multiplier`).
    Raises ``ValueError`` for invalid arguments and for ``noise_multiplier=0``
    (no noise: not differentially private), and :class:`AccountantBoundError` when
    ``method="pld"`` would build more than :data:`MAX_PLD_POINTS` points.
    """
    dataset_size, batch_size = _check_sizes(dataset_size, batch_size)
    z = _check_noise(noise_multiplier)
    steps = check_integer("steps", steps, 1)
    delta = _check_delta(delta)
    check_one_of("method", method, METHODS)
    if method not in supported_methods(sampling, shuffle_accounting):
        raise ValueError(ERR_PLD_WITHOUT_REPLACEMENT)
    discretization = _check_positive(ERR_DISCRETIZATION, pld_discretization)
    aux = _check_aux(aux_noise_multipliers)

    ev = _build_event(dataset_size, batch_size, z, steps, sampling, shuffle_accounting, aux)
    if method == "rdp":
        epsilon, order, accountant, conversion = _rdp_tight(ev, delta)
    elif method == "rdp_classic":
        epsilon, order, accountant, conversion = _rdp_classic(ev, delta)
    else:
        z_pld = effective_noise_multiplier(z, aux) if aux else z
        _check_pld_size(z_pld, batch_size / dataset_size, steps, discretization)
        ev_pld = _build_event(dataset_size, batch_size, z_pld, steps, sampling,
                              shuffle_accounting) if aux else ev
        epsilon, order, accountant, conversion = _pld(ev_pld, delta, discretization)
    return EpsilonReport(
        epsilon=epsilon,
        delta=delta,
        method=method,
        accountant=accountant,
        conversion=conversion,
        sampling=ev.sampling,
        neighboring_relation=_NEIGHBOURING_DESCRIPTIONS[ev.relation],
        steps=steps,
        dataset_size=dataset_size,
        batch_size=batch_size,
        noise_multiplier=z,
        sampling_probability=batch_size / dataset_size,
        approximate=ev.approximate,
        note=ev.note,
        optimal_order=order,
        aux_noise_multipliers=aux,
    )


def compute_epsilons(
    *,
    dataset_size: int,
    batch_size: int,
    noise_multiplier: float,
    steps: int,
    delta: float,
    sampling: str = "poisson",
    shuffle_accounting: str = "poisson",
    methods: Sequence[str] | None = None,
    pld_discretization: float = PLD_VALUE_DISCRETIZATION,
    aux_noise_multipliers: Sequence[float] = (),
) -> dict[str, EpsilonReport]:
    """Reports for several methods (default: every method supported for this sampling)."""
    if methods is None:
        methods = supported_methods(sampling, shuffle_accounting)
    for method in methods:
        check_one_of("method", method, METHODS)
    return {
        method: compute_epsilon(
            dataset_size=dataset_size,
            batch_size=batch_size,
            noise_multiplier=noise_multiplier,
            steps=steps,
            delta=delta,
            method=method,
            sampling=sampling,
            shuffle_accounting=shuffle_accounting,
            pld_discretization=pld_discretization,
            aux_noise_multipliers=aux_noise_multipliers,
        )
        for method in dict.fromkeys(methods)
    }


def bounded_epsilons(
    *,
    dataset_size: int,
    batch_size: int,
    noise_multiplier: float,
    steps: int,
    delta: float,
    sampling: str = "poisson",
    shuffle_accounting: str = "poisson",
    methods: Sequence[str] | None = None,
    pld_discretization: float = PLD_VALUE_DISCRETIZATION,
    aux_noise_multipliers: Sequence[float] = (),
) -> tuple[dict[str, EpsilonReport], dict[str, str]]:
    """:func:`compute_epsilons`, leaving out a method beyond the accountant's bound.

    Returns ``(reports, skipped)``: ``skipped`` maps a method left out (only ``pld``, beyond
    :data:`MAX_PLD_POINTS`) to the reason, which says that the RDP bounds stand instead.
    Used by every path that reports epsilon after a run (centralised, federated, CLI).
    """
    if methods is None:
        methods = supported_methods(sampling, shuffle_accounting)
    reports: dict[str, EpsilonReport] = {}
    skipped: dict[str, str] = {}
    for method in dict.fromkeys(methods):
        try:
            reports[method] = compute_epsilon(
                dataset_size=dataset_size, batch_size=batch_size,
                noise_multiplier=noise_multiplier, steps=steps, delta=delta, method=method,
                sampling=sampling, shuffle_accounting=shuffle_accounting,
                pld_discretization=pld_discretization,
                aux_noise_multipliers=aux_noise_multipliers)
        except AccountantBoundError as exc:
            skipped[method] = f"not computed: {exc}; the RDP bounds are valid upper bounds"
    return reports, skipped


# --------------------------------------------------------------------------- calibration


def calibrate_noise_multiplier(
    *,
    target_epsilon: float,
    dataset_size: int,
    batch_size: int,
    steps: int,
    delta: float,
    method: str = "rdp",
    sampling: str = "poisson",
    shuffle_accounting: str = "poisson",
    tolerance: float = 1e-4,
    pld_discretization: float = PLD_VALUE_DISCRETIZATION,
    aux_noise_multipliers: Sequence[float] = (),
) -> float:
    """Smallest noise multiplier (within ``tolerance``) whose epsilon is <= target.

    Epsilon decreases monotonically in z: the bracket [lo, hi] with eps(lo) > target
    >= eps(hi) is found by halving/doubling from z=1, then bisected until
    ``hi - lo <= tolerance``; ``hi`` is returned. Raises ``ValueError`` if even
    ``MAX_NOISE_MULTIPLIER`` does not reach the target. With ``aux_noise_multipliers``, z is
    the gradient's noise multiplier and the epsilon is that of the composed mechanism (the
    statistics' noise stays as given), so the total reaches the target.
    """
    target = _check_positive(ERR_TARGET_EPSILON, target_epsilon)
    tol = _check_positive(ERR_TOLERANCE, tolerance)

    def compute(z: float) -> float:
        return compute_epsilon(
            dataset_size=dataset_size,
            batch_size=batch_size,
            noise_multiplier=z,
            steps=steps,
            delta=delta,
            method=method,
            sampling=sampling,
            shuffle_accounting=shuffle_accounting,
            pld_discretization=pld_discretization,
            aux_noise_multipliers=aux_noise_multipliers,
        ).epsilon

    hi = 1.0  # the first evaluation also validates the other arguments
    if compute(hi) <= target:
        lo = hi / 2
        while compute(lo) <= target:
            hi = lo
            if hi <= tol:  # the answer lies in (0, hi]
                return hi
            lo = hi / 2
    else:
        lo = hi
        while True:
            hi = min(2 * lo, MAX_NOISE_MULTIPLIER)
            epsilon = compute(hi)
            if epsilon <= target:
                break
            if hi >= MAX_NOISE_MULTIPLIER:
                if aux_noise_multipliers:
                    raise ValueError(ERR_AUX_UNREACHABLE.format(
                        target=target_epsilon, method=method, epsilon=epsilon,
                        aux=list(aux_noise_multipliers), max_z=MAX_NOISE_MULTIPLIER))
                raise ValueError(
                    ERR_UNREACHABLE.format(
                        target=target_epsilon,
                        method=method,
                        max_z=MAX_NOISE_MULTIPLIER,
                        epsilon=epsilon,
                    )
                )
            lo = hi
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if compute(mid) <= target:
            hi = mid
        else:
            lo = mid
    return hi
