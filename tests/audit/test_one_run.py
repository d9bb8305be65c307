"""One-run lower bound (Steinke, Nasr, Jagielski 2023) vs scipy.stats.binom and closed forms."""

import math

import numpy as np
import pytest
from scipy import stats

from disparate.audit.one_run import audit_scores, epsilon_lower_bound, p_value


def _logit(q: float) -> float:
    return math.log(q / (1 - q))


def _p_value_by_hand(m: int, r: int, v: int, eps: float, delta: float) -> float:
    # The paper's p-value, term by term: P[Bin >= v] + 2 m delta max_i P[v > Bin >= v-i] / i.
    q = math.exp(eps) / (1 + math.exp(eps))
    tail = sum(stats.binom.pmf(k, r, q) for k in range(v, r + 1))
    alpha = max(sum(stats.binom.pmf(k, r, q) for k in range(v - i, v)) / i
                for i in range(1, v + 1))
    return min(tail + 2 * m * delta * alpha, 1.0)


@pytest.mark.parametrize(("m", "r", "v", "eps", "delta"), [
    (100, 20, 17, 1.0, 0.0), (100, 20, 17, 1.0, 1e-3), (1000, 100, 70, 0.5, 1e-5),
    (10, 4, 3, 2.0, 0.01), (50, 50, 25, 0.0, 0.0),
])
def test_p_value_matches_the_binomial_by_hand(m, r, v, eps, delta):
    assert p_value(m, r, v, eps, delta) == pytest.approx(_p_value_by_hand(m, r, v, eps, delta),
                                                         rel=1e-10, abs=1e-14)


@pytest.mark.parametrize(("r", "beta"), [(10, 0.05), (100, 0.05), (100, 0.01), (500, 0.05)])
def test_all_guesses_correct_gives_the_closed_form(r, beta):
    # P[Bin(r, q) >= r] = q^r = beta  =>  eps = logit(beta^(1/r)).
    expected = _logit(beta ** (1 / r))
    assert epsilon_lower_bound(1000, r, r, beta=beta) == pytest.approx(expected, abs=1e-5)


def test_pinned_values():
    # 100 of 100 correct: 3.4930 (delta = 0), 3.4654 with delta = 1e-5 on m = 1000.
    assert epsilon_lower_bound(1000, 100, 100) == pytest.approx(3.49297, abs=1e-4)
    assert epsilon_lower_bound(1000, 100, 100, delta=1e-5) == pytest.approx(3.46538, abs=1e-4)
    # chance-level guessing certifies nothing
    assert epsilon_lower_bound(1000, 100, 50) == 0.0
    assert epsilon_lower_bound(1000, 0, 0) == 0.0


# (m, r, v, delta) -> the bound at 95% by the procedure of the paper's Appendix D (a running
# max of P[v > Bin >= v - i] / i, bracket grown by 1, 30 halvings), run independently.
APPENDIX_D = [
    (1000, 100, 100, 0.0, 3.49297), (1000, 100, 100, 1e-5, 3.46538),
    (1000, 100, 90, 1e-5, 1.62614), (1000, 1000, 700, 1e-5, 0.73174),
    (200, 50, 45, 1e-3, 1.18835), (100, 20, 19, 0.0, 1.28850),
    (1000, 500, 400, 1e-6, 1.19858), (10000, 1000, 990, 1e-5, 4.02122),
]


@pytest.mark.parametrize(("m", "r", "v", "delta", "expected"), APPENDIX_D)
def test_matches_the_papers_appendix_d_procedure(m, r, v, delta, expected):
    assert epsilon_lower_bound(m, r, v, delta=delta) == pytest.approx(expected, abs=2e-5)


@pytest.mark.parametrize(("m", "r", "v", "delta"), [
    (1000, 100, 80, 0.0), (1000, 100, 80, 1e-5), (200, 50, 45, 1e-3), (60, 20, 19, 0.0)])
def test_bound_is_the_largest_rejected_epsilon(m, r, v, delta):
    eps = epsilon_lower_bound(m, r, v, delta=delta)
    assert eps > 0
    assert _p_value_by_hand(m, r, v, eps, delta) <= 0.05
    assert _p_value_by_hand(m, r, v, eps + 1e-4, delta) > 0.05


def test_delta_only_lowers_the_bound():
    assert epsilon_lower_bound(1000, 100, 90, delta=1e-3) < epsilon_lower_bound(1000, 100, 90)


def test_audit_scores_guesses_the_extremes_with_bonferroni():
    # 20 canaries; scores = index; the 10 highest are included except canary 15.
    included = np.arange(20) >= 10
    included[15] = False
    bound = audit_scores(np.arange(20.0), included, delta=0.0, beta=0.05,
                         guess_fractions=(0.5, 1.0))
    assert bound.grid == (10, 20)
    # r = 10: "in" on 19..15 (4 right: 15 is out), "out" on 0..4 (5 right): v = 9
    # r = 20: "in" on 19..10 (9 right), "out" on 0..9 (10 right): v = 19
    candidates = {10: epsilon_lower_bound(20, 10, 9, beta=0.025),
                  20: epsilon_lower_bound(20, 20, 19, beta=0.025)}
    best = max(candidates, key=candidates.get)
    assert (bound.guesses, bound.correct) == (best, {10: 9, 20: 19}[best])
    assert bound.epsilon == pytest.approx(candidates[best])
    assert bound.included == 9 and bound.canaries == 20


@pytest.mark.parametrize(("args", "message"), [
    ((10, 11, 0, 1.0), "m=10, r=11, v=0: expected integers 0 <= v <= r <= m"),
    ((10, 5, 6, 1.0), "m=10, r=5, v=6"),
    ((10, 5, 3, -1.0), "eps=-1.0: expected a finite number >= 0"),
])
def test_p_value_errors_name_the_argument(args, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        p_value(*args)


def test_audit_scores_errors():
    with pytest.raises(ValueError, match="guess_fractions=\\(0.0,\\)"):
        audit_scores([1.0], [True], delta=0.0, guess_fractions=(0.0,))
    with pytest.raises(ValueError, match="scores has 2 entries but included has 1"):
        audit_scores([1.0, 2.0], [True], delta=0.0)
